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

/// Epoch seconds → `2026-11-24T21:35:18.123Z`.
pub fn iso8601(ts: f64) -> String {
    let ms = (ts * 1000.0).round() as i64;
    let (secs, ms) = (ms.div_euclid(1000), ms.rem_euclid(1000));
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}
