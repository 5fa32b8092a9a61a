//! Non-result replies: the error JSON and the VERSION answer.

use serde::{Deserialize, Serialize};

use super::SpecVersion;

/// The spec error object printed on stdout with a non-zero exit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorReply {
    /// Version of the reply (the caller's).
    pub cni_version: String,
    /// Spec error code.
    pub code: u32,
    /// Short message.
    pub msg: String,
    /// Longer details (may be empty).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub details: String,
}

/// The VERSION reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VersionReply {
    /// Version of the reply.
    pub cni_version: String,
    /// Every version this plugin accepts.
    pub supported_versions: Vec<String>,
}

impl VersionReply {
    /// The reply for a caller speaking `version`.
    pub fn new(version: SpecVersion) -> Self {
        Self {
            cni_version: version.as_str().to_string(),
            supported_versions: SpecVersion::ALL
                .iter()
                .map(|v| v.as_str().to_string())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_reply_lists_all_versions() {
        let v = serde_json::to_value(VersionReply::new(SpecVersion::V0_4_0)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"cniVersion":"0.4.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0","1.1.0"]})
        );
    }

    #[test]
    fn error_reply_omits_empty_details() {
        let r = ErrorReply {
            cni_version: "1.1.0".into(),
            code: 7,
            msg: "m".into(),
            details: String::new(),
        };
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            r#"{"cniVersion":"1.1.0","code":7,"msg":"m"}"#
        );
    }
}
