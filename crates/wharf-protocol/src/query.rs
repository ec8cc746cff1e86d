//! The AWS Query protocol's request side: form parameters (`Action`, `Version`, and members
//! flattened as `Tags.member.1.Key=…`) walked into a JSON value by the operation's input
//! shape, then validated by the model like any JSON request. Timestamps (ISO 8601 on the
//! wire) become epoch seconds, as the JSON protocols carry them.

use crate::model::{Model, Shape};
use serde_json::{Map, Number, Value};
use std::collections::BTreeMap;
use wharf_types::Error;

/// A decoded Query request.
#[derive(Debug, Clone, PartialEq)]
pub struct QueryRequest {
    pub action: String,
    pub version: Option<String>,
    pub params: BTreeMap<String, String>,
}

/// Parses a form body (or query string). Returns `None` when there is no `Action`.
pub fn parse_form(body: &[u8]) -> Option<QueryRequest> {
    let mut params: BTreeMap<String, String> = form_urlencoded::parse(body).into_owned().collect();
    let action = params.remove("Action")?;
    let version = params.remove("Version");
    params.retain(|k, _| !k.starts_with("X-Amz-"));
    Some(QueryRequest { action, version, params })
}

/// Walks the form parameters into the operation's input structure and validates it.
pub fn decode_input(model: &Model, req: &QueryRequest) -> Result<Value, Error> {
    let Some(input) = model.operation(&req.action).and_then(|o| o.input.as_ref()) else {
        return Ok(Value::Object(Map::new()));
    };
    let value = Walker { model, params: &req.params }.walk(&input.shape, "", 0)?.unwrap_or(Value::Object(Map::new()));
    model.validate(&req.action, value)
}

struct Walker<'a> {
    model: &'a Model,
    params: &'a BTreeMap<String, String>,
}

const MAX_DEPTH: usize = 32;

impl Walker<'_> {
    /// Keys at or below `prefix` exist.
    fn present(&self, prefix: &str) -> bool {
        if prefix.is_empty() {
            return true;
        }
        self.params
            .range(prefix.to_string()..)
            .next()
            .is_some_and(|(k, _)| k == prefix || k.strip_prefix(prefix).is_some_and(|r| r.starts_with('.')))
    }

    /// The distinct numeric indices directly under `prefix.`, in order.
    fn indices(&self, prefix: &str) -> Vec<u32> {
        let start = format!("{prefix}.");
        let mut out: Vec<u32> = self
            .params
            .range(start.clone()..)
            .take_while(|(k, _)| k.starts_with(&start))
            .filter_map(|(k, _)| k[start.len()..].split('.').next()?.parse().ok())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    fn walk(&self, shape_name: &str, prefix: &str, depth: usize) -> Result<Option<Value>, Error> {
        if depth > MAX_DEPTH {
            return Err(Error::Serialization(format!("Parameter '{prefix}' nests too deeply")));
        }
        let Some(shape) = self.model.shape(shape_name) else {
            return Err(Error::Internal(format!("model has no shape {shape_name}")));
        };
        if !self.present(prefix) {
            return Ok(None);
        }
        let scalar = || self.params.get(prefix).map(String::as_str);
        let bad = |what: &str| {
            Error::invalid(prefix, format!("Value '{}' at '{prefix}' is not a valid {what}", scalar().unwrap_or("")))
        };
        Ok(Some(match shape {
            Shape::Structure { members, .. } => {
                let mut obj = Map::new();
                for (name, r) in members {
                    let wire = r.location_name.as_deref().unwrap_or(name);
                    let child = if prefix.is_empty() { wire.to_string() } else { format!("{prefix}.{wire}") };
                    if let Some(v) = self.walk(&r.shape, &child, depth + 1)? {
                        obj.insert(name.clone(), v);
                    }
                }
                Value::Object(obj)
            }
            Shape::List { member, flattened, .. } => {
                let base = if *flattened {
                    prefix.to_string()
                } else {
                    format!("{prefix}.{}", member.location_name.as_deref().unwrap_or("member"))
                };
                let mut items = Vec::new();
                for i in self.indices(&base) {
                    if let Some(v) = self.walk(&member.shape, &format!("{base}.{i}"), depth + 1)? {
                        items.push(v);
                    }
                }
                Value::Array(items)
            }
            Shape::Map { key, value, flattened } => {
                let base = if *flattened { prefix.to_string() } else { format!("{prefix}.entry") };
                let (kn, vn) =
                    (key.location_name.as_deref().unwrap_or("key"), value.location_name.as_deref().unwrap_or("value"));
                let mut obj = Map::new();
                for i in self.indices(&base) {
                    let entry = format!("{base}.{i}");
                    let Some(k) = self.params.get(&format!("{entry}.{kn}")) else {
                        return Err(Error::invalid(&entry, format!("Map entry '{entry}' has no {kn}")));
                    };
                    let v = self.walk(&value.shape, &format!("{entry}.{vn}"), depth + 1)?.unwrap_or(Value::Null);
                    obj.insert(k.clone(), v);
                }
                Value::Object(obj)
            }
            // Handlers take timestamps as epoch seconds, as JSON clients send them.
            Shape::Timestamp => match scalar() {
                Some(s) => wharf_types::parse_iso8601(s)
                    .or_else(|| s.trim().parse::<f64>().ok())
                    .and_then(Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| bad("timestamp"))?,
                None => return Ok(None),
            },
            Shape::String { .. } | Shape::Blob => match scalar() {
                Some(s) => Value::String(s.to_string()),
                None => return Ok(None),
            },
            Shape::Integer { .. } => match scalar() {
                Some(s) => Value::Number(s.trim().parse::<i64>().map_err(|_| bad("integer"))?.into()),
                None => return Ok(None),
            },
            Shape::Float => match scalar() {
                Some(s) => s
                    .trim()
                    .parse::<f64>()
                    .ok()
                    .and_then(Number::from_f64)
                    .map(Value::Number)
                    .ok_or_else(|| bad("number"))?,
                None => return Ok(None),
            },
            Shape::Boolean => match scalar() {
                Some("true") => Value::Bool(true),
                Some("false") => Value::Bool(false),
                Some(_) => return Err(bad("boolean")),
                None => return Ok(None),
            },
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const MODEL: &str = r#"{
      "metadata": {"apiVersion": "2015-12-01", "protocol": "query", "endpointPrefix": "elasticloadbalancing"},
      "operations": {"AddTags": {"input": {"shape": "In"}}},
      "shapes": {
        "In": {"type": "structure", "required": ["ResourceArns"], "members": {
          "ResourceArns": {"shape": "Arns"}, "Tags": {"shape": "Tags"}, "Port": {"shape": "Port"},
          "Enabled": {"shape": "Bool"}, "Attrs": {"shape": "Attrs"}}},
        "Arns": {"type": "list", "member": {"shape": "S"}},
        "Tags": {"type": "list", "member": {"shape": "Tag"}},
        "Tag": {"type": "structure", "required": ["Key"], "members": {"Key": {"shape": "S"}, "Value": {"shape": "S"}}},
        "Attrs": {"type": "map", "key": {"shape": "S"}, "value": {"shape": "S"}},
        "Port": {"type": "integer", "min": 1, "max": 65535},
        "Bool": {"type": "boolean"},
        "S": {"type": "string"}
      }}"#;

    #[test]
    fn walks_lists_structures_maps_and_scalars() {
        let model = Model::from_json(MODEL).unwrap();
        let body = "Action=AddTags&Version=2015-12-01&ResourceArns.member.2=b&ResourceArns.member.1=a\
                    &Tags.member.1.Key=k&Tags.member.1.Value=v&Port=80&Enabled=true\
                    &Attrs.entry.1.key=x&Attrs.entry.1.value=y&ResourceArns.member.10=c";
        let req = parse_form(body.as_bytes()).unwrap();
        assert_eq!(req.action, "AddTags");
        let v = decode_input(&model, &req).unwrap();
        assert_eq!(
            v,
            json!({"ResourceArns": ["a", "b", "c"], "Tags": [{"Key": "k", "Value": "v"}], "Port": 80, "Enabled": true, "Attrs": {"x": "y"}})
        );
    }

    #[test]
    fn bad_scalars_and_missing_members_name_the_parameter() {
        let model = Model::from_json(MODEL).unwrap();
        let req = parse_form(b"Action=AddTags&ResourceArns.member.1=a&Port=eighty").unwrap();
        assert!(matches!(decode_input(&model, &req), Err(Error::InvalidParameter { field, .. }) if field == "Port"));
        let req = parse_form(b"Action=AddTags&Port=80").unwrap();
        assert!(
            matches!(decode_input(&model, &req), Err(Error::InvalidParameter { field, .. }) if field == "ResourceArns")
        );
        let req = parse_form(b"Action=AddTags&ResourceArns.member.1=a&Port=70000").unwrap();
        assert!(matches!(decode_input(&model, &req), Err(Error::InvalidParameter { field, .. }) if field == "Port"));
    }

    #[test]
    fn walks_elbv2_nesting_lists_in_structures_in_lists() {
        let model = Model::from_json(
            r#"{
          "metadata": {"apiVersion": "2015-12-01", "protocol": "query", "endpointPrefix": "elasticloadbalancing"},
          "operations": {"CreateRule": {"input": {"shape": "In"}}},
          "shapes": {
            "In": {"type": "structure", "members": {"Actions": {"shape": "Actions"}, "Conditions": {"shape": "Conds"}}},
            "Actions": {"type": "list", "member": {"shape": "Action"}},
            "Action": {"type": "structure", "members": {"Type": {"shape": "S"}, "ForwardConfig": {"shape": "Fwd"}}},
            "Fwd": {"type": "structure", "members": {"TargetGroups": {"shape": "Tgs"}}},
            "Tgs": {"type": "list", "member": {"shape": "Tg"}},
            "Tg": {"type": "structure", "members": {"TargetGroupArn": {"shape": "S"}, "Weight": {"shape": "I"}}},
            "Conds": {"type": "list", "member": {"shape": "Cond"}},
            "Cond": {"type": "structure", "members": {"Field": {"shape": "S"}, "Values": {"shape": "Strs"},
              "QueryStringConfig": {"shape": "Qs"}}},
            "Qs": {"type": "structure", "members": {"Values": {"shape": "Kvs"}}},
            "Kvs": {"type": "list", "member": {"shape": "Kv"}},
            "Kv": {"type": "structure", "members": {"Key": {"shape": "S"}, "Value": {"shape": "S"}}},
            "Strs": {"type": "list", "member": {"shape": "S"}},
            "I": {"type": "integer"},
            "S": {"type": "string"}
          }}"#,
        )
        .unwrap();
        let body = "Action=CreateRule&Actions.member.1.Type=forward\
                    &Actions.member.1.ForwardConfig.TargetGroups.member.2.TargetGroupArn=b\
                    &Actions.member.1.ForwardConfig.TargetGroups.member.2.Weight=0\
                    &Actions.member.1.ForwardConfig.TargetGroups.member.1.TargetGroupArn=a\
                    &Actions.member.1.ForwardConfig.TargetGroups.member.1.Weight=3\
                    &Conditions.member.1.Field=path-pattern&Conditions.member.1.Values.member.1=%2Fapi%2F*\
                    &Conditions.member.2.Field=query-string\
                    &Conditions.member.2.QueryStringConfig.Values.member.1.Key=v\
                    &Conditions.member.2.QueryStringConfig.Values.member.1.Value=2";
        let v = decode_input(&model, &parse_form(body.as_bytes()).unwrap()).unwrap();
        assert_eq!(
            v,
            json!({
                "Actions": [{"Type": "forward", "ForwardConfig": {"TargetGroups": [
                    {"TargetGroupArn": "a", "Weight": 3}, {"TargetGroupArn": "b", "Weight": 0}]}}],
                "Conditions": [
                    {"Field": "path-pattern", "Values": ["/api/*"]},
                    {"Field": "query-string", "QueryStringConfig": {"Values": [{"Key": "v", "Value": "2"}]}}
                ]
            })
        );
    }

    #[test]
    fn timestamps_become_epoch_seconds() {
        let model = Model::from_json(
            r#"{
          "metadata": {"apiVersion": "2010-08-01", "protocol": "query", "endpointPrefix": "monitoring"},
          "operations": {"Get": {"input": {"shape": "In"}}},
          "shapes": {
            "In": {"type": "structure", "members": {"StartTime": {"shape": "T"}, "EndTime": {"shape": "T"}}},
            "T": {"type": "timestamp"}
          }}"#,
        )
        .unwrap();
        let req = parse_form(b"Action=Get&StartTime=2026-11-24T21%3A25%3A18.250Z&EndTime=1795555600").unwrap();
        assert_eq!(
            decode_input(&model, &req).unwrap(),
            json!({"StartTime": 1_795_555_518.25, "EndTime": 1_795_555_600.0})
        );
        let req = parse_form(b"Action=Get&StartTime=yesterday").unwrap();
        assert!(
            matches!(decode_input(&model, &req), Err(Error::InvalidParameter { field, .. }) if field == "StartTime")
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(body in "[A-Za-z0-9.=&%]{0,300}") {
            let model = Model::from_json(MODEL).unwrap();
            if let Some(req) = parse_form(format!("Action=AddTags&{body}").as_bytes()) {
                let _ = decode_input(&model, &req);
            }
        }
    }
}
