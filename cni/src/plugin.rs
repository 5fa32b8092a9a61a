//! The one dispatch: environment + stdin in, stdout text + exit code out.

use std::collections::HashMap;
use std::time::Duration;

use serde_json::Value;

use crate::agent_client::AgentClient;
use crate::env::{CniEnv, Command, parse_env};
use crate::error::CniError;
use crate::log::{LogLevel, Logger};
use crate::spec::config::peek_version;
use crate::spec::{NetConf, SpecVersion, VersionReply};
use crate::verbs;
use privnet_core::rpc::AttachmentKey;

/// Everything a verb needs about its invocation.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Parsed environment.
    pub env: CniEnv,
    /// Parsed config.
    pub conf: NetConf,
    /// The caller's spec version (replies use it).
    pub version: SpecVersion,
    /// Logger from the config.
    pub logger: Logger,
}

impl Invocation {
    /// Client of the configured agent; `agentTimeoutMs` bounds each wait.
    pub fn client(&self) -> AgentClient {
        AgentClient::new(
            &self.conf.agent_socket,
            Duration::from_millis(self.conf.agent_timeout_ms),
        )
    }

    /// The attachment key (container id, ifname).
    pub fn key(&self) -> AttachmentKey {
        AttachmentKey {
            container_id: self.env.container_id().to_string(),
            ifname: self.env.ifname().to_string(),
        }
    }
}

/// What the process prints and how it exits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// Text for stdout (result, VERSION reply, error JSON, or empty).
    pub stdout: String,
    /// Process exit code (0 on success).
    pub exit_code: i32,
}

/// Runs one plugin invocation.
pub fn run(vars: &HashMap<String, String>, stdin: &[u8]) -> Outcome {
    let caller_version = peek_version(stdin)
        .and_then(|v| SpecVersion::parse(&v))
        .unwrap_or(SpecVersion::LATEST);
    match dispatch(vars, stdin) {
        Ok(Some(value)) => Outcome {
            stdout: value.to_string(),
            exit_code: 0,
        },
        Ok(None) => Outcome {
            stdout: String::new(),
            exit_code: 0,
        },
        Err(err) => {
            let reply = err.into_reply(caller_version);
            Outcome {
                stdout: serde_json::to_string(&reply).expect("error replies serialize"),
                exit_code: 1,
            }
        }
    }
}

fn dispatch(vars: &HashMap<String, String>, stdin: &[u8]) -> Result<Option<Value>, CniError> {
    let env = parse_env(vars)?;
    if env.command == Command::Version {
        let version = peek_version(stdin)
            .and_then(|v| SpecVersion::parse(&v))
            .unwrap_or(SpecVersion::LATEST);
        return Ok(Some(
            serde_json::to_value(VersionReply::new(version)).expect("serializes"),
        ));
    }
    let (conf, version) = NetConf::parse(stdin)?;
    if matches!(env.command, Command::Status | Command::Gc) && !version.has_status_and_gc() {
        return Err(CniError::IncompatibleVersion {
            version: version.to_string(),
            reason: format!("{} needs cniVersion 1.1.0 or later", env.command.as_str()),
        });
    }
    let logger = Logger::new(conf.log_level, conf.log_file.clone());
    let mut env = env;
    if let Some(name) = &conf.interface_name
        && env.ifname.is_some()
    {
        env.ifname = Some(name.clone());
    }
    let inv = Invocation {
        env,
        conf,
        version,
        logger,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| CniError::io("start the async runtime", e))?;
    let command = inv.env.command;
    let result = runtime.block_on(async {
        match command {
            Command::Add => verbs::add::add(&inv).await.map(Some),
            Command::Del => verbs::del::del(&inv).await.map(|()| None),
            Command::Check => verbs::check::check(&inv).await.map(|()| None),
            Command::Status => verbs::status::status(&inv).await.map(|()| None),
            Command::Gc => verbs::gc::gc(&inv).await.map(|()| None),
            Command::Version => unreachable!("answered above"),
        }
    });
    match &result {
        Ok(_) => inv.logger.log(
            LogLevel::Info,
            &format!(
                "{} {}/{} ok",
                command.as_str(),
                inv.env.container_id(),
                inv.env.ifname()
            ),
        ),
        Err(e) => inv.logger.log(
            LogLevel::Error,
            &format!(
                "{} {}/{} failed (code {}): {e}",
                command.as_str(),
                inv.env.container_id(),
                inv.env.ifname(),
                e.code()
            ),
        ),
    }
    result
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

    fn code(out: &Outcome) -> u64 {
        assert_ne!(out.exit_code, 0);
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        v["code"].as_u64().unwrap()
    }

    const CONF: &str = r#"{"cniVersion":"1.0.0","name":"n","type":"privnet-cni","agentSocket":"/nonexistent/privnet.sock","agentTimeoutMs":100}"#;

    #[test]
    fn version_answers_in_the_callers_version() {
        let out = run(
            &vars(&[("CNI_COMMAND", "VERSION")]),
            br#"{"cniVersion":"0.4.0"}"#,
        );
        assert_eq!(out.exit_code, 0);
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["cniVersion"], "0.4.0");
        assert_eq!(v["supportedVersions"].as_array().unwrap().len(), 5);
    }

    #[test]
    fn bad_input_matrix_codes() {
        let add = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_CONTAINERID", "c"),
            ("CNI_NETNS", "/x"),
            ("CNI_IFNAME", "eth1"),
            ("CNI_PATH", "/p"),
        ];
        assert_eq!(code(&run(&vars(&add), b"{oops")), 6);
        assert_eq!(code(&run(&vars(&add[..3]), CONF.as_bytes())), 4);
        assert_eq!(
            code(&run(&vars(&[("CNI_COMMAND", "NOPE")]), CONF.as_bytes())),
            4
        );
        assert_eq!(code(&run(&vars(&[]), CONF.as_bytes())), 4);
        let mut long = add.to_vec();
        long[3] = ("CNI_IFNAME", "this-is-too-long");
        assert_eq!(code(&run(&vars(&long), CONF.as_bytes())), 4);
        assert_eq!(
            code(&run(
                &vars(&add),
                br#"{"cniVersion":"0.2.0","name":"n","type":"t"}"#
            )),
            1
        );
    }

    #[test]
    fn status_and_gc_need_1_1_and_status_is_50_without_agent() {
        let status = vars(&[("CNI_COMMAND", "STATUS")]);
        assert_eq!(code(&run(&status, CONF.as_bytes())), 1);
        assert_eq!(
            code(&run(&vars(&[("CNI_COMMAND", "GC")]), CONF.as_bytes())),
            1
        );
        let conf11 = CONF.replace("1.0.0", "1.1.0");
        let out = run(&status, conf11.as_bytes());
        assert_eq!(code(&out), 50);
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["cniVersion"], "1.1.0");
    }

    #[test]
    fn errors_answer_in_the_callers_version() {
        let out = run(&vars(&[("CNI_COMMAND", "NOPE")]), CONF.as_bytes());
        let v: Value = serde_json::from_str(&out.stdout).unwrap();
        assert_eq!(v["cniVersion"], "1.0.0");
    }
}
