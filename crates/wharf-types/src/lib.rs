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

/// `2026-11-24T21:35:18.123Z` (or `+01:00` for `Z`, a date alone, no zone as UTC) → epoch
/// seconds; the inverse of [`iso8601`] for the timestamps AWS Query clients send. `None` for
/// anything else.
pub fn parse_iso8601(text: &str) -> Option<f64> {
    let b = text.trim().as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let digits = b.get(from..from + len)?;
        digits.iter().all(u8::is_ascii_digit).then(|| digits.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0')))
    };
    let (y, m, d) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    if b.len() == 10 {
        return Some((days * 86_400) as f64);
    }
    if !matches!(b.get(10), Some(b'T' | b't' | b' ')) || b.get(13) != Some(&b':') || b.get(16) != Some(&b':') {
        return None;
    }
    let (hh, mm, ss) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if hh > 23 || mm > 59 || ss > 60 {
        return None;
    }
    let mut i = 19;
    let mut fraction = 0.0;
    if b.get(i) == Some(&b'.') {
        let start = i + 1;
        i = start;
        while b.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        let digits = std::str::from_utf8(&b[start..i]).ok().filter(|d| !d.is_empty())?;
        fraction = format!("0.{digits}").parse::<f64>().ok()?;
    }
    let offset = match &b[i..] {
        [] | [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), ..] => {
            let rest = &b[i + 1..];
            let (oh, om) = match rest.len() {
                5 if rest[2] == b':' => (num(i + 1, 2)?, num(i + 4, 2)?),
                4 => (num(i + 1, 2)?, num(i + 3, 2)?),
                2 => (num(i + 1, 2)?, 0),
                _ => return None,
            };
            let secs = oh * 3600 + om * 60;
            if *sign == b'+' { secs } else { -secs }
        }
        _ => return None,
    };
    Some((days * 86_400 + hh * 3600 + mm * 60 + ss - offset) as f64 + fraction)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso8601_parses_what_it_formats_and_what_clients_send() {
        for ts in [0.0, 1_795_555_518.25, 951_782_400.0, -86_400.5] {
            assert_eq!(parse_iso8601(&iso8601(ts)), Some(ts));
        }
        assert_eq!(parse_iso8601("2026-11-24T21:25:18Z"), Some(1_795_555_518.0));
        assert_eq!(parse_iso8601("2026-11-24T21:25:18.250000Z"), Some(1_795_555_518.25));
        assert_eq!(parse_iso8601("2026-11-24T22:25:18+01:00"), Some(1_795_555_518.0));
        assert_eq!(parse_iso8601("2026-11-24T20:25:18-0100"), Some(1_795_555_518.0));
        assert_eq!(parse_iso8601("2026-11-24T21:25:18"), Some(1_795_555_518.0));
        assert_eq!(parse_iso8601("1970-01-02"), Some(86_400.0));
        for bad in [
            "",
            "yesterday",
            "2026-13-01",
            "2026-11-24T25:00:00Z",
            "2026-11-24T21:25:18.Z",
            "2026-11-24T21:25:18Q",
            "2026-11-24T21:25:18+1",
            "２０２６-11-24",
        ] {
            assert_eq!(parse_iso8601(bad), None, "{bad}");
        }
    }
}
