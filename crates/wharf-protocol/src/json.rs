//! AWS JSON 1.1: `X-Amz-Target: <prefix>.<Operation>` in, JSON out, errors as
//! `{"__type": code, "message": text}` — the envelope botocore's JSON parser reads.

use crate::WireError;
use serde_json::json;

pub const CONTENT_TYPE: &str = "application/x-amz-json-1.1";

/// Splits an `X-Amz-Target` value into (prefix, operation).
pub fn split_target(target: &str) -> Option<(&str, &str)> {
    target.rsplit_once('.').filter(|(p, o)| !p.is_empty() && !o.is_empty())
}

/// The error body for a JSON service.
pub fn error_body(err: &WireError) -> Vec<u8> {
    json!({"__type": err.code, "message": err.message}).to_string().into_bytes()
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
        let e = WireError { status: 400, code: "ClientException", message: "bad".into(), sender_fault: true };
        let v: serde_json::Value = serde_json::from_slice(&error_body(&e)).unwrap();
        assert_eq!(v, json!({"__type": "ClientException", "message": "bad"}));
    }
}
