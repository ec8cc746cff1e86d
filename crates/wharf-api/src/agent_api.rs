//! The private side of the agent protocol: the assignment stream an agent holds open and the
//! reports it sends. Holding the stream open is the agent's heartbeat: it keeps a store lease
//! alive, and the session key under that lease is what the instance-liveness controller
//! checks (`/ecs/agent-session/<account>/<region>/<cluster>/<instance id>`, or
//! `…/_fargate/<host id>` for a host that serves Fargate tasks).

use crate::ecs::{Keys, split_ref};
use crate::{Ctx, ecs};
use bytes::Bytes;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use wharf_store::{Op, Store, Txn};
use wharf_types::agent::{Assignment, StreamMessage};
use wharf_types::ecs::{ContainerInstance, Task, TaskDefinition, TaskStatus};
use wharf_types::{Error, Result};

/// How often the stream carries a heartbeat line.
const HEARTBEAT: Duration = Duration::from_secs(10);

pub use wharf_core::fargate::{SESSIONS as FARGATE_SESSIONS, hosts as fargate_hosts};

fn line(msg: &StreamMessage) -> Bytes {
    let mut v = serde_json::to_vec(msg).unwrap_or_default();
    v.push(b'\n');
    Bytes::from(v)
}

/// Whose tasks a stream carries.
#[derive(Debug, Clone)]
enum Target {
    /// A container instance of one cluster.
    Instance { cluster: String, id: String, key: String },
    /// A host serving the account's FARGATE tasks across clusters.
    Fargate { host: String },
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
    let key = Keys::new(&ctx).instance(&cname, id);
    match ctx.db.get::<ContainerInstance>(&key).await? {
        None => return Err(Error::invalid("containerInstance", "The referenced container instance was not found.")),
        Some(i) if i.doc.status == "INACTIVE" => {
            return Err(Error::client(format!(
                "Container instance {} is deregistered (INACTIVE).",
                i.doc.container_instance_arn
            )));
        }
        Some(_) => {}
    }
    Ok(open(ctx, Target::Instance { cluster: cname, id: id.to_string(), key }, ttl, shutdown))
}

/// Opens the stream of a host that runs the account's FARGATE tasks (the agent of
/// `wharf up`): every FARGATE task placed on `host`, in every cluster.
pub fn fargate_assignments(
    ctx: Ctx,
    host: &str,
    ttl: Duration,
    shutdown: watch::Receiver<bool>,
) -> Result<mpsc::Receiver<Bytes>> {
    let ok = !host.is_empty() && host.len() <= 64 && host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if !ok {
        return Err(Error::invalid("fargateHost", "fargateHost must be 1-64 letters, digits or hyphens."));
    }
    Ok(open(ctx, Target::Fargate { host: host.to_string() }, ttl, shutdown))
}

fn open(ctx: Ctx, target: Target, ttl: Duration, shutdown: watch::Receiver<bool>) -> mpsc::Receiver<Bytes> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(Session { ctx, target, ttl }.run(tx, shutdown));
    rx
}

struct Session {
    ctx: Ctx,
    target: Target,
    ttl: Duration,
}

impl Session {
    fn tasks_prefix(&self) -> String {
        let keys = Keys::new(&self.ctx);
        match &self.target {
            Target::Instance { cluster, .. } => keys.tasks(cluster),
            Target::Fargate { .. } => keys.all_tasks(),
        }
    }

    async fn run(self, tx: mpsc::Sender<Bytes>, mut shutdown: watch::Receiver<bool>) {
        let store = self.ctx.db.store().clone();
        let tasks_prefix = self.tasks_prefix();
        let own_key = match &self.target {
            Target::Instance { key, .. } => key.clone(),
            Target::Fargate { host } => Keys::new(&self.ctx).agent_session(FARGATE_SESSIONS, host),
        };
        // An instance's stream wakes when the index says its tasks changed; the Fargate
        // host's (one per server) follows every task.
        let mut bell = match &self.target {
            Target::Instance { key, .. } => {
                self.ctx.db.assignments.start(&store).await;
                match self.ctx.db.get::<ContainerInstance>(key).await {
                    Ok(Some(i)) => Some(self.ctx.db.assignments.subscribe(&i.doc.container_instance_arn)),
                    _ => return,
                }
            }
            Target::Fargate { .. } => None,
        };
        let mut watch = if bell.is_some() { None } else { store.watch(&tasks_prefix, store.current_revision()).ok() };
        let mut own_watch = store.watch(&own_key, store.current_revision()).ok();
        let mut lease = self.connect().await;
        let mut keepalive = tokio::time::interval(self.ttl / 3);
        let mut heartbeat = tokio::time::interval(HEARTBEAT);
        // A digest of the last snapshot sent (not the snapshot: a thousand streams would
        // each keep tens of kilobytes), to send only what changed.
        let mut last: Option<u64> = None;
        let mut definitions: HashMap<String, TaskDefinition> = HashMap::new();
        loop {
            match self.snapshot(&mut definitions).await {
                Ok(Some(snapshot)) => {
                    let bytes = line(&snapshot);
                    let digest = digest_of(&bytes);
                    if last != Some(digest) {
                        if tx.send(bytes).await.is_err() {
                            return;
                        }
                        last = Some(digest);
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
                _ = rang(&mut bell) => {}
                e = next(&mut own_watch) => if e.is_none() { own_watch = store.watch(&own_key, store.current_revision()).ok(); },
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
        let keys = Keys::new(&self.ctx);
        let key = match &self.target {
            Target::Instance { cluster, id, .. } => keys.agent_session(cluster, id),
            Target::Fargate { host } => keys.agent_session(FARGATE_SESSIONS, host),
        };
        let put =
            Txn { compares: vec![], ops: vec![Op::Put { key, value: Bytes::from_static(b"{}"), lease: Some(lease) }] };
        if store.txn(put).await.is_err() {
            return None;
        }
        if let Target::Instance { key: ikey, .. } = &self.target {
            let _ = self
                .ctx
                .db
                .update(|| async {
                    let Some(i) = self.ctx.db.get::<ContainerInstance>(ikey).await? else { return Ok((None, ())) };
                    if i.doc.agent_connected || i.doc.status == "INACTIVE" {
                        return Ok((None, ()));
                    }
                    let mut doc = i.doc.clone();
                    doc.agent_connected = true;
                    doc.version += 1;
                    Ok((Some(crate::db::cas_put(ikey, i.rev, &doc)?), ()))
                })
                .await;
        }
        Some(lease)
    }

    /// The tasks this stream carries that are not yet STOPPED, with their definitions;
    /// `None` once the instance is deregistered.
    async fn snapshot(&self, definitions: &mut HashMap<String, TaskDefinition>) -> Result<Option<StreamMessage>> {
        let (keep, tasks): (Keep, Vec<std::sync::Arc<Task>>) = match &self.target {
            Target::Instance { key, .. } => {
                let Some(inst) = self.ctx.db.get::<ContainerInstance>(key).await? else { return Ok(None) };
                if inst.doc.status == "INACTIVE" {
                    return Ok(None);
                }
                let arn = inst.doc.container_instance_arn;
                let mut tasks = vec![];
                for k in self.ctx.db.assignments.tasks_on(&arn) {
                    tasks.extend(self.ctx.db.get::<Task>(&k).await?.map(|t| std::sync::Arc::new(t.doc)));
                }
                (Box::new(move |t: &Task| t.container_instance_arn.as_ref() == Some(&arn)), tasks)
            }
            Target::Fargate { host } => {
                let host = host.clone();
                let tasks = self.ctx.db.list_tasks(&self.tasks_prefix()).await?.into_iter().map(|t| t.doc).collect();
                let keep = move |t: &Task| t.fargate_host.as_deref() == Some(host.as_str());
                (Box::new(keep), tasks)
            }
        };
        let mut assignments = vec![];
        for task in tasks {
            if task.last_status == TaskStatus::Stopped || !keep(&task) {
                continue;
            }
            let mut task = std::sync::Arc::unwrap_or_clone(task);
            // Deregistering before stopping: the agent keeps serving until the targets drained.
            if wharf_core::targets::held_for_draining(&task) {
                task.desired_status = TaskStatus::Running;
                task.last_status = TaskStatus::Running;
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

/// Which of the tasks read belong to a stream.
type Keep = Box<dyn Fn(&Task) -> bool + Send>;

/// A 64-bit digest of a snapshot line (std's SipHash: a collision would only skip one
/// repeat-looking snapshot until the next change).
fn digest_of(bytes: &[u8]) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Waits until the index rings the bell (forever without one).
async fn rang(bell: &mut Option<watch::Receiver<u64>>) {
    match bell {
        Some(b) => {
            if b.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
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
