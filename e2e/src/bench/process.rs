//! Running tools, inside network namespaces, with guards that clean up
//! (helper daemons killed by PID, scratch namespaces and directories
//! removed) even when a bench fails half-way.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// Errors of running a tool.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The program could not be started.
    #[error("failed to start {command}")]
    Spawn {
        /// Command line.
        command: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// It exited non-zero.
    #[error("failed to run {command} (exit {code:?}): {stderr}")]
    Failed {
        /// Command line.
        command: String,
        /// Exit code.
        code: Option<i32>,
        /// Its stderr (and stdout when stderr is empty).
        stderr: String,
    },
    /// A file operation failed.
    #[error("failed to access {path}")]
    Io {
        /// Path.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// `prefix` + pid + a per-process counter: unique across parallel runs.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id() % 100_000)
}

fn line_of(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

/// A command running `program args…` inside network namespace `netns`.
pub fn in_netns(netns: &str, program: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns, program]).args(args);
    cmd
}

/// Runs to completion; stdout on success.
pub fn output(cmd: &mut Command) -> Result<String, ProcessError> {
    let out = raw_output(cmd)?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        return Err(ProcessError::Failed {
            command: line_of(cmd),
            code: out.status.code(),
            stderr: if stderr.is_empty() { stdout } else { stderr },
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs to completion whatever the exit status.
pub fn raw_output(cmd: &mut Command) -> Result<Output, ProcessError> {
    cmd.stdin(Stdio::null())
        .output()
        .map_err(|source| ProcessError::Spawn {
            command: line_of(cmd),
            source,
        })
}

/// A helper daemon (iperf3 server, named): SIGTERM then SIGKILL by PID on
/// drop, then reaped.
#[derive(Debug)]
pub struct Daemon {
    name: String,
    child: Child,
}

impl Daemon {
    /// Starts `cmd` with its output discarded (or sent to `log`).
    pub fn spawn(cmd: &mut Command, log: Option<&Path>) -> Result<Daemon, ProcessError> {
        let command = line_of(cmd);
        let (out, err) = match log {
            Some(p) => {
                let f = std::fs::File::create(p).map_err(|source| ProcessError::Io {
                    path: p.display().to_string(),
                    source,
                })?;
                let g = f.try_clone().map_err(|source| ProcessError::Io {
                    path: p.display().to_string(),
                    source,
                })?;
                (Stdio::from(f), Stdio::from(g))
            }
            None => (Stdio::null(), Stdio::null()),
        };
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|source| ProcessError::Spawn {
                command: command.clone(),
                source,
            })?;
        Ok(Daemon {
            name: command,
            child,
        })
    }

    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Fails when the daemon exited already (bad config, port taken …).
    pub fn ensure_alive(&mut self) -> Result<(), ProcessError> {
        if self.alive() {
            return Ok(());
        }
        Err(ProcessError::Failed {
            command: self.name.clone(),
            code: self.child.try_wait().ok().flatten().and_then(|s| s.code()),
            stderr: "exited early".into(),
        })
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = Pid::from_raw(self.child.id() as i32);
        if self.alive() {
            let _ = kill(pid, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(2);
            while self.alive() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if self.alive() {
                let _ = kill(pid, Signal::SIGKILL);
            }
        }
        let _ = self.child.wait();
    }
}

/// A network namespace of our own, deleted on drop.
#[derive(Debug)]
pub struct ScratchNetns {
    /// Its name (under /run/netns).
    pub name: String,
}

impl ScratchNetns {
    /// Creates `<prefix><pid>x<n>` with `lo` up.
    pub fn new(prefix: &str) -> Result<ScratchNetns, ProcessError> {
        let name = unique_name(prefix);
        output(Command::new("ip").args(["netns", "add", &name]))?;
        let ns = ScratchNetns { name };
        output(Command::new("ip").args(["-n", &ns.name, "link", "set", "lo", "up"]))?;
        Ok(ns)
    }

    /// `/run/netns/<name>`.
    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
}

impl Drop for ScratchNetns {
    fn drop(&mut self) {
        let _ = raw_output(Command::new("ip").args(["netns", "del", &self.name]));
    }
}

/// A directory under /tmp, removed on drop.
#[derive(Debug)]
pub struct ScratchDir {
    /// Its path.
    pub path: PathBuf,
}

impl ScratchDir {
    /// Creates `/tmp/<prefix><pid>x<n>`.
    pub fn new(prefix: &str) -> Result<ScratchDir, ProcessError> {
        let path = std::env::temp_dir().join(unique_name(prefix));
        std::fs::create_dir_all(&path).map_err(|source| ProcessError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Ok(ScratchDir { path })
    }

    /// Writes `name` in the directory; returns its path.
    pub fn write(&self, name: &str, text: &str) -> Result<PathBuf, ProcessError> {
        let p = self.path.join(name);
        std::fs::write(&p, text).map_err(|source| ProcessError::Io {
            path: p.display().to_string(),
            source,
        })?;
        Ok(p)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Polls `probe` every `every` until it is true or `timeout` passes;
/// returns the elapsed time when it became true.
pub fn wait_until(
    timeout: Duration,
    every: Duration,
    mut probe: impl FnMut() -> bool,
) -> Option<Duration> {
    let start = Instant::now();
    loop {
        if probe() {
            return Some(start.elapsed());
        }
        if start.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(every);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name("a"), unique_name("a"));
    }

    #[test]
    fn output_reports_failures_with_stderr() {
        let err = output(Command::new("sh").args(["-c", "echo boom >&2; exit 3"])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("boom") && text.contains("Some(3)"), "{text}");
        assert_eq!(
            output(Command::new("sh").args(["-c", "echo hi"])).unwrap(),
            "hi\n"
        );
    }

    #[test]
    fn daemon_is_killed_on_drop() {
        let mut d = Daemon::spawn(Command::new("sleep").arg("30"), None).unwrap();
        let pid = d.pid();
        assert!(d.alive());
        drop(d);
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists() || {
                // A reused pid would be someone else's: check it is not our sleep.
                std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                    .map(|c| !c.starts_with("sleep"))
                    .unwrap_or(true)
            }
        );
    }

    #[test]
    fn wait_until_times_out_and_succeeds() {
        assert!(
            wait_until(Duration::from_millis(30), Duration::from_millis(5), || {
                false
            })
            .is_none()
        );
        let mut n = 0;
        assert!(
            wait_until(Duration::from_secs(1), Duration::from_millis(1), || {
                n += 1;
                n > 3
            })
            .is_some()
        );
    }
}
