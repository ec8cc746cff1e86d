//! Instance liveness: an instance whose agent session lapsed (no stream for the agent
//! timeout) is marked `agentConnected: false`, and the tasks on an instance that is
//! disconnected or deregistered are stopped with a clear reason so services can replace
//! them. It must never stop tasks of an instance whose agent is connected.

use crate::{Reconciler, Status};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use wharf_core::Db;
use wharf_core::db::{cas_put, encode};
use wharf_core::fargate::SESSIONS as FARGATE_SESSIONS;
use wharf_core::keys::{Keys, all_of_kind, scope_of_key};
use wharf_store::{Compare, Op, Txn};
use wharf_types::ecs::{ContainerInstance, Task, TaskStatus};

#[derive(Debug, Clone)]
pub struct InstanceLiveness {
    db: Db,
    timeout: Duration,
}

impl InstanceLiveness {
    pub fn new(db: Db, timeout: Duration) -> Self {
        InstanceLiveness { db, timeout }
    }

    async fn check(&self) -> Result<usize, wharf_types::Error> {
        let sessions: HashSet<String> = self.db.keys(&all_of_kind("agent-session"), 0).await?.into_iter().collect();
        let now = wharf_types::now();
        let mut changed = 0;
        for i in self.db.list::<ContainerInstance>(&all_of_kind("instance")).await? {
            let Some(scope) = scope_of_key(&i.key) else { continue };
            let keys = Keys::for_scope(&scope);
            let cluster = i.doc.container_instance_arn.rsplit('/').nth(1).unwrap_or_default().to_string();
            let id = i.doc.container_instance_arn.rsplit('/').next().unwrap_or_default().to_string();
            let has_session = sessions.contains(&keys.agent_session(&cluster, &id));
            // A fresh registration gets one timeout to open its stream.
            let young = now - i.doc.registered_at < self.timeout.as_secs_f64();
            let lost = i.doc.status == "INACTIVE" || (!has_session && !young);
            if i.doc.agent_connected && lost {
                let mut doc = i.doc.clone();
                doc.agent_connected = false;
                doc.version += 1;
                if self.db.commit(cas_put(&i.key, i.rev, &doc)?).await? {
                    changed += 1;
                }
            }
            if !lost {
                continue;
            }
            let reason = if i.doc.status == "INACTIVE" {
                format!("Container instance {id} was deregistered")
            } else {
                format!(
                    "Container instance {id} lost contact with its agent (no heartbeat for {} s)",
                    self.timeout.as_secs()
                )
            };
            for t in self.db.list_tasks(&keys.tasks(&cluster)).await? {
                if t.doc.container_instance_arn.as_ref() != Some(&i.doc.container_instance_arn)
                    || t.doc.last_status == TaskStatus::Stopped
                {
                    continue;
                }
                // Resources go back only to a live instance; a lost one keeps its books
                // until it re-registers or is deregistered.
                let txn = stop_txn(&t, now, &reason)?;
                if self.db.commit(txn).await? {
                    changed += 1;
                }
            }
        }
        changed += self.check_fargate(&sessions, now).await?;
        Ok(changed)
    }

    /// FARGATE tasks whose host's session lapsed are stopped the same way.
    async fn check_fargate(&self, sessions: &HashSet<String>, now: f64) -> Result<usize, wharf_types::Error> {
        let mut changed = 0;
        for t in self.db.list_tasks(&all_of_kind("task")).await? {
            let Some(host) = t.doc.fargate_host.as_deref() else { continue };
            if t.doc.last_status == TaskStatus::Stopped || now - t.doc.created_at < self.timeout.as_secs_f64() {
                continue;
            }
            let Some(scope) = scope_of_key(&t.key) else { continue };
            if sessions.contains(&Keys::for_scope(&scope).agent_session(FARGATE_SESSIONS, host)) {
                continue;
            }
            let reason = format!("Fargate host {host} lost contact (no heartbeat for {} s)", self.timeout.as_secs());
            if self.db.commit(stop_txn(&t, now, &reason)?).await? {
                changed += 1;
            }
        }
        Ok(changed)
    }
}

/// Marks a task STOPPED (its host is gone, so nobody else will).
fn stop_txn(t: &wharf_core::db::Versioned<Arc<Task>>, now: f64, reason: &str) -> Result<Txn, wharf_types::Error> {
    let mut task = Task::clone(&t.doc);
    task.last_status = TaskStatus::Stopped;
    task.desired_status = TaskStatus::Stopped;
    task.stopping_at.get_or_insert(now);
    task.stopped_at = Some(now);
    task.stopped_reason.get_or_insert(reason.to_string());
    task.stop_code.get_or_insert_with(|| "TaskFailedToStart".into());
    for c in &mut task.containers {
        c.last_status = TaskStatus::Stopped;
    }
    task.version += 1;
    Ok(Txn { compares: vec![Compare::ModRevision(t.key.clone(), t.rev)], ops: vec![Op::put(&t.key, encode(&task)?)] })
}

impl Reconciler for InstanceLiveness {
    fn name(&self) -> &'static str {
        "instance-liveness"
    }
    fn watch_prefixes(&self) -> Vec<String> {
        vec![all_of_kind("agent-session"), all_of_kind("instance")]
    }
    fn period(&self) -> Duration {
        Duration::from_secs(2)
    }
    async fn activate(&self) -> Status {
        match self.check().await {
            Ok(changed) => Status { changed, errors: vec![], ..Default::default() },
            Err(e) => Status { changed: 0, errors: vec![e.to_string()], ..Default::default() },
        }
    }
}
