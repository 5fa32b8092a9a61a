//! The doctor's verdicts: one [`Check`] per concern, each ok, failing or
//! skipped with plain-words problems, and the report's exit code and text.

use serde::Serialize;

/// A check's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Everything checked is as it should be.
    Ok,
    /// Something is wrong (the problems say what).
    Fail,
    /// Could not be checked (the summary says why; another check names the cause).
    Skip,
}

/// One check's verdict.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Check {
    /// Stable name (`agent`, `wireguard`, `guard`, `fdb`, `zone`, `mtu`, `dns`, `clock`).
    pub name: &'static str,
    /// Outcome.
    pub status: Status,
    /// One line: what was checked, or why it was skipped.
    pub summary: String,
    /// Each thing found wrong, in plain words.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
}

impl Check {
    /// Ok unless `problems` has something; `summary` says what was checked.
    pub fn from_problems(name: &'static str, summary: String, problems: Vec<String>) -> Self {
        let status = if problems.is_empty() {
            Status::Ok
        } else {
            Status::Fail
        };
        Self {
            name,
            status,
            summary,
            problems,
        }
    }

    /// Skipped, with the reason.
    pub fn skip(name: &'static str, why: impl Into<String>) -> Self {
        Self {
            name,
            status: Status::Skip,
            summary: why.into(),
            problems: Vec::new(),
        }
    }
}

/// Every check of one run.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    /// The node (as the agent names it; empty when the agent did not answer).
    pub node: String,
    /// `ok` when every check passed or was skipped for lack of an API, else `fail`.
    pub status: Status,
    /// The checks, in a fixed order.
    pub checks: Vec<Check>,
    /// How long the run took (wall, milliseconds).
    pub elapsed_ms: u64,
}

impl Report {
    /// A report of `checks`: failing if any check fails.
    pub fn new(node: String, checks: Vec<Check>, elapsed_ms: u64) -> Self {
        let status = if checks.iter().any(|c| c.status == Status::Fail) {
            Status::Fail
        } else {
            Status::Ok
        };
        Self {
            node,
            status,
            checks,
            elapsed_ms,
        }
    }

    /// 0 when nothing is wrong, 1 when a check fails (2, "could not run",
    /// is the caller's for a doctor that did not get this far).
    pub fn exit_code(&self) -> i32 {
        match self.status {
            Status::Fail => 1,
            _ => 0,
        }
    }

    /// The check named `name`.
    pub fn check(&self, name: &str) -> Option<&Check> {
        self.checks.iter().find(|c| c.name == name)
    }

    /// Plain text, one line per check and one per problem.
    pub fn text(&self) -> String {
        let mut out = String::new();
        for c in &self.checks {
            let mark = match c.status {
                Status::Ok => "ok  ",
                Status::Fail => "FAIL",
                Status::Skip => "skip",
            };
            out.push_str(&format!("{mark} {:<9} {}\n", c.name, c.summary));
            for p in &c.problems {
                out.push_str(&format!("     - {p}\n"));
            }
        }
        let verdict = match self.status {
            Status::Fail => "something is wrong",
            _ => "all good",
        };
        let node = if self.node.is_empty() {
            String::new()
        } else {
            format!("node {}: ", self.node)
        };
        out.push_str(&format!("{node}{verdict} ({} ms)\n", self.elapsed_ms));
        out
    }
}
