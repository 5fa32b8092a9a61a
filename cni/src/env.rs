//! The CNI environment (`CNI_*` variables), parsed from a plain map so it is
//! testable without touching the process environment.

use std::collections::HashMap;
use std::path::PathBuf;

use crate::error::CniError;

/// Linux `IFNAMSIZ - 1`.
pub const MAX_IFNAME_LEN: usize = 15;

/// The CNI verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// ADD.
    Add,
    /// DEL.
    Del,
    /// CHECK.
    Check,
    /// STATUS (1.1.0).
    Status,
    /// GC (1.1.0).
    Gc,
    /// VERSION.
    Version,
}

impl Command {
    /// Parses `CNI_COMMAND`.
    pub fn parse(s: &str) -> Option<Command> {
        Some(match s {
            "ADD" => Self::Add,
            "DEL" => Self::Del,
            "CHECK" => Self::Check,
            "STATUS" => Self::Status,
            "GC" => Self::Gc,
            "VERSION" => Self::Version,
            _ => return None,
        })
    }

    /// The spec spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Add => "ADD",
            Self::Del => "DEL",
            Self::Check => "CHECK",
            Self::Status => "STATUS",
            Self::Gc => "GC",
            Self::Version => "VERSION",
        }
    }
}

/// Recognised `CNI_ARGS` keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CniArgs {
    /// `K8S_POD_NAMESPACE`.
    pub pod_namespace: Option<String>,
    /// `K8S_POD_NAME`.
    pub pod_name: Option<String>,
    /// `PRIVNET_APPLICATION_ID`.
    pub application_id: Option<String>,
    /// `PRIVNET_PROCESS_TYPE`.
    pub process_type: Option<String>,
    /// `PRIVNET_CONTAINER_NUMBER`.
    pub container_number: Option<u32>,
}

/// Keys runtimes commonly pass that we accept and ignore.
const IGNORED_ARGS: [&str; 3] = ["K8S_POD_INFRA_CONTAINER_ID", "K8S_POD_UID", "IgnoreUnknown"];

/// The parsed environment of one invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniEnv {
    /// Verb.
    pub command: Command,
    /// `CNI_CONTAINERID` (ADD/DEL/CHECK).
    pub container_id: Option<String>,
    /// `CNI_NETNS` (ADD/CHECK; optional on DEL).
    pub netns: Option<PathBuf>,
    /// `CNI_IFNAME` (ADD/DEL/CHECK).
    pub ifname: Option<String>,
    /// `CNI_ARGS`.
    pub args: CniArgs,
    /// `CNI_PATH` (split on `:`).
    pub path: Vec<PathBuf>,
}

impl CniEnv {
    /// Container id, guaranteed present for ADD/DEL/CHECK after [`parse_env`].
    pub fn container_id(&self) -> &str {
        self.container_id.as_deref().unwrap_or_default()
    }

    /// Interface name, guaranteed present for ADD/DEL/CHECK after [`parse_env`].
    pub fn ifname(&self) -> &str {
        self.ifname.as_deref().unwrap_or_default()
    }
}

fn non_empty<'a>(vars: &'a HashMap<String, String>, key: &str) -> Option<&'a str> {
    vars.get(key).map(String::as_str).filter(|v| !v.is_empty())
}

/// Parses the environment: missing or invalid variables are error 4.
pub fn parse_env(vars: &HashMap<String, String>) -> Result<CniEnv, CniError> {
    let raw = non_empty(vars, "CNI_COMMAND").ok_or(CniError::MissingEnv {
        var: "CNI_COMMAND",
        command: "any command".into(),
    })?;
    let command =
        Command::parse(raw).ok_or_else(|| CniError::env("CNI_COMMAND", raw, "unknown command"))?;
    let attach_verb = matches!(command, Command::Add | Command::Del | Command::Check);
    let require = |var: &'static str, needed: bool| -> Result<Option<String>, CniError> {
        match non_empty(vars, var) {
            Some(v) => Ok(Some(v.to_string())),
            None if needed => Err(CniError::MissingEnv {
                var,
                command: command.as_str().into(),
            }),
            None => Ok(None),
        }
    };
    let container_id = require("CNI_CONTAINERID", attach_verb)?;
    if let Some(id) = &container_id {
        validate_container_id(id)?;
    }
    let netns = require(
        "CNI_NETNS",
        matches!(command, Command::Add | Command::Check),
    )?
    .map(PathBuf::from);
    let ifname = require("CNI_IFNAME", attach_verb)?;
    if let Some(name) = &ifname {
        validate_ifname(name)?;
    }
    let path = require("CNI_PATH", attach_verb)?
        .map(|p| {
            p.split(':')
                .filter(|s| !s.is_empty())
                .map(PathBuf::from)
                .collect()
        })
        .unwrap_or_default();
    let args = parse_args(vars.get("CNI_ARGS").map(String::as_str).unwrap_or(""))?;
    Ok(CniEnv {
        command,
        container_id,
        netns,
        ifname,
        args,
        path,
    })
}

/// Linux interface name rules: 1..=15 bytes, no `/`, no whitespace, not `.`/`..`.
pub fn validate_ifname(name: &str) -> Result<(), CniError> {
    let reason = if name.len() > MAX_IFNAME_LEN {
        Some(format!("longer than {MAX_IFNAME_LEN} characters"))
    } else if name == "." || name == ".." {
        Some("must not be . or ..".to_string())
    } else if name.contains('/') || name.contains(':') || name.chars().any(char::is_whitespace) {
        Some("must not contain '/', ':' or whitespace".to_string())
    } else {
        None
    };
    match reason {
        Some(r) => Err(CniError::env("CNI_IFNAME", name, r)),
        None => Ok(()),
    }
}

/// Container ids: alphanumerics plus `_ . -`, starting alphanumeric (spec).
fn validate_container_id(id: &str) -> Result<(), CniError> {
    let valid = id.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && id
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if valid {
        Ok(())
    } else {
        Err(CniError::env(
            "CNI_CONTAINERID",
            id,
            "allowed: [a-zA-Z0-9][a-zA-Z0-9_.-]*",
        ))
    }
}

/// Parses `K=V;K=V`. Unknown keys are 4 unless `IgnoreUnknown` is true.
pub fn parse_args(raw: &str) -> Result<CniArgs, CniError> {
    let mut pairs = Vec::new();
    for part in raw.split(';').filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| CniError::env("CNI_ARGS", part, "expected KEY=VALUE"))?;
        pairs.push((k, v));
    }
    let ignore_unknown = pairs.iter().any(|(k, v)| {
        *k == "IgnoreUnknown" && matches!(v.to_ascii_lowercase().as_str(), "1" | "true")
    });
    let mut args = CniArgs::default();
    for (k, v) in pairs {
        let value = Some(v.to_string()).filter(|v| !v.is_empty());
        match k {
            "K8S_POD_NAMESPACE" => args.pod_namespace = value,
            "K8S_POD_NAME" => args.pod_name = value,
            "PRIVNET_APPLICATION_ID" => args.application_id = value,
            "PRIVNET_PROCESS_TYPE" => args.process_type = value,
            "PRIVNET_CONTAINER_NUMBER" => {
                let n = v
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| CniError::env(k, v, "expected a positive integer"))?;
                args.container_number = Some(n);
            }
            k if IGNORED_ARGS.contains(&k) || ignore_unknown => {}
            k => {
                return Err(CniError::env(
                    k,
                    v,
                    "unknown CNI_ARGS key (set IgnoreUnknown=1 to allow)",
                ));
            }
        }
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn add_env() -> Vec<(&'static str, &'static str)> {
        vec![
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_NETNS", "/var/run/netns/c1"),
            ("CNI_IFNAME", "eth1"),
            ("CNI_PATH", "/opt/cni/bin:/usr/lib/cni"),
        ]
    }

    #[test]
    fn full_add_environment_parses() {
        let mut e = add_env();
        e.push(("CNI_ARGS", "IgnoreUnknown=1;K8S_POD_NAMESPACE=ns;K8S_POD_NAME=p;PRIVNET_APPLICATION_ID=app;PRIVNET_PROCESS_TYPE=web;PRIVNET_CONTAINER_NUMBER=3;FOO=bar"));
        let env = parse_env(&vars(&e)).unwrap();
        assert_eq!(env.command, Command::Add);
        assert_eq!(env.container_id(), "c1");
        assert_eq!(env.ifname(), "eth1");
        assert_eq!(env.path.len(), 2);
        assert_eq!(env.args.pod_namespace.as_deref(), Some("ns"));
        assert_eq!(env.args.application_id.as_deref(), Some("app"));
        assert_eq!(env.args.process_type.as_deref(), Some("web"));
        assert_eq!(env.args.container_number, Some(3));
    }

    #[test]
    fn missing_variables_are_code_4() {
        for missing in [
            "CNI_COMMAND",
            "CNI_CONTAINERID",
            "CNI_NETNS",
            "CNI_IFNAME",
            "CNI_PATH",
        ] {
            let e: Vec<_> = add_env()
                .into_iter()
                .filter(|(k, _)| *k != missing)
                .collect();
            let err = parse_env(&vars(&e)).unwrap_err();
            assert_eq!(err.code(), 4, "{missing}");
            assert!(err.to_string().contains(missing), "{err}");
        }
    }

    #[test]
    fn del_does_not_need_netns_and_version_needs_nothing_else() {
        let e: Vec<_> = add_env()
            .into_iter()
            .filter(|(k, _)| *k != "CNI_NETNS")
            .map(|(k, v)| {
                if k == "CNI_COMMAND" {
                    (k, "DEL")
                } else {
                    (k, v)
                }
            })
            .collect();
        assert_eq!(parse_env(&vars(&e)).unwrap().netns, None);
        assert_eq!(
            parse_env(&vars(&[("CNI_COMMAND", "VERSION")]))
                .unwrap()
                .command,
            Command::Version
        );
        assert_eq!(
            parse_env(&vars(&[("CNI_COMMAND", "STATUS")]))
                .unwrap()
                .command,
            Command::Status
        );
    }

    #[test]
    fn unknown_command_is_code_4() {
        let err = parse_env(&vars(&[("CNI_COMMAND", "FROB")])).unwrap_err();
        assert_eq!(err.code(), 4);
        assert!(err.to_string().contains("FROB"));
    }

    #[test]
    fn bad_ifnames_are_code_4() {
        for bad in ["sixteen-chars-xx", "a/b", ".", "..", "a b", "a:b"] {
            let mut e = add_env();
            e.retain(|(k, _)| *k != "CNI_IFNAME");
            e.push(("CNI_IFNAME", bad));
            let err = parse_env(&vars(&e)).unwrap_err();
            assert_eq!(err.code(), 4, "{bad}");
        }
        assert!(validate_ifname("fifteen-chars-x").is_ok());
    }

    #[test]
    fn bad_container_ids_are_code_4() {
        for bad in ["-c", "c/1", "c 1"] {
            let mut e = add_env();
            e.retain(|(k, _)| *k != "CNI_CONTAINERID");
            e.push(("CNI_CONTAINERID", bad));
            assert_eq!(parse_env(&vars(&e)).unwrap_err().code(), 4, "{bad}");
        }
    }

    #[test]
    fn args_rules() {
        assert_eq!(parse_args("").unwrap(), CniArgs::default());
        assert_eq!(parse_args("FOO=1").unwrap_err().code(), 4);
        assert!(parse_args("FOO=1;IgnoreUnknown=true").is_ok());
        assert!(parse_args("K8S_POD_UID=x;K8S_POD_INFRA_CONTAINER_ID=y").is_ok());
        assert_eq!(parse_args("novalue").unwrap_err().code(), 4);
        assert_eq!(
            parse_args("PRIVNET_CONTAINER_NUMBER=x").unwrap_err().code(),
            4
        );
        assert_eq!(
            parse_args("PRIVNET_CONTAINER_NUMBER=0").unwrap_err().code(),
            4
        );
    }

    proptest::proptest! {
        #[test]
        fn parse_args_never_panics(s in ".{0,64}") {
            let _ = parse_args(&s);
        }

        #[test]
        fn valid_ifnames_accepted(s in "[a-z][a-z0-9_-]{0,14}") {
            proptest::prop_assert!(validate_ifname(&s).is_ok());
        }
    }
}
