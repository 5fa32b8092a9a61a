//! Errors as the API server sends them: a `Status` object with a reason, a
//! code and a message (what kubectl prints after "Error from server").

use serde_json::{Value, json};

/// A refused request; its body is a `kind: Status` object.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{reason} ({code}): {message}")]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Machine-readable reason (`NotFound`, `AlreadyExists`, `Conflict`, `Invalid`…).
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// `details` of the Status (name, group, kind, causes).
    pub details: Value,
}

/// What an error is about: resource plural, group and object name.
pub struct Subject<'a> {
    /// Plural, e.g. `pods`.
    pub plural: &'a str,
    /// API group, empty for core.
    pub group: &'a str,
    /// Object name.
    pub name: &'a str,
}

impl Subject<'_> {
    /// `pods` or `projects.privnet.io`, as messages name a resource.
    pub fn resource(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }

    fn details(&self) -> Value {
        json!({ "name": self.name, "group": self.group, "kind": self.plural })
    }
}

impl ApiError {
    /// An error without details.
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: Value::Null,
        }
    }

    /// 400 BadRequest.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message)
    }

    /// 404 NotFound for an object.
    pub fn not_found(s: &Subject) -> Self {
        let mut e = Self::new(
            404,
            "NotFound",
            format!("{} \"{}\" not found", s.resource(), s.name),
        );
        e.details = s.details();
        e
    }

    /// 409 AlreadyExists.
    pub fn already_exists(s: &Subject) -> Self {
        let mut e = Self::new(
            409,
            "AlreadyExists",
            format!("{} \"{}\" already exists", s.resource(), s.name),
        );
        e.details = s.details();
        e
    }

    /// 409 Conflict on a stale resourceVersion or uid precondition.
    pub fn conflict(s: &Subject, why: &str) -> Self {
        let mut e = Self::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{}\": {why}",
                s.resource(),
                s.name
            ),
        );
        e.details = s.details();
        e
    }

    /// 422 Invalid with field causes, e.g. `Project.privnet.io "p" is invalid: spec.x: Required value`.
    pub fn invalid(kind: &str, group: &str, name: &str, causes: &[(String, String)]) -> Self {
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let list: Vec<String> = causes.iter().map(|(f, m)| format!("{f}: {m}")).collect();
        let joined = if list.len() == 1 {
            list[0].clone()
        } else {
            format!("[{}]", list.join(", "))
        };
        let mut e = Self::new(
            422,
            "Invalid",
            format!("{qualified} \"{name}\" is invalid: {joined}"),
        );
        e.details = json!({
            "name": name, "group": group, "kind": kind,
            "causes": causes.iter().map(|(f, m)| json!({"reason": "FieldValueInvalid", "message": m, "field": f})).collect::<Vec<_>>(),
        });
        e
    }

    /// 500 InternalError.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }

    /// The `Status` object.
    pub fn to_status(&self) -> Value {
        let mut s = json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": self.message, "reason": self.reason, "code": self.code,
        });
        if !self.details.is_null() {
            s["details"] = self.details.clone();
        }
        s
    }
}

impl ApiError {
    /// Takes the reason of a webhook's Status when it names a known one.
    pub fn with_reason_of(mut self, status: &Value) -> Self {
        let known: &[&'static str] = &[
            "Forbidden",
            "BadRequest",
            "Invalid",
            "Conflict",
            "NotFound",
            "Unauthorized",
        ];
        if let Some(r) = status["reason"].as_str()
            && let Some(k) = known.iter().find(|k| **k == r)
        {
            self.reason = k;
        } else if self.code == 400 {
            self.reason = "BadRequest";
        }
        self
    }
}
