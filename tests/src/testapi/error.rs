//! API errors as the API server reports them: a `meta/v1 Status` body with the real reason and
//! code, and for 422 the offending field paths as causes.

use buoy_crds::FieldError;
use serde_json::{Value, json};

use super::resources::ResourceType;

/// One failed request: becomes a `Status` response.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{code} {reason}: {message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Value,
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: Value::Null,
        }
    }

    fn with_details(mut self, rt: &ResourceType, name: &str) -> Self {
        self.details = json!({"name": name, "group": rt.group, "kind": rt.plural});
        self
    }

    pub fn not_found(rt: &ResourceType, name: &str) -> Self {
        ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", rt.group_resource()),
        )
        .with_details(rt, name)
    }

    pub fn already_exists(rt: &ResourceType, name: &str) -> Self {
        ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", rt.group_resource()),
        )
        .with_details(rt, name)
    }

    pub fn conflict(rt: &ResourceType, name: &str, why: &str) -> Self {
        ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                rt.group_resource()
            ),
        )
        .with_details(rt, name)
    }

    /// 422 Invalid, one cause per field error (`field` is the path, as the API server writes it).
    pub fn invalid(rt: &ResourceType, name: &str, errors: &[FieldError]) -> Self {
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        let list = if shown.len() == 1 {
            shown.join("")
        } else {
            format!("[{}]", shown.join(", "))
        };
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": cause_reason(&e.message), "message": e.message, "field": e.path}))
            .collect();
        let mut err = ApiError::new(
            422,
            "Invalid",
            format!("{} \"{name}\" is invalid: {list}", rt.group_kind()),
        );
        err.details = json!({"name": name, "group": rt.group, "kind": rt.kind, "causes": causes});
        err
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn gone(message: impl Into<String>) -> Self {
        ApiError::new(410, "Expired", message)
    }

    pub fn method_not_allowed() -> Self {
        ApiError::new(
            405,
            "MethodNotAllowed",
            "the server does not allow this method on the requested resource",
        )
    }

    pub fn path_not_found() -> Self {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn unsupported_media(ct: &str) -> Self {
        ApiError::new(
            415,
            "UnsupportedMediaType",
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/vnd.kubernetes.protobuf; got {ct}"
            ),
        )
    }

    /// The `Status` object sent as the response body (and in watch `ERROR` events).
    pub fn status(&self) -> Value {
        let mut s = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if !self.details.is_null() {
            s["details"] = self.details.clone();
        }
        s
    }
}

fn cause_reason(message: &str) -> &'static str {
    if message.starts_with("Required value") {
        "FieldValueRequired"
    } else if message.starts_with("Unsupported value") {
        "FieldValueNotSupported"
    } else if message.starts_with("Duplicate value") {
        "FieldValueDuplicate"
    } else if message.starts_with("Too many") {
        "FieldValueTooMany"
    } else if message.starts_with("Too long") {
        "FieldValueTooLong"
    } else if message.starts_with("field not declared") {
        "FieldValueUnknown"
    } else {
        "FieldValueInvalid"
    }
}
