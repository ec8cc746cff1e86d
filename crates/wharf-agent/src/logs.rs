//! The `awslogs` log driver, done by the agent: each container's output is read from the
//! engine and shipped to CloudWatch Logs with `PutLogEvents`, in batches, in order, retried
//! until accepted. Stream names follow ECS: `prefix/container-name/task-id`.

use crate::agent::Agent;
use crate::client::{Client, ClientError};
use crate::runtime::{ContainerRuntime, LogLine};
use futures_util::StreamExt;
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;
use wharf_types::ecs::ContainerDefinition;

/// Where one container's output goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AwsLogs {
    pub group: String,
    pub stream: String,
    pub create_group: bool,
}

/// A batch is sent when it holds this many events, or after `FLUSH` of quiet.
const MAX_EVENTS: usize = 5_000;
/// PutLogEvents' size limit: message bytes plus 26 per event.
const MAX_BYTES: usize = 1_000_000;
const FLUSH: Duration = Duration::from_millis(200);

/// The awslogs settings of a container definition, if it uses the driver.
pub(crate) fn awslogs(def: &ContainerDefinition, task_id: &str) -> Option<AwsLogs> {
    let config = def.extra.get("logConfiguration")?;
    if config.get("logDriver").and_then(Value::as_str) != Some("awslogs") {
        return None;
    }
    let options = config.get("options");
    let opt = |k: &str| options.and_then(|o| o.get(k)).and_then(Value::as_str).map(str::to_string);
    let container = def.name.clone().unwrap_or_default();
    let stream = match opt("awslogs-stream-prefix") {
        Some(prefix) => format!("{prefix}/{container}/{task_id}"),
        None => format!("{container}/{task_id}"),
    };
    Some(AwsLogs {
        group: opt("awslogs-group")?,
        stream,
        create_group: opt("awslogs-create-group").as_deref() == Some("true"),
    })
}

/// Creates the group (when asked) and the stream. A missing group fails the task as ECS
/// does; the reason is returned.
pub(crate) async fn prepare(client: &Client, logs: &AwsLogs) -> Result<(), String> {
    let exists =
        |e: &ClientError| matches!(e, ClientError::Api { code, .. } if code == "ResourceAlreadyExistsException");
    if logs.create_group
        && let Err(e) = client.logs("CreateLogGroup", &json!({"logGroupName": logs.group})).await
        && !exists(&e)
    {
        return Err(format!("ResourceInitializationError: failed to create CloudWatch log group {}: {e}", logs.group));
    }
    match client.logs("CreateLogStream", &json!({"logGroupName": logs.group, "logStreamName": logs.stream})).await {
        Ok(_) => Ok(()),
        Err(e) if exists(&e) => Ok(()),
        Err(e) => Err(format!(
            "ResourceInitializationError: failed to validate logger args: create stream has been retried 1 times: failed to create Cloudwatch log stream: {e}"
        )),
    }
}

/// Ships `id`'s output until the container exits and everything read has been accepted.
pub(crate) async fn ship<R: ContainerRuntime>(agent: Arc<Agent<R>>, id: String, logs: AwsLogs, since_secs: i64) {
    let client = &agent.client;
    let mut since = since_secs;
    // The newest line shipped: after a reconnect (which asks from its second on), older
    // lines are the ones already sent.
    let mut last_ms = i64::MIN;
    let mut delay = Duration::from_secs(1);
    loop {
        let mut lines = agent.runtime.logs(&id, since);
        let mut batch: Vec<LogLine> = Vec::new();
        let mut bytes = 0;
        let broke = loop {
            let next = tokio::time::timeout(FLUSH, lines.next()).await;
            let ended = matches!(next, Ok(None));
            let broke = matches!(next, Ok(Some(Err(_))));
            let quiet = next.is_err();
            if let Ok(Some(Ok(line))) = next
                && line.timestamp_ms > last_ms
            {
                bytes += line.message.len() + 26;
                last_ms = line.timestamp_ms;
                batch.push(line);
            }
            let full = batch.len() >= MAX_EVENTS || bytes >= MAX_BYTES;
            if !batch.is_empty() && (full || quiet || ended || broke) {
                put(client, &logs, std::mem::take(&mut batch)).await;
                bytes = 0;
            }
            if ended || broke {
                break broke;
            }
        };
        if !broke {
            return;
        }
        // The engine went away mid-stream: follow again once it answers, unless the
        // container is gone.
        tokio::time::sleep(delay).await;
        delay = (delay * 2).min(Duration::from_secs(30));
        match agent.runtime.inspect(&id).await {
            Ok(None) => return,
            Ok(Some(_)) => delay = Duration::from_secs(1),
            Err(_) => continue,
        }
        if last_ms != i64::MIN {
            since = last_ms / 1000;
        }
    }
}

/// Sends one batch, sorted by time as PutLogEvents wants, retrying with backoff.
async fn put(client: &Client, logs: &AwsLogs, mut batch: Vec<LogLine>) {
    batch.sort_by_key(|l| l.timestamp_ms);
    let events: Vec<Value> = batch.iter().map(|l| json!({"timestamp": l.timestamp_ms, "message": l.message})).collect();
    let body = json!({"logGroupName": logs.group, "logStreamName": logs.stream, "logEvents": events});
    let mut delay = Duration::from_millis(100);
    for _ in 0..10 {
        match client.logs("PutLogEvents", &body).await {
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(group = %logs.group, stream = %logs.stream, error = %e, "PutLogEvents failed; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
    tracing::error!(group = %logs.group, stream = %logs.stream, events = batch.len(), "giving up on a log batch");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_names_follow_ecs() {
        let def: ContainerDefinition = serde_json::from_value(json!({
            "name": "web",
            "logConfiguration": {"logDriver": "awslogs", "options": {"awslogs-group": "/ecs/app", "awslogs-stream-prefix": "ecs", "awslogs-create-group": "true"}}
        }))
        .unwrap();
        let l = awslogs(&def, "abc123").unwrap();
        assert_eq!(l, AwsLogs { group: "/ecs/app".into(), stream: "ecs/web/abc123".into(), create_group: true });
        let plain: ContainerDefinition = serde_json::from_value(json!({"name": "web"})).unwrap();
        assert!(awslogs(&plain, "abc123").is_none());
    }
}
