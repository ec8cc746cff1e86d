//! The botocore service model, loaded from a stripped `service-2.json`, and a validator that
//! checks every request against it: required members, JSON types, enums, lengths and ranges.
//!
//! Validation returns the input with members unknown to the model removed, so handlers and
//! the store only ever see what the model allows. It must never apply service rules (those
//! belong to handlers) and never panic, whatever the input.

use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::HashMap;
use wharf_types::Error;

#[derive(Debug, Deserialize)]
struct RawModel {
    metadata: Metadata,
    operations: HashMap<String, RawOperation>,
    shapes: HashMap<String, RawShape>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    pub api_version: String,
    pub protocol: String,
    #[serde(default)]
    pub target_prefix: Option<String>,
    #[serde(default)]
    pub signing_name: Option<String>,
    pub endpoint_prefix: String,
    #[serde(default)]
    pub xml_namespace: Option<String>,
    /// Every protocol the service speaks, most preferred first (`protocol` is the first).
    #[serde(default)]
    pub protocols: Vec<String>,
    /// AWS JSON's version (`1.0` or `1.1`): it names the content type.
    #[serde(default)]
    pub json_version: Option<String>,
    /// Present when the service once spoke Query only and keeps Query's error codes in its
    /// newer protocols (the `x-amzn-query-error` header carries them).
    #[serde(default, deserialize_with = "present")]
    pub aws_query_compatible: bool,
    #[serde(default)]
    pub service_id: Option<String>,
}

/// A metadata flag whose value is an object (`"awsQueryCompatible": {}`): there or not.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Value::deserialize(d).map(|v| !v.is_null())
}

#[derive(Debug, Deserialize)]
struct RawOperation {
    #[serde(default)]
    input: Option<ShapeRef>,
    #[serde(default)]
    output: Option<ShapeRef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ShapeRef {
    pub shape: String,
    #[serde(default)]
    pub location_name: Option<String>,
    #[serde(default)]
    pub result_wrapper: Option<String>,
    #[serde(default)]
    pub flattened: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawShape {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    members: Option<indexmap_like::Members>,
    #[serde(default)]
    required: Vec<String>,
    #[serde(default)]
    member: Option<ShapeRef>,
    #[serde(default)]
    key: Option<ShapeRef>,
    #[serde(default)]
    value: Option<ShapeRef>,
    #[serde(default, rename = "enum")]
    enum_values: Option<Vec<String>>,
    #[serde(default)]
    min: Option<f64>,
    #[serde(default)]
    max: Option<f64>,
    #[serde(default)]
    flattened: Option<bool>,
    #[serde(default)]
    exception: bool,
    #[serde(default)]
    error: Option<RawError>,
}

/// An exception shape's wire identity.
#[derive(Debug, Deserialize)]
struct RawError {
    /// The code Query answers (and query-compatible services put in `x-amzn-query-error`);
    /// absent when it is the shape's name.
    #[serde(default)]
    code: Option<String>,
}

mod indexmap_like {
    use super::ShapeRef;
    use serde::Deserialize;
    use serde_json::Map;

    /// Structure members in model order (the order botocore serializes them).
    #[derive(Debug, Default)]
    pub struct Members(pub Vec<(String, ShapeRef)>);

    impl<'de> Deserialize<'de> for Members {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let map = Map::deserialize(d)?;
            map.into_iter()
                .map(|(k, v)| serde_json::from_value(v).map(|r| (k, r)).map_err(serde::de::Error::custom))
                .collect::<Result<Vec<_>, _>>()
                .map(Members)
        }
    }
}

/// A resolved shape of the model.
#[derive(Debug)]
pub enum Shape {
    Structure { members: Vec<(String, ShapeRef)>, required: Vec<String> },
    List { member: ShapeRef, min: Option<f64>, max: Option<f64>, flattened: bool },
    Map { key: ShapeRef, value: ShapeRef, flattened: bool },
    String { enum_values: Option<Vec<String>>, min: Option<f64>, max: Option<f64> },
    Integer { min: Option<f64>, max: Option<f64> },
    Float,
    Boolean,
    Timestamp,
    Blob,
}

#[derive(Debug)]
pub struct Operation {
    pub name: String,
    pub input: Option<ShapeRef>,
    pub output: Option<ShapeRef>,
}

/// One AWS service's model.
#[derive(Debug)]
pub struct Model {
    pub metadata: Metadata,
    operations: HashMap<String, Operation>,
    shapes: HashMap<String, Shape>,
    /// Error code → the exception shape that answers it.
    errors: HashMap<String, String>,
}

/// How deep a request may nest before it is refused (guards the recursive walk).
const MAX_DEPTH: usize = 64;

impl Model {
    /// Parses a (stripped) botocore `service-2.json`. Models ship with the binary, so a
    /// failure here is a build defect, reported as a string.
    pub fn from_json(text: &str) -> Result<Model, String> {
        let raw: RawModel = serde_json::from_str(text).map_err(|e| format!("invalid service model: {e}"))?;
        let errors = error_shapes(&raw.shapes);
        let shapes = raw
            .shapes
            .into_iter()
            .map(|(name, s)| {
                let shape = match s.kind.as_str() {
                    "structure" => Shape::Structure { members: s.members.unwrap_or_default().0, required: s.required },
                    "list" => Shape::List {
                        member: s.member.ok_or_else(|| format!("list {name} has no member"))?,
                        min: s.min,
                        max: s.max,
                        flattened: s.flattened.unwrap_or(false),
                    },
                    "map" => Shape::Map {
                        key: s.key.ok_or_else(|| format!("map {name} has no key"))?,
                        value: s.value.ok_or_else(|| format!("map {name} has no value"))?,
                        flattened: s.flattened.unwrap_or(false),
                    },
                    "string" => Shape::String { enum_values: s.enum_values, min: s.min, max: s.max },
                    "integer" | "long" => Shape::Integer { min: s.min, max: s.max },
                    "double" | "float" => Shape::Float,
                    "boolean" => Shape::Boolean,
                    "timestamp" => Shape::Timestamp,
                    "blob" => Shape::Blob,
                    other => return Err(format!("shape {name} has unknown type {other}")),
                };
                Ok((name, shape))
            })
            .collect::<Result<HashMap<_, _>, String>>()?;
        let operations = raw
            .operations
            .into_iter()
            .map(|(name, op)| (name.clone(), Operation { name, input: op.input, output: op.output }))
            .collect();
        Ok(Model { metadata: raw.metadata, operations, shapes, errors })
    }

    /// The exception shape whose error code is `code` (`InvalidParameterValue` →
    /// `InvalidParameterValueException` in CloudWatch's model), if the model has one.
    pub fn error_shape(&self, code: &str) -> Option<&str> {
        self.errors.get(code).map(String::as_str)
    }

    /// The absolute Smithy shape id of shape `name`. botocore models drop Smithy namespaces;
    /// AWS's services live in `com.amazonaws.<service id in lower case, without spaces>`.
    pub fn shape_id(&self, name: &str) -> String {
        let service = self.metadata.service_id.as_deref().unwrap_or(&self.metadata.endpoint_prefix);
        let namespace: String = service.chars().filter(|c| !c.is_whitespace()).collect();
        format!("com.amazonaws.{}#{name}", namespace.to_lowercase())
    }

    pub fn operation(&self, name: &str) -> Option<&Operation> {
        self.operations.get(name)
    }

    pub fn operation_names(&self) -> impl Iterator<Item = &str> {
        self.operations.keys().map(String::as_str)
    }

    pub fn shape(&self, name: &str) -> Option<&Shape> {
        self.shapes.get(name)
    }

    /// Validates `input` for operation `op` and returns it with unknown members removed.
    /// A missing body is an empty structure. Errors name the member path.
    pub fn validate(&self, op: &str, input: Value) -> Result<Value, Error> {
        let Some(shape) = self.operation(op).and_then(|o| o.input.as_ref()) else {
            return Ok(Value::Object(Map::new()));
        };
        let input = if input.is_null() { Value::Object(Map::new()) } else { input };
        self.check(&shape.shape, input, "", 0)
    }

    /// Shapes a handler's output to the operation's output shape: members the model does not
    /// know (a client token kept in a document, say) are dropped, so responses carry exactly
    /// what botocore expects. Never fails.
    pub fn conform_output(&self, op: &str, output: Value) -> Value {
        match self.operation(op).and_then(|o| o.output.as_ref()) {
            Some(r) => self.conform(&r.shape, output, 0),
            None => Value::Object(Map::new()),
        }
    }

    fn conform(&self, shape_name: &str, value: Value, depth: usize) -> Value {
        match (self.shapes.get(shape_name), value) {
            (_, v) if depth > MAX_DEPTH => v,
            (Some(Shape::Structure { members, .. }), Value::Object(mut obj)) => {
                let mut out = Map::new();
                for (name, r) in members {
                    if let Some(v) = obj.remove(name).filter(|v| !v.is_null()) {
                        out.insert(name.clone(), self.conform(&r.shape, v, depth + 1));
                    }
                }
                Value::Object(out)
            }
            (Some(Shape::List { member, .. }), Value::Array(items)) => {
                Value::Array(items.into_iter().map(|v| self.conform(&member.shape, v, depth + 1)).collect())
            }
            (Some(Shape::Map { value: val, .. }), Value::Object(obj)) => {
                Value::Object(obj.into_iter().map(|(k, v)| (k, self.conform(&val.shape, v, depth + 1))).collect())
            }
            (_, v) => v,
        }
    }

    fn check(&self, shape_name: &str, value: Value, path: &str, depth: usize) -> Result<Value, Error> {
        if depth > MAX_DEPTH {
            return Err(Error::Serialization(format!("Request nests too deeply at '{path}'")));
        }
        let Some(shape) = self.shapes.get(shape_name) else {
            return Err(Error::Internal(format!("model has no shape {shape_name}")));
        };
        match shape {
            Shape::Structure { members, required } => {
                let Value::Object(mut obj) = value else {
                    return Err(type_error(path, "structure", &value));
                };
                let mut out = Map::new();
                for (name, r) in members {
                    let child = join(path, name);
                    match obj.remove(name) {
                        None | Some(Value::Null) => {
                            if required.contains(name) {
                                return Err(constraint(&child, "null", "Member must not be null"));
                            }
                        }
                        Some(v) => {
                            out.insert(name.clone(), self.check(&r.shape, v, &child, depth + 1)?);
                        }
                    }
                }
                Ok(Value::Object(out))
            }
            Shape::List { member, min, max, .. } => {
                let Value::Array(items) = value else {
                    return Err(type_error(path, "list", &value));
                };
                check_len(path, items.len(), *min, *max, "length")?;
                items
                    .into_iter()
                    .enumerate()
                    .map(|(i, v)| self.check(&member.shape, v, &format!("{path}.{}", i + 1), depth + 1))
                    .collect::<Result<Vec<_>, _>>()
                    .map(Value::Array)
            }
            Shape::Map { key, value: val, .. } => {
                let Value::Object(obj) = value else {
                    return Err(type_error(path, "map", &value));
                };
                let mut out = Map::new();
                for (k, v) in obj {
                    let child = format!("{path}.{k}");
                    self.check(&key.shape, Value::String(k.clone()), &child, depth + 1)?;
                    out.insert(k, self.check(&val.shape, v, &child, depth + 1)?);
                }
                Ok(Value::Object(out))
            }
            Shape::String { enum_values, min, max } => {
                let Value::String(s) = &value else {
                    return Err(type_error(path, "string", &value));
                };
                if let Some(allowed) = enum_values
                    && !allowed.iter().any(|a| a == s)
                {
                    return Err(constraint(
                        path,
                        &format!("'{s}'"),
                        &format!("Member must satisfy enum value set: [{}]", allowed.join(", ")),
                    ));
                }
                check_len(path, s.chars().count(), *min, *max, "length")?;
                Ok(value)
            }
            Shape::Integer { min, max } => {
                let Some(n) = value.as_i64() else {
                    return Err(type_error(path, "integer", &value));
                };
                if let Some(m) = min
                    && (n as f64) < *m
                {
                    return Err(constraint(
                        path,
                        &n.to_string(),
                        &format!("Member must have value greater than or equal to {m}"),
                    ));
                }
                if let Some(m) = max
                    && (n as f64) > *m
                {
                    return Err(constraint(
                        path,
                        &n.to_string(),
                        &format!("Member must have value less than or equal to {m}"),
                    ));
                }
                Ok(value)
            }
            Shape::Float => {
                value.is_number().then_some(value.clone()).ok_or_else(|| type_error(path, "number", &value))
            }
            Shape::Boolean => {
                value.is_boolean().then_some(value.clone()).ok_or_else(|| type_error(path, "boolean", &value))
            }
            Shape::Timestamp => (value.is_number() || value.is_string())
                .then_some(value.clone())
                .ok_or_else(|| type_error(path, "timestamp", &value)),
            Shape::Blob => value.is_string().then_some(value.clone()).ok_or_else(|| type_error(path, "blob", &value)),
        }
    }
}

/// Error code → exception shape. Several shapes may share a code (CloudWatch's
/// `DashboardNotFoundError` and `ResourceNotFound` both answer `ResourceNotFound`): the one
/// named like the code wins, then the first by name, so the choice never depends on map order.
fn error_shapes(shapes: &HashMap<String, RawShape>) -> HashMap<String, String> {
    let mut names: Vec<&String> = shapes.keys().collect();
    names.sort_unstable();
    let mut errors: HashMap<String, String> = HashMap::new();
    for name in names {
        let shape = &shapes[name];
        if !shape.exception && shape.error.is_none() {
            continue;
        }
        let code = shape.error.as_ref().and_then(|e| e.code.clone()).unwrap_or_else(|| name.clone());
        if *name == code {
            errors.insert(code, name.clone());
        } else {
            errors.entry(code).or_insert_with(|| name.clone());
        }
    }
    errors
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() { name.to_string() } else { format!("{path}.{name}") }
}

fn check_len(path: &str, len: usize, min: Option<f64>, max: Option<f64>, what: &str) -> Result<(), Error> {
    if let Some(m) = min
        && (len as f64) < m
    {
        return Err(constraint(
            path,
            &format!("{what} {len}"),
            &format!("Member must have {what} greater than or equal to {m}"),
        ));
    }
    if let Some(m) = max
        && (len as f64) > m
    {
        return Err(constraint(
            path,
            &format!("{what} {len}"),
            &format!("Member must have {what} less than or equal to {m}"),
        ));
    }
    Ok(())
}

fn constraint(path: &str, value: &str, rule: &str) -> Error {
    Error::invalid(
        path,
        format!("1 validation error detected: Value {value} at '{path}' failed to satisfy constraint: {rule}"),
    )
}

fn type_error(path: &str, expected: &str, got: &Value) -> Error {
    let got = match got {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "list",
        Value::Object(_) => "structure",
    };
    let at = if path.is_empty() { "the request body".to_string() } else { format!("'{path}'") };
    Error::Serialization(format!("Expected {expected} for {at} but got {got}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MODEL: &str = r#"{
      "metadata": {"apiVersion": "2014-11-13", "protocol": "json", "endpointPrefix": "ecs", "targetPrefix": "X"},
      "operations": {"Op": {"input": {"shape": "In"}}},
      "shapes": {
        "In": {"type": "structure", "required": ["name"], "members": {
          "name": {"shape": "Name"}, "mode": {"shape": "Mode"}, "count": {"shape": "Pct"},
          "items": {"shape": "Items"}, "labels": {"shape": "Labels"}, "flag": {"shape": "Bool"}}},
        "Name": {"type": "string", "min": 1, "max": 5},
        "Mode": {"type": "string", "enum": ["bridge", "host"]},
        "Pct": {"type": "integer", "min": 0, "max": 100},
        "Items": {"type": "list", "member": {"shape": "In"}},
        "Labels": {"type": "map", "key": {"shape": "Name"}, "value": {"shape": "Name"}},
        "Bool": {"type": "boolean"}
      }}"#;

    fn model() -> Model {
        Model::from_json(MODEL).unwrap()
    }

    #[test]
    fn accepts_and_strips_unknown_members() {
        let out = model().validate("Op", json!({"name": "a", "zzz": 1, "items": [{"name": "b", "q": 2}]})).unwrap();
        assert_eq!(out, json!({"name": "a", "items": [{"name": "b"}]}));
    }

    #[test]
    fn names_the_field_of_each_violation() {
        let m = model();
        let cases = [
            (json!({}), "name", "must not be null"),
            (json!({"name": "abcdef"}), "name", "length less than or equal to 5"),
            (json!({"name": "a", "mode": "awsvpc"}), "mode", "enum value set: [bridge, host]"),
            (json!({"name": "a", "count": 101}), "count", "less than or equal to 100"),
            (json!({"name": "a", "items": [{"name": "a"}, {}]}), "items.2.name", "must not be null"),
            (json!({"name": "a", "labels": {"k": "toolong"}}), "labels.k", "length"),
        ];
        for (input, field, rule) in cases {
            match m.validate("Op", input) {
                Err(Error::InvalidParameter { field: f, message }) => {
                    assert_eq!(f, field);
                    assert!(message.contains(rule), "{message}");
                }
                other => panic!("expected InvalidParameter for {field}, got {other:?}"),
            }
        }
    }

    #[test]
    fn wrong_types_are_serialization_errors() {
        let m = model();
        for input in
            [json!({"name": 3}), json!({"name": "a", "flag": "yes"}), json!([1]), json!({"name": "a", "count": 1.5})]
        {
            assert!(matches!(m.validate("Op", input), Err(Error::Serialization(_))));
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC{0,200}") {
            if let Ok(v) = serde_json::from_str::<Value>(&s) {
                let _ = model().validate("Op", v);
            }
        }
    }

    #[test]
    fn output_is_conformed_to_its_shape() {
        let m = Model::from_json(
            r#"{"metadata": {"apiVersion": "1", "protocol": "json", "endpointPrefix": "x"},
                "operations": {"Op": {"output": {"shape": "Out"}}},
                "shapes": {"Out": {"type": "structure", "members": {"items": {"shape": "L"}}},
                           "L": {"type": "list", "member": {"shape": "I"}},
                           "I": {"type": "structure", "members": {"a": {"shape": "S"}}},
                           "S": {"type": "string"}}}"#,
        )
        .unwrap();
        let out = m.conform_output("Op", json!({"items": [{"a": "x", "secret": 1}], "clientToken": "t"}));
        assert_eq!(out, json!({"items": [{"a": "x"}]}));
    }

    #[test]
    fn deep_nesting_is_refused() {
        let mut v = json!({"name": "a"});
        for _ in 0..100 {
            v = json!({"name": "a", "items": [v]});
        }
        assert!(matches!(model().validate("Op", v), Err(Error::Serialization(_))));
    }

    #[test]
    fn error_codes_name_their_exception_shapes() {
        let m = Model::from_json(
            r#"{"metadata": {"apiVersion": "1", "protocol": "smithy-rpc-v2-cbor", "endpointPrefix": "monitoring",
                  "protocols": ["smithy-rpc-v2-cbor", "json", "query"], "jsonVersion": "1.0",
                  "awsQueryCompatible": {}, "serviceId": "CloudWatch"},
                "operations": {},
                "shapes": {
                  "InvalidParameterValueException": {"type": "structure", "exception": true,
                    "error": {"code": "InvalidParameterValue", "httpStatusCode": 400, "senderFault": true}},
                  "DashboardNotFoundError": {"type": "structure", "exception": true, "error": {"code": "ResourceNotFound"}},
                  "ResourceNotFound": {"type": "structure", "exception": true, "error": {"code": "ResourceNotFound"}},
                  "ConflictException": {"type": "structure", "exception": true, "error": {"httpStatusCode": 409}},
                  "S": {"type": "string"}}}"#,
        )
        .unwrap();
        assert_eq!(m.error_shape("InvalidParameterValue"), Some("InvalidParameterValueException"));
        assert_eq!(m.error_shape("ResourceNotFound"), Some("ResourceNotFound"));
        assert_eq!(m.error_shape("ConflictException"), Some("ConflictException"));
        assert_eq!(m.error_shape("S"), None);
        assert_eq!(m.shape_id("ResourceNotFound"), "com.amazonaws.cloudwatch#ResourceNotFound");
        assert!(m.metadata.aws_query_compatible);
        assert_eq!(m.metadata.json_version.as_deref(), Some("1.0"));
        assert!(!model().metadata.aws_query_compatible);
    }
}
