//! AWS wire protocols for Wharf.
//!
//! Everything between bytes on the wire and the handlers' typed world lives here: the
//! botocore service models and a validator driven by them, the JSON, Query and RPC v2 CBOR
//! codecs, the mapping from Wharf's domain error to each service's error codes and envelopes,
//! and SigV4 verification. Handlers never see HTTP and never choose an error code.

#![forbid(unsafe_code)]

pub mod cbor;
pub mod codes;
pub mod json;
pub mod model;
pub mod query;
pub mod sigv4;
pub mod xml;

pub use codes::{WireError, wire_error};
pub use model::Model;

/// The largest request body any API accepts. ECS documents 64 KiB for a task definition;
/// other requests are far smaller. Larger bodies are refused before they are read whole.
pub const MAX_BODY_BYTES: usize = 1 << 20;

/// A wire protocol a service speaks (a service may speak several); decides envelopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `X-Amz-Target` dispatch, JSON in and out (`application/x-amz-json-1.0` or `1.1`, as
    /// the model's `jsonVersion` says).
    Json,
    /// Form-encoded `Action=…&Version=…` in, XML out.
    Query,
    /// Smithy RPC v2 CBOR: the operation in the path, CBOR in and out.
    Cbor,
}

impl Protocol {
    /// The name botocore models give it (`metadata.protocols`).
    pub fn model_name(self) -> &'static str {
        match self {
            Protocol::Json => "json",
            Protocol::Query => "query",
            Protocol::Cbor => "smithy-rpc-v2-cbor",
        }
    }
}
