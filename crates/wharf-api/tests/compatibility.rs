//! `docs/compatibility.md` is generated from the dispatch tables and the service models, and
//! this test fails when it drifts. Regenerate with:
//! `WHARF_BLESS=1 cargo test -p wharf-api --test compatibility`.
#![allow(clippy::unwrap_used)]

use std::fmt::Write;
use wharf_protocol::Protocol;

/// A protocol as the doc names it: JSON with its version, RPC v2 CBOR by its model name.
fn served(protocol: Protocol, meta: &wharf_protocol::model::Metadata) -> String {
    match protocol {
        Protocol::Json => format!("json {}", meta.json_version.as_deref().unwrap_or("1.1")),
        Protocol::Query => "query".into(),
        Protocol::Cbor => "smithy-rpc-v2-cbor".into(),
    }
}

fn render() -> String {
    let mut out = String::from(
        "# Compatibility\n\n\
         Generated from Wharf's dispatch tables and the botocore service models it embeds; a test\n\
         (`crates/wharf-api/tests/compatibility.rs`) fails when this file drifts from the code.\n\
         Regenerate with `WHARF_BLESS=1 cargo test -p wharf-api --test compatibility`.\n\n\
         An operation listed as implemented accepts the model's full request shape (validated\n\
         against the model: required members, types, enums, ranges) and answers with its response\n\
         shape. Operations of the model that are not implemented answer `UnknownOperationException`\n\
         (JSON, RPC v2 CBOR) or `InvalidAction` (Query, and every protocol of a service that answers\n\
         Query's error codes, as CloudWatch does).\n",
    );
    for service in wharf_api::services() {
        let meta = &service.model.metadata;
        let mut all: Vec<&str> = service.model.operation_names().collect();
        all.sort_unstable();
        let _ = write!(
            out,
            "\n## {} (`{}`, API version {}, protocols: {})\n\nImplemented: {} of {} operations.\n\n| Operation | Status |\n| --- | --- |\n",
            meta.endpoint_prefix.to_uppercase(),
            meta.target_prefix.as_deref().unwrap_or(&meta.endpoint_prefix),
            meta.api_version,
            // What Wharf serves (a model may list a newer protocol first, as CodeDeploy's lists
            // RPC v2 CBOR before the JSON its SDKs speak).
            service.protocols.iter().map(|p| served(*p, meta)).collect::<Vec<_>>().join(", "),
            service.operations.len(),
            all.len()
        );
        for op in all {
            let status = if service.implements(op) { "implemented" } else { "not yet" };
            let _ = writeln!(out, "| {op} | {status} |");
        }
    }
    out
}

#[test]
fn every_dispatched_operation_exists_in_its_model() {
    for service in wharf_api::services() {
        for op in service.operations {
            assert!(
                service.model.operation(op).is_some(),
                "{op} is dispatched but not in the {} model",
                service.name()
            );
        }
    }
}

#[test]
fn every_served_protocol_is_one_its_model_lists() {
    for service in wharf_api::services() {
        let meta = &service.model.metadata;
        for protocol in service.protocols {
            let listed =
                meta.protocols.iter().any(|p| p == protocol.model_name()) || meta.protocol == protocol.model_name();
            assert!(listed, "{} is served in {protocol:?}, which its model does not list", service.name());
        }
    }
}

#[test]
fn compatibility_doc_matches_the_dispatch_table() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/compatibility.md");
    let expected = render();
    if std::env::var_os("WHARF_BLESS").is_some() {
        std::fs::write(path, &expected).expect("write docs/compatibility.md");
        return;
    }
    let actual = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        actual == expected,
        "docs/compatibility.md is out of date; regenerate with WHARF_BLESS=1 cargo test -p wharf-api --test compatibility"
    );
}
