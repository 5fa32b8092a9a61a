//! The network configuration read from stdin.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{CniResult, SpecVersion};
use crate::error::CniError;
use privnet_core::rpc::DEFAULT_SOCKET;

/// Default bounded wait for the agent on ADD.
pub const DEFAULT_AGENT_TIMEOUT_MS: u64 = 3000;
/// Upper bound on `agentTimeoutMs` (runtimes time out plugins anyway).
pub const MAX_AGENT_TIMEOUT_MS: u64 = 120_000;

/// One entry of `cni.dev/valid-attachments` (GC).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidAttachment {
    /// Container id.
    #[serde(rename = "containerID")]
    pub container_id: String,
    /// Interface name.
    pub ifname: String,
}

/// Plugin log verbosity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Errors only.
    Error,
    /// Errors and warnings.
    #[default]
    Warn,
    /// Plus one line per verb.
    Info,
    /// Everything.
    Debug,
}

/// The network config (spec keys plus privnet keys; unknown keys ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NetConf {
    /// Spec version of the caller.
    pub cni_version: String,
    /// Network name.
    pub name: String,
    /// Plugin type (`privnet-cni`).
    #[serde(rename = "type")]
    pub plugin_type: String,
    /// Result of the previous plugin (chained mode, CHECK, DEL).
    #[serde(default)]
    pub prev_result: Option<Value>,
    /// Runtime-provided capabilities.
    #[serde(default)]
    pub runtime_config: Option<Value>,
    /// Conventional `args` block.
    #[serde(default)]
    pub args: Option<Value>,
    /// Explicit private network id (`pn-…`).
    #[serde(default)]
    pub network: Option<String>,
    /// Name of the private interface, overriding `CNI_IFNAME`: chained after
    /// a primary plugin (which owns `CNI_IFNAME`), privnet adds its own
    /// interface next to it (e.g. `eth1`).
    #[serde(default)]
    pub interface_name: Option<String>,
    /// Chained into the node's primary conflist: every pod of the node
    /// reaches the plugin, and those privnet's webhook did not admit are
    /// passed through untouched (ADD returns `prevResult`, DEL and CHECK do
    /// nothing). Set by `privnet cni-install --mode chained`.
    #[serde(default)]
    pub chained: bool,
    /// Agent socket path.
    #[serde(default = "default_socket")]
    pub agent_socket: PathBuf,
    /// Bounded wait for the agent on ADD, in milliseconds.
    #[serde(default = "default_timeout")]
    pub agent_timeout_ms: u64,
    /// Log verbosity.
    #[serde(default)]
    pub log_level: LogLevel,
    /// Log file (stderr when absent).
    #[serde(default)]
    pub log_file: Option<PathBuf>,
    /// GC: attachments still in use.
    #[serde(rename = "cni.dev/valid-attachments", default)]
    pub valid_attachments: Option<Vec<ValidAttachment>>,
}

fn default_socket() -> PathBuf {
    PathBuf::from(DEFAULT_SOCKET)
}

fn default_timeout() -> u64 {
    DEFAULT_AGENT_TIMEOUT_MS
}

/// Reads only `cniVersion` (VERSION, and the version of error replies);
/// `None` when the input is not JSON or lacks it.
pub fn peek_version(stdin: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(stdin).ok()?;
    v.get("cniVersion")?.as_str().map(str::to_string)
}

impl NetConf {
    /// Decodes and validates a config: bad JSON is 6, a bad key 7, an
    /// unsupported version 1. Returns the config and its parsed version.
    pub fn parse(stdin: &[u8]) -> Result<(NetConf, SpecVersion), CniError> {
        let value: Value = serde_json::from_slice(stdin).map_err(|source| CniError::Decode {
            what: "network config",
            source,
        })?;
        if !value.is_object() {
            return Err(CniError::config(
                "<root>",
                "the network config must be a JSON object",
            ));
        }
        let conf: NetConf = serde_json::from_value(value)
            .map_err(|e| CniError::config("<config>", e.to_string()))?;
        let version =
            SpecVersion::parse(&conf.cni_version).ok_or_else(|| CniError::IncompatibleVersion {
                version: conf.cni_version.clone(),
                reason: "supported versions are 0.4.0, 1.0.0, 1.1.0".into(),
            })?;
        conf.validate()?;
        Ok((conf, version))
    }

    fn validate(&self) -> Result<(), CniError> {
        if self.name.is_empty() {
            return Err(CniError::config("name", "must not be empty"));
        }
        if let Some(id) = &self.network
            && (!id.starts_with("pn-") || id.len() <= 3)
        {
            return Err(CniError::config(
                "network",
                format!("{id:?} is not a network id (pn-…)"),
            ));
        }
        if self.agent_timeout_ms == 0 || self.agent_timeout_ms > MAX_AGENT_TIMEOUT_MS {
            return Err(CniError::config(
                "agentTimeoutMs",
                format!(
                    "{} is outside 1..={MAX_AGENT_TIMEOUT_MS}",
                    self.agent_timeout_ms
                ),
            ));
        }
        if let Some(name) = &self.interface_name
            && crate::env::validate_ifname(name).is_err()
        {
            return Err(CniError::config(
                "interfaceName",
                format!("{name:?} is not a valid interface name (1-15 characters, no '/')"),
            ));
        }
        if self.agent_socket.as_os_str().is_empty() {
            return Err(CniError::config("agentSocket", "must not be empty"));
        }
        Ok(())
    }

    /// The typed `prevResult`, if any (a malformed one is 7).
    pub fn prev_result(&self) -> Result<Option<CniResult>, CniError> {
        match &self.prev_result {
            None | Some(Value::Null) => Ok(None),
            Some(v) => CniResult::from_value(v.clone()).map(Some),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_name_override_is_validated() {
        let ok =
            br#"{"cniVersion":"1.1.0","name":"n","type":"privnet-cni","interfaceName":"eth1"}"#;
        assert_eq!(
            NetConf::parse(ok).unwrap().0.interface_name.as_deref(),
            Some("eth1")
        );
        let bad = br#"{"cniVersion":"1.1.0","name":"n","type":"privnet-cni","interfaceName":"much-too-long-name0"}"#;
        let err = NetConf::parse(bad).unwrap_err();
        assert_eq!(err.code(), 7);
        assert!(err.to_string().contains("interfaceName"), "{err}");
    }

    fn parse(s: &str) -> Result<(NetConf, SpecVersion), CniError> {
        NetConf::parse(s.as_bytes())
    }

    #[test]
    fn minimal_config_gets_defaults_and_tolerates_unknown_keys() {
        let (c, v) =
            parse(r#"{"cniVersion":"1.0.0","name":"pn","type":"privnet-cni","whatever":{"x":1}}"#)
                .unwrap();
        assert_eq!(v, SpecVersion::V1_0_0);
        assert_eq!(c.agent_socket, PathBuf::from("/run/privnet/agent.sock"));
        assert_eq!(c.agent_timeout_ms, 3000);
        assert_eq!(c.log_level, LogLevel::Warn);
        assert_eq!(c.network, None);
    }

    #[test]
    fn privnet_keys_are_read() {
        let (c, _) = parse(
            r#"{"cniVersion":"1.1.0","name":"pn","type":"privnet-cni","network":"pn-123","agentSocket":"/tmp/a.sock",
                "agentTimeoutMs":50,"logLevel":"debug","logFile":"/tmp/l",
                "cni.dev/valid-attachments":[{"containerID":"c1","ifname":"eth1"}]}"#,
        )
        .unwrap();
        assert_eq!(c.network.as_deref(), Some("pn-123"));
        assert_eq!(c.agent_socket, PathBuf::from("/tmp/a.sock"));
        assert_eq!(c.agent_timeout_ms, 50);
        assert_eq!(c.log_level, LogLevel::Debug);
        assert_eq!(c.valid_attachments.unwrap()[0].container_id, "c1");
    }

    #[test]
    fn bad_input_matrix() {
        let cases = [
            ("{not json", 6),
            ("", 6),
            ("[1,2]", 7),
            (r#"{"cniVersion":"1.0.0","type":"privnet-cni"}"#, 7),
            (
                r#"{"cniVersion":"1.0.0","name":"","type":"privnet-cni"}"#,
                7,
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","type":"p","network":"net-1"}"#,
                7,
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","type":"p","agentTimeoutMs":0}"#,
                7,
            ),
            (
                r#"{"cniVersion":"1.0.0","name":"n","type":"p","logLevel":"loud"}"#,
                7,
            ),
            (r#"{"cniVersion":"0.2.0","name":"n","type":"p"}"#, 1),
            (r#"{"cniVersion":"2.0.0","name":"n","type":"p"}"#, 1),
        ];
        for (input, code) in cases {
            let err = parse(input).unwrap_err();
            assert_eq!(err.code(), code, "{input}: {err}");
        }
    }

    #[test]
    fn error_messages_name_the_key() {
        let err =
            parse(r#"{"cniVersion":"1.0.0","name":"n","type":"p","network":"net-1"}"#).unwrap_err();
        assert!(
            err.to_string().contains("network") && err.to_string().contains("net-1"),
            "{err}"
        );
        let err = parse(r#"{"cniVersion":"1.0.0","type":"p"}"#).unwrap_err();
        assert!(err.to_string().contains("name"), "{err}");
    }

    #[test]
    fn peek_version_reads_only_the_version() {
        assert_eq!(
            peek_version(br#"{"cniVersion":"0.4.0"}"#).as_deref(),
            Some("0.4.0")
        );
        assert_eq!(peek_version(b"garbage"), None);
    }
}
