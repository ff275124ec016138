//! Schema adjustments the derives cannot express.

use schemars::{Schema, transform::transform_subschemas};
use serde_json::Value;

/// Makes optional fields optional-but-not-null: drops `nullable: true` and
/// unwraps `anyOf: [T, null]` to `T`, keeping the field's own description.
///
/// With `nullable`, an API server keeps an explicit `null` (as in a YAML
/// `renewBefore:` with no value), so `has(self.renewBefore)` is true and a
/// rule calling a string function on it fails to evaluate. Without it, the
/// API server prunes the `null` and the field is simply absent. Unwrapping
/// `anyOf` also stops an optional enum's field description being replaced by
/// the enum type's description in `kubectl explain`.
pub(crate) fn absent_not_null(schema: &mut Schema) {
    transform_subschemas(&mut absent_not_null, schema);
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    object.remove("nullable");

    if let Some(Value::Array(types)) = object.get_mut("type") {
        types.retain(|kind| kind != "null");
        if let [single] = types.as_slice() {
            let single = single.clone();
            object.insert("type".to_owned(), single);
        }
    }

    let Some(Value::Array(any_of)) = object.get("anyOf") else {
        return;
    };
    let (nulls, others): (Vec<&Value>, Vec<&Value>) = any_of.iter().partition(|s| is_null(s));
    if let ([_], [Value::Object(inner)]) = (nulls.as_slice(), others.as_slice()) {
        let inner = inner.clone();
        object.remove("anyOf");
        for (key, value) in inner {
            object.entry(key).or_insert(value);
        }
    }
}

/// Replaces the integer formats schemars derives from Rust's unsigned types
/// (`uint32`), which API servers from 1.36 warn about on every apply
/// ("unrecognized format"), with `int64`, a format every API server knows
/// and wide enough for any `u32`; the `minimum: 0` that comes with them
/// keeps the value non-negative.
pub(crate) fn kubernetes_integer_formats(schema: &mut Schema) {
    transform_subschemas(&mut kubernetes_integer_formats, schema);
    if let Some(object) = schema.as_object_mut()
        && let Some(Value::String(format)) = object.get("format")
        && matches!(format.as_str(), "uint8" | "uint16" | "uint32")
    {
        object.insert("format".to_owned(), "int64".into());
    }
}

/// Marks a `conditions` list as a map keyed by `type`, as Kubernetes'
/// conventions ask: server-side apply then merges each condition type on its
/// own, so two field managers can each own theirs, and the API server
/// refuses two conditions of one type.
pub(crate) fn conditions_by_type(schema: &mut Schema) {
    schema.insert("x-kubernetes-list-type".to_owned(), "map".into());
    schema.insert(
        "x-kubernetes-list-map-keys".to_owned(),
        serde_json::json!(["type"]),
    );
}

fn is_null(schema: &Value) -> bool {
    let only_null =
        |values: &Value| matches!(values.as_array().map(Vec::as_slice), Some([Value::Null]));
    schema.get("type").is_some_and(|kind| kind == "null")
        || schema.get("enum").is_some_and(only_null)
}
