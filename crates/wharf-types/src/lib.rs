//! Wharf's resource model, shared by the API handlers, the controllers and the agent.
//!
//! Resource documents use AWS's field names and casing so they serialize straight onto the
//! wire; fields the logic needs are typed, everything else a client sent round-trips through
//! `extra`. This crate is transport-free: it never knows about HTTP, JSON envelopes or codes.

#![forbid(unsafe_code)]

pub mod agent;
pub mod arn;
pub mod ecs;
pub mod elb;
mod error;
pub mod secrets;

pub use arn::{Arn, Scope};
pub use error::{Error, InUse, Invalid, Limit, Resource, Result};

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
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{ms:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a day count since 1970-01-01; the inverse of [`days_from_civil`].
pub fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}
