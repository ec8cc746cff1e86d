//! AWS wire protocols for Wharf.
//!
//! Everything between bytes on the wire and the handlers' typed world lives here: the
//! botocore service models and a validator driven by them, the JSON 1.1 and Query codecs,
//! the mapping from Wharf's domain error to each service's error codes and envelopes, and
//! SigV4 verification. Handlers never see HTTP and never choose an error code.

#![forbid(unsafe_code)]

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

/// The wire protocol a service speaks; decides envelopes and error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// `X-Amz-Target` dispatch, JSON in and out (`application/x-amz-json-1.1`).
    Json,
    /// Form-encoded `Action=…&Version=…` in, XML out.
    Query,
}
