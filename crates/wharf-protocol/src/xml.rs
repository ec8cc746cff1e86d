//! The AWS Query protocol's response side: a JSON value written as XML by the operation's
//! output shape, and the `<ErrorResponse>` envelope botocore's Query parser reads.

use crate::WireError;
use crate::model::{Model, Shape};
use serde_json::Value;
use std::fmt::Write;

/// `<{Op}Response xmlns=…><{Op}Result>…</{Op}Result><ResponseMetadata>…</ResponseMetadata></{Op}Response>`
pub fn response(model: &Model, op: &str, output: &Value, request_id: &str) -> String {
    let ns = model.metadata.xml_namespace.as_deref().unwrap_or("");
    let mut out = format!(r#"<?xml version="1.0" encoding="UTF-8"?><{op}Response xmlns="{ns}">"#);
    if let Some(o) = model.operation(op).and_then(|o| o.output.as_ref()) {
        let wrapper = o.result_wrapper.clone().unwrap_or_else(|| format!("{op}Result"));
        let _ = write!(out, "<{wrapper}>");
        if let Some(Shape::Structure { members, .. }) = model.shape(&o.shape) {
            for (name, r) in members {
                if let Some(v) = output.get(name) {
                    write_value(
                        model,
                        &mut out,
                        r.location_name.as_deref().unwrap_or(name),
                        &r.shape,
                        v,
                        r.flattened.unwrap_or(false),
                        0,
                    );
                }
            }
        }
        let _ = write!(out, "</{wrapper}>");
    }
    let _ = write!(out, "<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{op}Response>");
    out
}

/// The Query error envelope.
pub fn error_response(err: &WireError, request_id: &str) -> String {
    let kind = if err.sender_fault { "Sender" } else { "Receiver" };
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?><ErrorResponse><Error><Type>{kind}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>"#,
        escape(err.code),
        escape(&err.message)
    )
}

fn write_value(
    model: &Model,
    out: &mut String,
    name: &str,
    shape_name: &str,
    v: &Value,
    flattened: bool,
    depth: usize,
) {
    // An absent member (handlers write `null` for one, as JSON drops it) is no element.
    if depth > 64 || v.is_null() {
        return;
    }
    let Some(shape) = model.shape(shape_name) else { return };
    match shape {
        Shape::Structure { members, .. } => {
            let _ = write!(out, "<{name}>");
            for (m, r) in members {
                if let Some(child) = v.get(m) {
                    let wire = r.location_name.as_deref().unwrap_or(m);
                    write_value(model, out, wire, &r.shape, child, r.flattened.unwrap_or(false), depth + 1);
                }
            }
            let _ = write!(out, "</{name}>");
        }
        Shape::List { member, flattened: shape_flat, .. } => {
            let items = v.as_array().map(Vec::as_slice).unwrap_or_default();
            let item_name = member.location_name.as_deref().unwrap_or("member");
            if flattened || *shape_flat {
                for item in items {
                    write_value(model, out, name, &member.shape, item, false, depth + 1);
                }
            } else {
                let _ = write!(out, "<{name}>");
                for item in items {
                    write_value(model, out, item_name, &member.shape, item, false, depth + 1);
                }
                let _ = write!(out, "</{name}>");
            }
        }
        Shape::Map { key, value, .. } => {
            let _ = write!(out, "<{name}>");
            if let Some(obj) = v.as_object() {
                for (k, val) in obj {
                    let _ = write!(out, "<entry><key>{}</key>", escape(k));
                    write_value(model, out, "value", &value.shape, val, false, depth + 1);
                    let _ = write!(out, "</entry>");
                }
            }
            let _ = key;
            let _ = write!(out, "</{name}>");
        }
        Shape::Timestamp => {
            let text = match v {
                Value::Number(n) => iso8601(n.as_f64().unwrap_or(0.0)),
                other => other.as_str().unwrap_or_default().to_string(),
            };
            let _ = write!(out, "<{name}>{text}</{name}>");
        }
        _ => {
            let text = match v {
                Value::String(s) => escape(s),
                other => other.to_string(),
            };
            let _ = write!(out, "<{name}>{text}</{name}>");
        }
    }
}

pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c => out.push(c),
        }
    }
    out
}

pub use wharf_types::iso8601;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_timestamps() {
        assert_eq!(iso8601(0.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(1_795_555_518.25), "2026-11-24T21:25:18.250Z");
        assert_eq!(iso8601(951_782_400.0), "2000-02-29T00:00:00.000Z");
    }

    #[test]
    fn null_members_are_left_out() {
        let model = Model::from_json(
            r#"{"metadata": {"apiVersion": "2010-08-01", "protocol": "query", "endpointPrefix": "monitoring",
                  "xmlNamespace": "urn:x"},
                "operations": {"List": {"output": {"shape": "Out", "resultWrapper": "ListResult"}}},
                "shapes": {"Out": {"type": "structure", "members": {"Items": {"shape": "L"}, "NextToken": {"shape": "S"}}},
                           "L": {"type": "list", "member": {"shape": "S"}}, "S": {"type": "string"}}}"#,
        )
        .unwrap();
        let xml = response(&model, "List", &serde_json::json!({"Items": ["a", null], "NextToken": null}), "r");
        assert!(xml.contains("<ListResult><Items><member>a</member></Items></ListResult>"), "{xml}");
    }

    #[test]
    fn escapes_markup() {
        assert_eq!(escape("a<b>&\"'"), "a&lt;b&gt;&amp;&quot;&apos;");
    }
}
