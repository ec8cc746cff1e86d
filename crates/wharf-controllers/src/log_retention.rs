//! Enforces CloudWatch Logs retention: deletes events older than their group's
//! `retentionInDays`. Reads already hide expired events, so this only reclaims space; it runs
//! on a timer (the log store is not the resource store, so there is nothing to watch).

use crate::{Reconciler, Status};
use std::time::Duration;
use wharf_api::LogStore;
use wharf_api::logs::now_ms;

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
            Ok(n) => Status { changed: n as usize, errors: vec![] },
            Err(e) => Status { changed: 0, errors: vec![e.to_string()] },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use wharf_api::{Ctx, LOGS};

    #[tokio::test]
    async fn activation_deletes_expired_events() {
        let ctx = Ctx::in_memory("123456789012", "us-east-1");
        let call = |op: &'static str, body: serde_json::Value| {
            let ctx = ctx.clone();
            async move {
                let input = LOGS.model.validate(op, body).unwrap();
                wharf_api::call(&LOGS, &ctx, op, input).await.unwrap().unwrap()
            }
        };
        call("CreateLogGroup", json!({"logGroupName": "g"})).await;
        call("CreateLogStream", json!({"logGroupName": "g", "logStreamName": "s"})).await;
        let old = now_ms() - 2 * 86_400_000;
        let events: Vec<_> = (0..3).map(|i| json!({"timestamp": old + i, "message": "old"})).collect();
        call("PutLogEvents", json!({"logGroupName": "g", "logStreamName": "s", "logEvents": events})).await;
        let r = LogRetention::new(ctx.logs.clone());
        assert_eq!(r.activate().await, Status::default());
        call("PutRetentionPolicy", json!({"logGroupName": "g", "retentionInDays": 1})).await;
        assert_eq!(r.activate().await.changed, 3);
        assert_eq!(r.activate().await.changed, 0);
    }
}
