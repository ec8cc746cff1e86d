//! The private side of the agent protocol: the assignment stream an agent holds open and the
//! health reports it sends. Holding the stream open is the agent's heartbeat: it keeps a
//! store lease alive, and the session key under that lease is what the instance-liveness
//! controller checks (`/ecs/agent-session/<account>/<region>/<cluster>/<instance id>`).

use crate::ecs::{Keys, split_ref};
use crate::{Ctx, ecs};
use bytes::Bytes;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use wharf_store::{Op, Store, Txn};
use wharf_types::agent::{Assignment, StreamMessage};
use wharf_types::ecs::{ContainerInstance, Task, TaskDefinition};
use wharf_types::{Error, Result};

/// How often the stream carries a heartbeat line.
const HEARTBEAT: Duration = Duration::from_secs(10);

/// The session key of an agent (exists while its stream is alive, plus the lease TTL).
pub fn session_key(keys: &Keys, cluster: &str, instance_id: &str) -> String {
    keys.agent_session(cluster, instance_id)
}

fn line(msg: &StreamMessage) -> Bytes {
    let mut v = serde_json::to_vec(msg).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// Checks the instance and opens its assignment stream: NDJSON lines of [`StreamMessage`]s,
/// a full snapshot whenever the instance's tasks change, and heartbeats.
pub async fn assignments(
    ctx: Ctx,
    cluster: &str,
    instance: &str,
    ttl: Duration,
    shutdown: watch::Receiver<bool>,
) -> Result<mpsc::Receiver<Bytes>> {
    let cluster = ecs::active_cluster(&ctx, Some(cluster)).await?;
    let cname = cluster.doc.cluster_name.clone();
    let (arn_cluster, id) = split_ref(&ctx, instance, "container-instance", "containerInstance")?;
    if arn_cluster.is_some_and(|c| c != cname) {
        return Err(Error::invalid("containerInstance", "The container instance is not in this cluster."));
    }
    let keys = Keys::new(&ctx);
    let ikey = keys.instance(&cname, id);
    match ctx.db.get::<ContainerInstance>(&ikey).await? {
        None => return Err(Error::invalid("containerInstance", "The referenced container instance was not found.")),
        Some(i) if i.doc.status == "INACTIVE" => {
            return Err(Error::client(format!(
                "Container instance {} is deregistered (INACTIVE).",
                i.doc.container_instance_arn
            )));
        }
        Some(_) => {}
    }
    let (tx, rx) = mpsc::channel(16);
    let session = Session { ctx, cluster: cname, instance_id: id.to_string(), ikey, ttl };
    tokio::spawn(session.run(tx, shutdown));
    Ok(rx)
}

struct Session {
    ctx: Ctx,
    cluster: String,
    instance_id: String,
    ikey: String,
    ttl: Duration,
}

impl Session {
    async fn run(self, tx: mpsc::Sender<Bytes>, mut shutdown: watch::Receiver<bool>) {
        let store = self.ctx.db.store().clone();
        let keys = Keys::new(&self.ctx);
        let tasks_prefix = keys.tasks(&self.cluster);
        let mut watch = store.watch(&tasks_prefix, store.current_revision()).ok();
        let mut instance_watch = store.watch(&self.ikey, store.current_revision()).ok();
        let mut lease = self.connect().await;
        let mut keepalive = tokio::time::interval(self.ttl / 3);
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        let mut last: Option<Bytes> = None;
        let mut definitions: HashMap<String, TaskDefinition> = HashMap::new();
        loop {
            match self.snapshot(&mut definitions).await {
                Ok(Some(snapshot)) => {
                    let bytes = line(&snapshot);
                    if last.as_ref() != Some(&bytes) {
                        if tx.send(bytes.clone()).await.is_err() {
                            return;
                        }
                        last = Some(bytes);
                    }
                }
                // The instance was deregistered: end the stream; the agent learns why on reconnect.
                Ok(None) => return,
                Err(e) => tracing::warn!(error = %e, "building an assignment snapshot failed"),
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tx.closed() => return,
                e = next(&mut watch) => if e.is_none() { watch = store.watch(&tasks_prefix, store.current_revision()).ok(); },
                e = next(&mut instance_watch) => if e.is_none() { instance_watch = store.watch(&self.ikey, store.current_revision()).ok(); },
                _ = keepalive.tick() => {
                    let alive = match lease { Some(id) => store.keep_alive(id).await.is_ok(), None => false };
                    if !alive {
                        lease = self.connect().await;
                    }
                }
                _ = heartbeat.tick() => {
                    if tx.send(line(&StreamMessage::Heartbeat { at: wharf_types::now() })).await.is_err() {
                        return;
                    }
                }
            }
        }
    }

    /// Grants the session lease, writes the session key and marks the agent connected.
    async fn connect(&self) -> Option<wharf_store::LeaseId> {
        let store = self.ctx.db.store();
        let lease = store.grant_lease(self.ttl).await.ok()?;
        let key = session_key(&Keys::new(&self.ctx), &self.cluster, &self.instance_id);
        let put =
            Txn { compares: vec![], ops: vec![Op::Put { key, value: Bytes::from_static(b"{}"), lease: Some(lease) }] };
        if store.txn(put).await.is_err() {
            return None;
        }
        let _ = self
            .ctx
            .db
            .update(|| async {
                let Some(i) = self.ctx.db.get::<ContainerInstance>(&self.ikey).await? else { return Ok((None, ())) };
                if i.doc.agent_connected || i.doc.status == "INACTIVE" {
                    return Ok((None, ()));
                }
                let mut doc = i.doc.clone();
                doc.agent_connected = true;
                doc.version += 1;
                Ok((Some(crate::db::cas_put(&self.ikey, i.rev, &doc)?), ()))
            })
            .await;
        Some(lease)
    }

    /// The tasks on this instance that are not yet STOPPED, with their definitions; `None`
    /// once the instance is deregistered.
    async fn snapshot(&self, definitions: &mut HashMap<String, TaskDefinition>) -> Result<Option<StreamMessage>> {
        let Some(inst) = self.ctx.db.get::<ContainerInstance>(&self.ikey).await? else { return Ok(None) };
        if inst.doc.status == "INACTIVE" {
            return Ok(None);
        }
        let tasks = self.ctx.db.list::<Task>(&Keys::new(&self.ctx).tasks(&self.cluster)).await?;
        let mut assignments = vec![];
        for t in tasks {
            let task = t.doc;
            if task.container_instance_arn.as_ref() != Some(&inst.doc.container_instance_arn)
                || task.last_status == "STOPPED"
            {
                continue;
            }
            let td = match definitions.get(&task.task_definition_arn) {
                Some(td) => td.clone(),
                None => {
                    let td = crate::ecs::task_definition(&self.ctx, &task.task_definition_arn).await?;
                    definitions.insert(task.task_definition_arn.clone(), td.clone());
                    td
                }
            };
            assignments.push(Assignment { task, task_definition: td });
        }
        Ok(Some(StreamMessage::Snapshot { revision: self.ctx.db.store().current_revision(), assignments }))
    }
}

/// The next batch of a watch, or `None` when it ended (fell behind or the store closed).
async fn next(w: &mut Option<wharf_store::Watch>) -> Option<()> {
    match w {
        Some(w) => match w.next().await {
            Some(Ok(_)) => Some(()),
            _ => None,
        },
        None => std::future::pending().await,
    }
}
