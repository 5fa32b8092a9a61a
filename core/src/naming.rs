//! Private DNS names and the environment variables that expose them.
//!
//! A container's private name is `<n>.<type>.<app>.<pn>.<domain>`; every part
//! is an RFC 1123 label, validated here so that a bad name is rejected with
//! an error saying which part, which value and why.

use std::fmt;

use thiserror::Error;

/// Domain under which every private network's zone lives.
pub const DEFAULT_DOMAIN: &str = "private-network.internal";
/// Default prefix of the three environment variables given to containers.
pub const DEFAULT_ENV_PREFIX: &str = "SCALINGO";
/// Longest DNS label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;
/// Longest DNS name in text form, without the trailing dot.
pub const MAX_NAME_LEN: usize = 253;
/// Prefix of every network id (`pn-<uuid>`).
pub const NETWORK_ID_PREFIX: &str = "pn-";

/// Which part of a private name a value was meant to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamePart {
    /// The container (process) type, e.g. `web`.
    ProcessType,
    /// The application id, e.g. `ap-<uuid>` or a chosen name.
    ApplicationId,
    /// The private network id, `pn-<uuid>`.
    NetworkId,
    /// One label of the DNS domain.
    Domain,
}

impl fmt::Display for NamePart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            NamePart::ProcessType => "process type",
            NamePart::ApplicationId => "application id",
            NamePart::NetworkId => "private network id",
            NamePart::Domain => "domain label",
        })
    }
}

/// Why a value is not a valid RFC 1123 label.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelProblem {
    /// The label is empty.
    Empty,
    /// The label is longer than 63 characters.
    TooLong(usize),
    /// The label holds a character outside `a-z`, `0-9` and `-`.
    InvalidChar {
        /// The offending character.
        ch: char,
        /// Its character index in the label.
        index: usize,
    },
    /// The label starts with `-`.
    LeadingHyphen,
    /// The label ends with `-`.
    TrailingHyphen,
}

impl fmt::Display for LabelProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LabelProblem::Empty => f.write_str("it is empty"),
            LabelProblem::TooLong(len) => {
                write!(
                    f,
                    "it has {len} characters, at most {MAX_LABEL_LEN} are allowed"
                )
            }
            LabelProblem::InvalidChar { ch, index } => write!(
                f,
                "character {ch:?} at position {index} is not allowed (only lowercase a-z, 0-9 and '-')"
            ),
            LabelProblem::LeadingHyphen => f.write_str("it must not start with '-'"),
            LabelProblem::TrailingHyphen => f.write_str("it must not end with '-'"),
        }
    }
}

/// Errors of name validation.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NamingError {
    /// A part of the name is not an RFC 1123 label.
    #[error("failed to validate {part} {value:?}: {problem}")]
    InvalidLabel {
        /// Which part of the name.
        part: NamePart,
        /// The rejected value.
        value: String,
        /// Why it was rejected.
        problem: LabelProblem,
    },
    /// The full name is longer than 253 characters.
    #[error(
        "failed to build private name {name:?}: {len} characters, at most {MAX_NAME_LEN} are allowed; use shorter ids"
    )]
    NameTooLong {
        /// The full name.
        name: String,
        /// Its length.
        len: usize,
    },
    /// Container numbers start at 1.
    #[error("failed to validate container number 0: numbers start at 1")]
    ZeroNumber,
    /// The environment variable prefix is not a valid variable name.
    #[error("failed to validate environment variable prefix {value:?}: {reason}")]
    InvalidEnvPrefix {
        /// The rejected prefix.
        value: String,
        /// Why it was rejected.
        reason: &'static str,
    },
}

/// Checks that `value` is an RFC 1123 label (lowercase only).
pub fn validate_label(part: NamePart, value: &str) -> Result<(), NamingError> {
    label_problem(value).map_or(Ok(()), |problem| {
        Err(NamingError::InvalidLabel {
            part,
            value: value.to_owned(),
            problem,
        })
    })
}

fn label_problem(value: &str) -> Option<LabelProblem> {
    if value.is_empty() {
        return Some(LabelProblem::Empty);
    }
    if let Some((index, ch)) = value
        .chars()
        .enumerate()
        .find(|(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
    {
        return Some(LabelProblem::InvalidChar { ch, index });
    }
    if value.len() > MAX_LABEL_LEN {
        return Some(LabelProblem::TooLong(value.len()));
    }
    if value.starts_with('-') {
        return Some(LabelProblem::LeadingHyphen);
    }
    if value.ends_with('-') {
        return Some(LabelProblem::TrailingHyphen);
    }
    None
}

/// Checks a dotted domain (no trailing dot): every label and the total length.
pub fn validate_domain(domain: &str) -> Result<(), NamingError> {
    for label in domain.split('.') {
        validate_label(NamePart::Domain, label)?;
    }
    check_length(domain)
}

fn check_length(name: &str) -> Result<(), NamingError> {
    if name.len() > MAX_NAME_LEN {
        return Err(NamingError::NameTooLong {
            name: name.to_owned(),
            len: name.len(),
        });
    }
    Ok(())
}

/// The network id of a PrivateNetwork with Kubernetes UID `uid`: `pn-<uid>`.
pub fn network_id_from_uid(uid: &str) -> String {
    format!("{NETWORK_ID_PREFIX}{}", uid.to_ascii_lowercase())
}

/// The parts of one container's private DNS name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PrivateName {
    /// Container number, lowest free positive integer per (app, type).
    pub number: u32,
    /// Container (process) type, e.g. `web` or `worker`.
    pub process_type: String,
    /// Application id.
    pub application_id: String,
    /// Private network id (`pn-<uuid>`).
    pub network_id: String,
}

impl PrivateName {
    /// Builds a name, validating every label and the FQDN length under `domain`.
    pub fn new(
        number: u32,
        process_type: &str,
        application_id: &str,
        network_id: &str,
        domain: &str,
    ) -> Result<Self, NamingError> {
        let name = PrivateName {
            number,
            process_type: process_type.to_owned(),
            application_id: application_id.to_owned(),
            network_id: network_id.to_owned(),
        };
        name.validate(domain)?;
        Ok(name)
    }

    /// Validates an already-built name (e.g. one read back from the API).
    pub fn validate(&self, domain: &str) -> Result<(), NamingError> {
        if self.number == 0 {
            return Err(NamingError::ZeroNumber);
        }
        validate_label(NamePart::ProcessType, &self.process_type)?;
        validate_label(NamePart::ApplicationId, &self.application_id)?;
        validate_label(NamePart::NetworkId, &self.network_id)?;
        validate_domain(domain)?;
        check_length(&self.fqdn(domain))
    }

    /// `<n>.<type>.<app>.<pn>.<domain>` (no trailing dot).
    pub fn fqdn(&self, domain: &str) -> String {
        format!("{}.{}", self.number, self.type_name(domain))
    }

    /// `<type>.<app>.<pn>.<domain>`: all containers of this type.
    pub fn type_name(&self, domain: &str) -> String {
        format!("{}.{}", self.process_type, self.app_name(domain))
    }

    /// `<app>.<pn>.<domain>`: the app's web containers.
    pub fn app_name(&self, domain: &str) -> String {
        format!("{}.{}", self.application_id, self.zone_origin(domain))
    }

    /// `<pn>.<domain>`: origin of the network's zone.
    pub fn zone_origin(&self, domain: &str) -> String {
        zone_origin(&self.network_id, domain)
    }
}

/// `<pn>.<domain>`: origin of a network's zone (no trailing dot).
pub fn zone_origin(network_id: &str, domain: &str) -> String {
    format!("{network_id}.{domain}")
}

/// Checks an environment variable prefix: `[A-Za-z_][A-Za-z0-9_]*`.
pub fn validate_env_prefix(prefix: &str) -> Result<(), NamingError> {
    let fail = |reason| NamingError::InvalidEnvPrefix {
        value: prefix.to_owned(),
        reason,
    };
    let mut chars = prefix.chars();
    match chars.next() {
        None => return Err(fail("it is empty")),
        Some(c) if !(c.is_ascii_alphabetic() || c == '_') => {
            return Err(fail("it must start with a letter or '_'"));
        }
        Some(_) => {}
    }
    if chars.any(|c| !(c.is_ascii_alphanumeric() || c == '_')) {
        return Err(fail("only letters, digits and '_' are allowed"));
    }
    Ok(())
}

/// The three environment variables of a container, in a fixed order:
/// `<PREFIX>_APPLICATION_ID`, `<PREFIX>_PRIVATE_NETWORK_ID`, `<PREFIX>_PRIVATE_HOSTNAME`.
pub fn env_vars(
    prefix: &str,
    name: &PrivateName,
    domain: &str,
) -> Result<[(String, String); 3], NamingError> {
    validate_env_prefix(prefix)?;
    name.validate(domain)?;
    Ok([
        (
            format!("{prefix}_APPLICATION_ID"),
            name.application_id.clone(),
        ),
        (
            format!("{prefix}_PRIVATE_NETWORK_ID"),
            name.network_id.clone(),
        ),
        (format!("{prefix}_PRIVATE_HOSTNAME"), name.fqdn(domain)),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    const PN: &str = "pn-0b5e7c1a-4f3d-4a8e-9d2c-1f6b3a5e7d90";

    #[test]
    fn fqdn_and_parent_names() {
        let n = PrivateName::new(1, "web", "my-app", PN, DEFAULT_DOMAIN).unwrap();
        assert_eq!(
            n.fqdn(DEFAULT_DOMAIN),
            format!("1.web.my-app.{PN}.private-network.internal")
        );
        assert_eq!(
            n.type_name(DEFAULT_DOMAIN),
            format!("web.my-app.{PN}.private-network.internal")
        );
        assert_eq!(
            n.app_name(DEFAULT_DOMAIN),
            format!("my-app.{PN}.private-network.internal")
        );
        assert_eq!(
            n.zone_origin(DEFAULT_DOMAIN),
            format!("{PN}.private-network.internal")
        );
    }

    #[test]
    fn label_rules() {
        assert!(validate_label(NamePart::ProcessType, "a").is_ok());
        assert!(validate_label(NamePart::ProcessType, &"a".repeat(63)).is_ok());
        assert!(validate_label(NamePart::ProcessType, "0-9").is_ok());
        let problem = |v: &str| match validate_label(NamePart::ApplicationId, v) {
            Err(NamingError::InvalidLabel {
                problem,
                part,
                value,
            }) => {
                assert_eq!(part, NamePart::ApplicationId);
                assert_eq!(value, v);
                problem
            }
            other => panic!("{v:?} accepted: {other:?}"),
        };
        assert_eq!(problem(""), LabelProblem::Empty);
        assert_eq!(problem(&"a".repeat(64)), LabelProblem::TooLong(64));
        assert_eq!(
            problem("Web"),
            LabelProblem::InvalidChar { ch: 'W', index: 0 }
        );
        assert_eq!(
            problem("a_b"),
            LabelProblem::InvalidChar { ch: '_', index: 1 }
        );
        assert_eq!(
            problem("a.b"),
            LabelProblem::InvalidChar { ch: '.', index: 1 }
        );
        assert_eq!(problem("-a"), LabelProblem::LeadingHyphen);
        assert_eq!(problem("a-"), LabelProblem::TrailingHyphen);
    }

    #[test]
    fn error_message_names_part_value_and_reason() {
        let err = PrivateName::new(1, "Web", "app", PN, DEFAULT_DOMAIN).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("failed to validate process type \"Web\""),
            "{msg}"
        );
        assert!(msg.contains("'W'"), "{msg}");
    }

    #[test]
    fn total_length_is_checked() {
        let long = "a".repeat(63);
        let err =
            PrivateName::new(1, &long, &long, &long, &format!("{long}.internal")).unwrap_err();
        assert!(
            matches!(err, NamingError::NameTooLong { len, .. } if len > 253),
            "{err:?}"
        );
        assert_eq!(
            PrivateName::new(0, "web", "a", PN, DEFAULT_DOMAIN),
            Err(NamingError::ZeroNumber)
        );
        assert!(PrivateName::new(1, "web", "a", PN, "bad..domain").is_err());
    }

    #[test]
    fn env_vars_use_prefix() {
        let n = PrivateName::new(3, "worker", "app", PN, DEFAULT_DOMAIN).unwrap();
        let vars = env_vars("ACME", &n, DEFAULT_DOMAIN).unwrap();
        assert_eq!(vars[0], ("ACME_APPLICATION_ID".into(), "app".into()));
        assert_eq!(vars[1], ("ACME_PRIVATE_NETWORK_ID".into(), PN.into()));
        assert_eq!(
            vars[2],
            (
                "ACME_PRIVATE_HOSTNAME".into(),
                format!("3.worker.app.{PN}.private-network.internal")
            )
        );
        let default = env_vars(DEFAULT_ENV_PREFIX, &n, DEFAULT_DOMAIN).unwrap();
        assert_eq!(default[0].0, "SCALINGO_APPLICATION_ID");
        for bad in ["", "1AB", "A-B", "A B"] {
            assert!(
                matches!(
                    env_vars(bad, &n, DEFAULT_DOMAIN),
                    Err(NamingError::InvalidEnvPrefix { .. })
                ),
                "{bad:?}"
            );
        }
        assert!(validate_env_prefix("_x9").is_ok());
    }

    #[test]
    fn network_id_from_kubernetes_uid() {
        let id = network_id_from_uid("0B5E7C1A-4F3D-4A8E-9D2C-1F6B3A5E7D90");
        assert_eq!(id, PN);
        assert!(validate_label(NamePart::NetworkId, &id).is_ok());
    }
}
