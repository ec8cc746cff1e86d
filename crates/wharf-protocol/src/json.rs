//! AWS JSON 1.0 and 1.1: `X-Amz-Target: <prefix>.<Operation>` in, JSON out, errors as
//! `{"__type": type, "message": text}` — the envelope botocore's JSON parser reads. The two
//! versions differ only in their content type.

use serde_json::json;

/// JSON 1.1's content type, and the one answered when no service is known.
pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";
pub const CONTENT_TYPE_1_0: &str = "application/x-amz-json-1.0";

/// The content type of a model's `jsonVersion` (1.1 unless it says 1.0).
pub fn content_type(json_version: Option<&str>) -> &'static str {
    if json_version == Some("1.0") { CONTENT_TYPE_1_0 } else { CONTENT_TYPE }
}

/// Splits an `X-Amz-Target` value into (prefix, operation).
pub fn split_target(target: &str) -> Option<(&str, &str)> {
    target.rsplit_once('.').filter(|(p, o)| !p.is_empty() && !o.is_empty())
}

/// The error body for a JSON service: `type_name` is the error's shape name (or its code).
pub fn error_body(type_name: &str, message: &str) -> Vec<u8> {
    json!({"__type": type_name, "message": message}).to_string().into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_targets() {
        assert_eq!(
            split_target("AmazonEC2ContainerServiceV20141113.ListClusters"),
            Some(("AmazonEC2ContainerServiceV20141113", "ListClusters"))
        );
        assert_eq!(split_target("NoDot"), None);
        assert_eq!(split_target("Trailing."), None);
    }

    #[test]
    fn error_envelope_is_what_botocore_parses() {
        let v: serde_json::Value = serde_json::from_slice(&error_body("ClientException", "bad")).unwrap();
        assert_eq!(v, json!({"__type": "ClientException", "message": "bad"}));
    }

    #[test]
    fn content_type_follows_the_json_version() {
        assert_eq!(content_type(Some("1.0")), "application/x-amz-json-1.0");
        assert_eq!(content_type(Some("1.1")), "application/x-amz-json-1.1");
        assert_eq!(content_type(None), "application/x-amz-json-1.1");
    }
}
