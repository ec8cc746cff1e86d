//! Wharf's resource model, shared by the API handlers, the controllers and the agent.
//!
//! Resource documents use AWS's field names and casing so they serialize straight onto the
//! wire; fields the logic needs are typed, everything else a client sent round-trips through
//! `extra`. This crate is transport-free: it never knows about HTTP, JSON envelopes or codes.

#![forbid(unsafe_code)]

pub mod agent;
pub mod arn;
pub mod ecs;
mod error;

pub use arn::{Arn, Scope};
pub use error::{Error, InUse, Resource, Result};

use std::time::{SystemTime, UNIX_EPOCH};

/// AWS JSON timestamps are epoch seconds; ECS reports millisecond precision.
pub type Timestamp = f64;

pub fn now() -> Timestamp {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    (d.as_millis() as f64) / 1000.0
}

/// A random lowercase hex id of `len` characters (task ids, container instance ids).
pub fn hex_id(len: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..len).map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0')).collect()
}

/// A random UUID v4 in its canonical text form (container ARNs, request ids).
pub fn uuid() -> String {
    let h = hex_id(32);
    let variant = ['8', '9', 'a', 'b'][rand::random_range(0..4)];
    format!("{}-{}-4{}-{}{}-{}", &h[0..8], &h[8..12], &h[13..16], variant, &h[17..20], &h[20..32])
}
