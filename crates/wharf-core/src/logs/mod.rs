//! The log store of CloudWatch Logs (groups, streams, events in their own SQLite file) and
//! its filter patterns; the API's handlers are `wharf_api::logs`, retention is a controller.

pub mod filter;
pub mod store;

pub use store::LogStore;

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the epoch, CloudWatch Logs' clock.
pub fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}
