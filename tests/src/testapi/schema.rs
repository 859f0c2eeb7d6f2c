//! Validation of custom resources against their CRD: buoy-crds' structural walker (types,
//! formats, enums, ranges, patterns, required, pruning), schema defaults and CEL rules, so the
//! server rejects exactly what `buoy_crds::validation` rejects, with the same field paths.

use buoy_crds::{FieldError, structural::UnknownFields, validation::validate_against_schema};
use serde_json::Value;

/// Defaults, prunes (or rejects) unknown fields and validates `obj` in place.
pub fn validate(
    schema: &Value,
    obj: &mut Value,
    old: Option<&Value>,
    unknown: UnknownFields,
) -> Vec<FieldError> {
    match validate_against_schema(schema, obj, old, unknown) {
        Ok(()) => Vec::new(),
        Err(e) => e.0,
    }
}
