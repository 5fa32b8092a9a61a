//! The one error type of the plugin and its mapping to CNI error codes.
//!
//! Every failure of every verb ends up here; [`CniError::code`] is the single
//! place deciding which spec code the runtime sees.

use crate::spec::{ErrorReply, SpecVersion};

/// Everything that can make a verb fail.
#[derive(Debug, thiserror::Error)]
pub enum CniError {
    /// The config's `cniVersion` is not supported (for this verb).
    #[error("incompatible CNI version {version:?}: {reason}")]
    IncompatibleVersion {
        /// The version asked for.
        version: String,
        /// Why it is refused.
        reason: String,
    },
    /// A required environment variable is missing.
    #[error("failed to read environment: {var} is required for {command}")]
    MissingEnv {
        /// Variable name.
        var: &'static str,
        /// The CNI command needing it.
        command: String,
    },
    /// An environment variable has an invalid value.
    #[error("failed to parse environment: {var}={value:?}: {reason}")]
    InvalidEnv {
        /// Variable name (or `CNI_ARGS` key).
        var: String,
        /// The offending value.
        value: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The input could not be decoded as JSON.
    #[error("failed to decode {what}: {source}")]
    Decode {
        /// What was being decoded.
        what: &'static str,
        /// Parser error.
        #[source]
        source: serde_json::Error,
    },
    /// The network config is invalid.
    #[error("invalid network config: {key}: {reason}")]
    InvalidConfig {
        /// The offending key.
        key: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Transient: the agent is unreachable or not ready; retry later.
    #[error("failed to reach the privnet agent at {socket}: {reason} (try again later)")]
    TryAgainLater {
        /// Agent socket path.
        socket: String,
        /// Underlying reason.
        reason: String,
    },
    /// Kernel or file I/O failure.
    #[error("failed to {action}: {source}")]
    Io {
        /// What was being done.
        action: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// STATUS: the plugin cannot serve ADD right now.
    #[error("plugin not available: {reason}")]
    NotAvailable {
        /// Why.
        reason: String,
    },
    /// ADD: the interface already exists.
    #[error("interface {ifname:?} already exists in {netns}")]
    InterfaceExists {
        /// Interface name.
        ifname: String,
        /// Namespace path.
        netns: String,
    },
    /// ADD: the network's address pool is exhausted.
    #[error("address pool exhausted: {message}")]
    PoolExhausted {
        /// Agent message.
        message: String,
    },
    /// CHECK: the attachment is missing or differs from what was recorded.
    #[error("check failed: {what}")]
    CheckMismatch {
        /// What is missing or different (expected vs actual).
        what: String,
    },
    /// ADD: the container's bridge port did not start forwarding in time
    /// (the kernel's link-watch work is held up): transient.
    #[error(
        "bridge port {port} in {netns} not forwarding after {waited:?} ({state}); try again later"
    )]
    PortNotForwarding {
        /// The host end of the veth.
        port: String,
        /// The network namespace holding it.
        netns: String,
        /// How long ADD waited.
        waited: std::time::Duration,
        /// What the kernel last reported about the port.
        state: String,
    },
    /// ADD: the node's state directory is full; nothing was attached.
    #[error("the node cannot attach now: {message} (try again later)")]
    NodeFull {
        /// Agent message (which file could not be written, and why).
        message: String,
    },
    /// Anything unexpected.
    #[error("internal error: {0}")]
    Internal(String),
}

impl CniError {
    /// The CNI spec error code of this error.
    pub fn code(&self) -> u32 {
        match self {
            Self::IncompatibleVersion { .. } => 1,
            Self::MissingEnv { .. } | Self::InvalidEnv { .. } => 4,
            Self::Io { .. } => 5,
            Self::Decode { .. } => 6,
            Self::InvalidConfig { .. } => 7,
            Self::TryAgainLater { .. } | Self::PortNotForwarding { .. } | Self::NodeFull { .. } => {
                11
            }
            Self::NotAvailable { .. } => 50,
            Self::InterfaceExists { .. } => 101,
            Self::PoolExhausted { .. } => 102,
            Self::CheckMismatch { .. } => 103,
            Self::Internal(_) => 999,
        }
    }

    /// The spec error JSON answered in `version`.
    pub fn into_reply(self, version: SpecVersion) -> ErrorReply {
        let details = std::error::Error::source(&self)
            .map(|s| s.to_string())
            .unwrap_or_default();
        ErrorReply {
            cni_version: version.as_str().to_string(),
            code: self.code(),
            msg: self.to_string(),
            details,
        }
    }

    /// Shorthand for [`CniError::InvalidConfig`].
    pub fn config(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidConfig {
            key: key.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`CniError::InvalidEnv`].
    pub fn env(
        var: impl Into<String>,
        value: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Self::InvalidEnv {
            var: var.into(),
            value: value.into(),
            reason: reason.into(),
        }
    }

    /// Shorthand for [`CniError::Io`].
    pub fn io(action: impl Into<String>, source: std::io::Error) -> Self {
        Self::Io {
            action: action.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_maps_to_its_spec_code() {
        let decode = serde_json::from_str::<u8>("x").unwrap_err();
        let cases = [
            (
                CniError::IncompatibleVersion {
                    version: "0.3.1".into(),
                    reason: "r".into(),
                },
                1,
            ),
            (
                CniError::MissingEnv {
                    var: "CNI_NETNS",
                    command: "ADD".into(),
                },
                4,
            ),
            (CniError::env("CNI_IFNAME", "a/b", "has a slash"), 4),
            (CniError::io("open", std::io::Error::other("x")), 5),
            (
                CniError::Decode {
                    what: "config",
                    source: decode,
                },
                6,
            ),
            (CniError::config("network", "bad"), 7),
            (
                CniError::TryAgainLater {
                    socket: "s".into(),
                    reason: "r".into(),
                },
                11,
            ),
            (
                CniError::PortNotForwarding {
                    port: "pv1".into(),
                    netns: "/n".into(),
                    waited: std::time::Duration::from_secs(3),
                    state: "carrier off".into(),
                },
                11,
            ),
            (CniError::NotAvailable { reason: "r".into() }, 50),
            (
                CniError::InterfaceExists {
                    ifname: "eth1".into(),
                    netns: "/n".into(),
                },
                101,
            ),
            (
                CniError::PoolExhausted {
                    message: "m".into(),
                },
                102,
            ),
            (CniError::CheckMismatch { what: "mac".into() }, 103),
            (CniError::Internal("x".into()), 999),
        ];
        for (err, code) in cases {
            assert_eq!(err.code(), code, "{err}");
            let reply = err.into_reply(SpecVersion::V1_0_0);
            assert_eq!(reply.code, code);
            assert_eq!(reply.cni_version, "1.0.0");
            assert!(!reply.msg.is_empty());
        }
    }

    #[test]
    fn messages_name_the_offending_value_and_details_carry_the_source() {
        let reply = CniError::env("CNI_IFNAME", "waytoolonginterface", "longer than 15")
            .into_reply(SpecVersion::V1_1_0);
        assert!(reply.msg.contains("CNI_IFNAME") && reply.msg.contains("waytoolonginterface"));
        let reply = CniError::io("open netns", std::io::Error::other("boom"))
            .into_reply(SpecVersion::V1_1_0);
        assert_eq!(reply.details, "boom");
    }
}
