//! Enforces CloudWatch Logs retention: deletes events older than their group's
//! `retentionInDays`. Reads already hide expired events, so this only reclaims space; it runs
//! on a timer (the log store is not the resource store, so there is nothing to watch).

use crate::{Reconciler, Status};
use std::time::Duration;
use wharf_core::logs::LogStore;
use wharf_core::logs::now_ms;

#[derive(Debug, Clone)]
pub struct LogRetention {
    logs: LogStore,
    period: Duration,
}

impl LogRetention {
    pub fn new(logs: LogStore) -> Self {
        LogRetention { logs, period: Duration::from_secs(60) }
    }
}

impl Reconciler for LogRetention {
    fn name(&self) -> &'static str {
        "log-retention"
    }
    fn watch_prefixes(&self) -> Vec<String> {
        vec![]
    }
    fn period(&self) -> Duration {
        self.period
    }
    async fn activate(&self) -> Status {
        match self.logs.purge_expired(now_ms()).await {
            Ok(n) => Status { changed: n as usize, errors: vec![], ..Default::default() },
            Err(e) => Status { changed: 0, errors: vec![e.to_string()], ..Default::default() },
        }
    }
}
