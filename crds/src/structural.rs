//! Validation of a JSON value against a CRD's structural OpenAPI schema, with the API server's
//! semantics: types, `nullable`, `enum`, ranges, lengths, `pattern`, `required`, unknown fields,
//! and `x-kubernetes-list-type: set|map` uniqueness. (CEL rules are evaluated separately.)
//!
//! Hand-written on purpose: JSON-Schema crates implement the JSON Schema drafts, not the
//! Kubernetes extensions (list types, int-or-string, preserve-unknown-fields), and their messages
//! and paths differ from what `kubectl apply` shows. The same walker serves standalone mode and
//! Buoy's Kubernetes API test server, so both reject the same inputs with the same paths.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use regex::Regex;
use serde_json::Value;

use crate::validation::FieldError;

/// Unknown fields: `Reject` is the API server's `fieldValidation=Strict` (what standalone mode
/// uses: a typo is an error there); `Prune` silently drops them as the API server does by default.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnknownFields {
    /// An unknown field is an error.
    Reject,
    /// Unknown fields are dropped.
    Prune,
}

/// Validates `value` (found at `path`) against `schema`; returns every violation, in document
/// order. With [`UnknownFields::Prune`], unknown fields are removed from `value`.
pub fn validate(
    schema: &Value,
    value: &mut Value,
    path: &str,
    unknown: UnknownFields,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    walk(schema, value, path, unknown, &mut errors);
    errors
}

fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 80 {
        format!("{}…", &s[..s.floor_char_boundary(77)])
    } else {
        s
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// Compiled patterns, cached: schemas are validated often and the set of patterns is small.
pub(crate) fn pattern_matches(pattern: &str, s: &str) -> Result<bool, String> {
    static CACHE: LazyLock<Mutex<HashMap<String, Regex>>> = LazyLock::new(Default::default);
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(re) = cache.get(pattern) {
        return Ok(re.is_match(s));
    }
    let re = Regex::new(pattern).map_err(|e| format!("invalid pattern in schema: {e}"))?;
    let matched = re.is_match(s);
    cache.insert(pattern.to_string(), re);
    Ok(matched)
}

fn walk(
    schema: &Value,
    value: &mut Value,
    path: &str,
    unknown: UnknownFields,
    errors: &mut Vec<FieldError>,
) {
    let Some(schema) = schema.as_object() else {
        return;
    };
    let mut at = At { path, errors };
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true) {
            let want = schema
                .get("type")
                .and_then(Value::as_str)
                .unwrap_or("value");
            at.err(format!("Invalid value: \"null\": must be of type {want}"));
        }
        return;
    }
    if !has_type(schema, value, &mut at) {
        return;
    }
    check_enum(schema, value, &mut at);
    match value {
        Value::Number(n) => check_number(schema, n, &mut at),
        Value::String(s) => check_string(schema, s, &mut at),
        Value::Array(items) => {
            check_array(schema, items, &mut at);
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(item_schema, item, &format!("{path}[{i}]"), unknown, errors);
                }
            }
        }
        Value::Object(map) => walk_object(schema, map, path, unknown, errors),
        Value::Bool(_) | Value::Null => {}
    }
}

/// Where a check is, and the violations found so far.
struct At<'a> {
    path: &'a str,
    errors: &'a mut Vec<FieldError>,
}

impl At<'_> {
    fn err(&mut self, message: String) {
        self.errors.push(FieldError::new(self.path, message));
    }
}

type Schema = serde_json::Map<String, Value>;

/// Whether `value` is of the schema's type (an int-or-string takes either); else says why.
fn has_type(schema: &Schema, value: &Value, at: &mut At<'_>) -> bool {
    let int_or_string = schema
        .get("x-kubernetes-int-or-string")
        .and_then(Value::as_bool)
        == Some(true);
    if let Some(want) = schema.get("type").and_then(Value::as_str) {
        let got = json_type(value);
        let ok = got == want || (want == "number" && got == "integer");
        if !ok && !int_or_string {
            at.err(format!("Invalid value: \"{got}\": must be of type {want}"));
            return false;
        }
    } else if int_or_string && !matches!(json_type(value), "integer" | "string") {
        at.err(format!(
            "Invalid value: {}: must be an integer or a string",
            short(value)
        ));
        return false;
    }
    true
}

fn check_enum(schema: &Schema, value: &Value, at: &mut At<'_>) {
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed
            .iter()
            .map(|a| match a {
                Value::String(s) => format!("\"{s}\""),
                other => format!("\"{other}\""),
            })
            .collect();
        at.err(format!(
            "Unsupported value: {}: supported values: {}",
            short(value),
            list.join(", ")
        ));
    }
}

fn check_number(schema: &Schema, n: &serde_json::Number, at: &mut At<'_>) {
    let x = n.as_f64().unwrap_or(f64::NAN);
    if let Some(min) = schema.get("minimum").and_then(Value::as_f64)
        && x < min
    {
        at.err(format!(
            "Invalid value: {n}: must be greater than or equal to {}",
            fmt_num(min)
        ));
    }
    if let Some(max) = schema.get("maximum").and_then(Value::as_f64)
        && x > max
    {
        at.err(format!(
            "Invalid value: {n}: must be less than or equal to {}",
            fmt_num(max)
        ));
    }
}

fn check_string(schema: &Schema, s: &str, at: &mut At<'_>) {
    if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
        && s.chars().count() as u64 > max
    {
        at.err(format!("Too long: may not be more than {max} characters"));
    }
    if let Some(min) = schema.get("minLength").and_then(Value::as_u64)
        && (s.chars().count() as u64) < min
    {
        at.err(format!(
            "Invalid value: \"{s}\": must be at least {min} characters long"
        ));
    }
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        match pattern_matches(pattern, s) {
            Ok(true) => {}
            Ok(false) => at.err(format!("Invalid value: \"{s}\": must match '{pattern}'")),
            Err(e) => at.err(e),
        }
    }
}

/// An array's length limits and list type (its items are walked by the caller).
fn check_array(schema: &Schema, items: &[Value], at: &mut At<'_>) {
    if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
        && items.len() as u64 > max
    {
        at.err(format!(
            "Too many: {}: must have at most {max} items",
            items.len()
        ));
    }
    if let Some(min) = schema.get("minItems").and_then(Value::as_u64)
        && (items.len() as u64) < min
    {
        at.err(format!(
            "Invalid value: {}: must have at least {min} items",
            items.len()
        ));
    }
    check_list_uniqueness(schema, items, at.path, at.errors);
}

/// An object's required fields, then each field against its schema; fields the schema does
/// not declare are errors or pruned.
fn walk_object(
    schema: &Schema,
    map: &mut serde_json::Map<String, Value>,
    path: &str,
    unknown: UnknownFields,
    errors: &mut Vec<FieldError>,
) {
    if let Some(required) = schema.get("required").and_then(Value::as_array) {
        for field in required.iter().filter_map(Value::as_str) {
            if !map.contains_key(field) {
                errors.push(FieldError::new(
                    &join(path, field),
                    "Required value".to_string(),
                ));
            }
        }
    }
    let preserve = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true);
    let props = schema.get("properties").and_then(Value::as_object);
    let additional = schema.get("additionalProperties").filter(|a| a.is_object());
    let mut pruned = Vec::new();
    for (key, child) in map.iter_mut() {
        let child_path = join(path, key);
        if let Some(child_schema) = props.and_then(|p| p.get(key)) {
            walk(child_schema, child, &child_path, unknown, errors);
        } else if let Some(additional) = additional {
            walk(additional, child, &child_path, unknown, errors);
        } else if !preserve && (props.is_some() || schema.get("type").is_some()) {
            match unknown {
                UnknownFields::Reject => errors.push(FieldError::new(
                    &child_path,
                    "field not declared in schema".to_string(),
                )),
                UnknownFields::Prune => pruned.push(key.clone()),
            }
        }
    }
    for key in pruned {
        map.remove(&key);
    }
}

fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        x.to_string()
    }
}

fn check_list_uniqueness(
    schema: &serde_json::Map<String, Value>,
    items: &[Value],
    path: &str,
    errors: &mut Vec<FieldError>,
) {
    match schema.get("x-kubernetes-list-type").and_then(Value::as_str) {
        Some("set") => {
            for (i, item) in items.iter().enumerate() {
                if items[..i].contains(item) {
                    errors.push(FieldError::new(
                        &format!("{path}[{i}]"),
                        format!("Duplicate value: {}", short(item)),
                    ));
                }
            }
        }
        Some("map") => {
            let keys: Vec<&str> = schema
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|k| k.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let key_of = |item: &Value| -> Value {
                Value::Object(
                    keys.iter()
                        .map(|k| (k.to_string(), item.get(*k).cloned().unwrap_or(Value::Null)))
                        .collect(),
                )
            };
            let seen: Vec<Value> = items.iter().map(key_of).collect();
            for (i, key) in seen.iter().enumerate() {
                if seen[..i].contains(key) {
                    errors.push(FieldError::new(
                        &format!("{path}[{i}]"),
                        format!("Duplicate value: {}", short(key)),
                    ));
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(schema: Value, mut value: Value) -> Vec<String> {
        validate(&schema, &mut value, "spec", UnknownFields::Reject)
            .into_iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn reports_kubernetes_style_errors_with_paths() {
        let schema = json!({"type": "object", "required": ["port"], "properties": {
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "mode": {"type": "string", "enum": ["A", "B"]},
            "name": {"type": "string", "maxLength": 3, "pattern": "^[a-z]+$"},
            "tags": {"type": "array", "maxItems": 2, "x-kubernetes-list-type": "set", "items": {"type": "string"}},
            "ls": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["k"],
                   "items": {"type": "object", "properties": {"k": {"type": "string"}}}},
            "opt": {"type": "string", "nullable": true},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        }});
        assert_eq!(
            check(schema.clone(), json!({"port": 1})),
            Vec::<String>::new()
        );
        assert_eq!(
            check(schema.clone(), json!({})),
            vec!["spec.port: Required value"]
        );
        assert_eq!(
            check(schema.clone(), json!({"port": 70000})),
            vec!["spec.port: Invalid value: 70000: must be less than or equal to 65535"]
        );
        assert_eq!(
            check(schema.clone(), json!({"port": "x"})),
            vec!["spec.port: Invalid value: \"string\": must be of type integer"]
        );
        assert_eq!(
            check(schema.clone(), json!({"port": 1, "mode": "C"})),
            vec!["spec.mode: Unsupported value: \"C\": supported values: \"A\", \"B\""]
        );
        assert_eq!(
            check(schema.clone(), json!({"port": 1, "name": "ABCD"})).len(),
            2
        );
        assert_eq!(
            check(schema.clone(), json!({"port": 1, "tags": ["a", "b", "a"]})),
            vec![
                "spec.tags: Too many: 3: must have at most 2 items",
                "spec.tags[2]: Duplicate value: \"a\""
            ]
        );
        assert_eq!(
            check(
                schema.clone(),
                json!({"port": 1, "ls": [{"k": "x"}, {"k": "x"}]})
            ),
            vec!["spec.ls[1]: Duplicate value: {\"k\":\"x\"}"]
        );
        assert_eq!(
            check(
                schema.clone(),
                json!({"port": 1, "opt": null, "labels": {"a": "b"}})
            ),
            Vec::<String>::new()
        );
        assert_eq!(
            check(schema.clone(), json!({"port": 1, "labels": {"a": 1}})),
            vec!["spec.labels.a: Invalid value: \"integer\": must be of type string"]
        );
        assert_eq!(
            check(schema.clone(), json!({"port": 1, "prot": 2})),
            vec!["spec.prot: field not declared in schema"]
        );
    }

    #[test]
    fn prunes_unknown_fields_like_the_api_server() {
        let schema = json!({"type": "object", "properties": {"a": {"type": "integer"}}});
        let mut value = json!({"a": 1, "b": 2});
        assert!(validate(&schema, &mut value, "spec", UnknownFields::Prune).is_empty());
        assert_eq!(value, json!({"a": 1}));
    }
}
