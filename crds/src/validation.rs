//! `validate()` for Buoy's objects: the CRD schema is the one source of truth. Standalone mode
//! checks an object exactly as the API server would: the structural schema first, then the
//! `x-kubernetes-validations` CEL rules of the same generated CRD (evaluated by kube-cel), so the
//! messages and field paths are the same in a cluster and on a single host.

use std::{cell::RefCell, collections::HashMap, fmt, rc::Rc};

use kube::core::{CustomResourceExt, cel as kcel};
use serde::Serialize;
use serde_json::Value;

use crate::{
    UpstreamPool, VirtualIP,
    names::{DNS_LABEL_PATTERN, DNS_SUBDOMAIN_PATTERN},
    structural::{self, UnknownFields},
};

/// One violation: where (`spec.vrrp.version`, `spec.listeners[1].port`) and what.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// The field's path, as the API server prints it.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl FieldError {
    /// A violation at `path`.
    pub fn new(path: &str, message: String) -> Self {
        FieldError {
            path: path.to_string(),
            message,
        }
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Every violation found in one object (never empty).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct ValidationErrors(pub Vec<FieldError>);

impl fmt::Display for ValidationErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl ValidationErrors {
    /// Every violation, in document order.
    pub fn iter(&self) -> impl Iterator<Item = &FieldError> {
        self.0.iter()
    }
}

/// The CRD's `openAPIV3Schema` for `K`.
pub(crate) fn crd_schema<K: CustomResourceExt>() -> Value {
    let crd = K::crd();
    crd.spec
        .versions
        .first()
        .and_then(|v| v.schema.as_ref())
        .and_then(|s| s.open_api_v3_schema.as_ref())
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or(Value::Null)
}

thread_local! {
    // CEL programs are compiled once per kind and thread (kube-cel's programs are not `Sync`).
    static COMPILED: RefCell<HashMap<String, Rc<kcel::CompiledSchema>>> = RefCell::new(HashMap::new());
}

fn compiled_schema<K: CustomResourceExt>() -> Rc<kcel::CompiledSchema> {
    let kind = K::crd_name().to_string();
    COMPILED.with(|c| {
        c.borrow_mut()
            .entry(kind)
            .or_insert_with(|| Rc::new(kcel::compile_schema(&crd_schema::<K>())))
            .clone()
    })
}

/// CEL rules of `K`'s CRD that do not compile (must be empty: a test asserts it).
pub fn cel_compilation_errors<K: CustomResourceExt>() -> Vec<String> {
    compiled_schema::<K>()
        .compilation_errors()
        .into_iter()
        .map(|e| e.to_string())
        .collect()
}

/// Validates a whole object (`apiVersion`, `kind`, `metadata`, `spec`) given as JSON, as the API
/// server would with `fieldValidation=Strict`. Status is not validated (agents and the operator
/// write it).
pub fn validate_value<K: CustomResourceExt>(object: &Value) -> Result<(), ValidationErrors> {
    let mut errors = validate_metadata(object.get("metadata"));
    let schema = crd_schema::<K>();
    let mut spec = object.get("spec").cloned().unwrap_or(Value::Null);
    match schema.pointer("/properties/spec") {
        Some(spec_schema) if !spec.is_null() => {
            errors.extend(structural::validate(
                spec_schema,
                &mut spec,
                "spec",
                UnknownFields::Reject,
            ));
        }
        _ => errors.push(FieldError::new("spec", "Required value".to_string())),
    }
    // CEL rules assume a structurally valid object, as the API server's do.
    if errors.is_empty() {
        let rooted = serde_json::json!({ "spec": spec });
        if let Err(cel_errors) = kcel::validate_compiled(&compiled_schema::<K>(), &rooted, None) {
            errors.extend(
                cel_errors
                    .iter()
                    .map(|e| FieldError::new(&e.field_path, e.message.clone())),
            );
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(errors))
    }
}

thread_local! {
    // Schemas of arbitrary CRDs (the API test server's), compiled once per distinct schema text.
    static COMPILED_BY_TEXT: RefCell<HashMap<String, Rc<kcel::CompiledSchema>>> = RefCell::new(HashMap::new());
}

fn compiled_for(schema: &Value) -> Rc<kcel::CompiledSchema> {
    let key = schema.to_string();
    COMPILED_BY_TEXT.with(|c| {
        c.borrow_mut()
            .entry(key)
            .or_insert_with(|| Rc::new(kcel::compile_schema(schema)))
            .clone()
    })
}

/// Validates a whole custom object against a CRD version's `openAPIV3Schema`, as the API server
/// does on create and update: schema `default`s are applied, then the structural schema is checked
/// (unknown fields rejected or pruned per `unknown`), then, if that passed, the
/// `x-kubernetes-validations` CEL rules (with `old` for transition rules). Unlike
/// [`validate_value`], status is validated too. On success `object` holds the defaulted, pruned
/// object; field paths are the same as [`validate_value`]'s (`spec.vrrp.version`).
pub fn validate_against_schema(
    schema: &Value,
    object: &mut Value,
    old: Option<&Value>,
    unknown: UnknownFields,
) -> Result<(), ValidationErrors> {
    let mut errors = validate_metadata(object.get("metadata"));
    let Some(map) = object.as_object_mut() else {
        return Err(ValidationErrors(vec![FieldError::new(
            "",
            "must be an object".to_string(),
        )]));
    };
    // apiVersion, kind and metadata are the server's business, not the schema's.
    let envelope: Vec<(String, Value)> = ["apiVersion", "kind", "metadata"]
        .iter()
        .filter_map(|k| map.remove(*k).map(|v| (k.to_string(), v)))
        .collect();
    let mut body = kcel::apply_defaults(schema, &Value::Object(std::mem::take(map)));
    errors.extend(structural::validate(schema, &mut body, "", unknown));
    if errors.is_empty() {
        let old_body = old.map(|o| {
            let mut o = o.clone();
            if let Some(m) = o.as_object_mut() {
                for k in ["apiVersion", "kind", "metadata"] {
                    m.remove(k);
                }
            }
            o
        });
        if let Err(cel_errors) =
            kcel::validate_compiled(&compiled_for(schema), &body, old_body.as_ref())
        {
            errors.extend(
                cel_errors
                    .iter()
                    .map(|e| FieldError::new(&e.field_path, e.message.clone())),
            );
        }
    }
    if let Value::Object(body) = body {
        *map = body;
    }
    for (k, v) in envelope {
        map.insert(k, v);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ValidationErrors(errors))
    }
}

fn validate_metadata(metadata: Option<&Value>) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let name = metadata.and_then(|m| m.get("name"));
    let generate_name = metadata.and_then(|m| m.get("generateName"));
    match name.and_then(Value::as_str) {
        Some(n) => check_name("metadata.name", n, DNS_SUBDOMAIN_PATTERN, 253, &mut errors),
        None if generate_name.is_some() => {}
        None => errors.push(FieldError::new(
            "metadata.name",
            "Required value: name or generateName is required".to_string(),
        )),
    }
    if let Some(ns) = metadata
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
    {
        check_name("metadata.namespace", ns, DNS_LABEL_PATTERN, 63, &mut errors);
    }
    errors
}

fn check_name(path: &str, name: &str, pattern: &str, max: usize, errors: &mut Vec<FieldError>) {
    let ok = name.len() <= max && structural::pattern_matches(pattern, name) == Ok(true);
    if !ok {
        errors.push(FieldError::new(
            path,
            format!("Invalid value: \"{name}\": must be at most {max} lowercase letters, digits, '-' (and '.' for names), starting and ending with a letter or digit"),
        ));
    }
}

fn validate_typed<K: CustomResourceExt + Serialize>(object: &K) -> Result<(), ValidationErrors> {
    match serde_json::to_value(object) {
        Ok(value) => validate_value::<K>(&value),
        Err(e) => Err(ValidationErrors(vec![FieldError::new(
            "",
            format!("cannot serialize: {e}"),
        )])),
    }
}

impl VirtualIP {
    /// Validates this VirtualIP exactly as the API server validates it against the CRD.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        validate_typed(self)
    }
}

impl UpstreamPool {
    /// Validates this UpstreamPool exactly as the API server validates it against the CRD.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        validate_typed(self)
    }
}

impl crate::AddressPool {
    /// Validates this AddressPool exactly as the API server validates it against the CRD.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        validate_typed(self)
    }
}

impl crate::BGPPeer {
    /// Validates this BGPPeer exactly as the API server validates it against the CRD.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        validate_typed(self)
    }
}
