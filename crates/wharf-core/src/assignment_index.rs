//! Which tasks are placed on which container instance, kept in memory from one store watch
//! per server. Every agent's assignment stream needs "my tasks" whenever they change; with
//! a watch of the cluster's tasks per stream, every task write woke every agent and each
//! rebuilt its snapshot from the whole cluster (1,000 agents × 10,000 tasks per write). The
//! index decodes each task write once, and wakes only the streams of the instance it names.
//! It is a cache of the store, never a source of truth: snapshots still read the tasks.

use crate::keys::all_of_kind;
use serde::Deserialize;
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::watch;
use wharf_store::{EventKind, RangeRequest, Store};
use wharf_types::ecs::TaskStatus;

/// The two fields the index needs from a task document.
#[derive(Deserialize)]
struct Placement {
    #[serde(rename = "containerInstanceArn")]
    instance: Option<String>,
    /// Left a string: any document this partial decode read before, it still reads.
    #[serde(rename = "lastStatus", default)]
    last_status: String,
}

#[derive(Debug, Default)]
struct State {
    /// instance ARN → keys of its tasks that are not STOPPED.
    by_instance: HashMap<String, BTreeSet<String>>,
    /// task key → the instance it is on (for moves and deletes).
    owner: HashMap<String, String>,
    /// instance ARN → a counter bumped whenever its tasks change (streams wait on it).
    bells: HashMap<String, watch::Sender<u64>>,
}

impl State {
    fn ring(&mut self, instance: &str) {
        if let Some(b) = self.bells.get(instance) {
            b.send_modify(|n| *n += 1);
        }
    }

    fn remove(&mut self, key: &str) {
        if let Some(old) = self.owner.remove(key) {
            if let Some(set) = self.by_instance.get_mut(&old) {
                set.remove(key);
                if set.is_empty() {
                    self.by_instance.remove(&old);
                }
            }
            self.ring(&old);
        }
    }

    fn put(&mut self, key: &str, value: &[u8]) {
        let p: Option<Placement> = serde_json::from_slice(value).ok();
        let live = p.filter(|p| p.last_status != TaskStatus::Stopped.as_str()).and_then(|p| p.instance);
        match live {
            Some(instance) => {
                if self.owner.get(key) != Some(&instance) {
                    self.remove(key);
                    self.owner.insert(key.to_string(), instance.clone());
                    self.by_instance.entry(instance.clone()).or_default().insert(key.to_string());
                }
                self.ring(&instance);
            }
            None => self.remove(key),
        }
    }
}

/// The server's index of task placements; cloning shares it.
#[derive(Debug, Clone, Default)]
pub struct AssignmentIndex {
    state: Arc<Mutex<State>>,
    ready: Arc<tokio::sync::OnceCell<()>>,
}

impl AssignmentIndex {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts following the store (once) and waits until the index reflects it.
    pub async fn start(&self, store: &crate::db::Backend) {
        let index = self.clone();
        let store = store.clone();
        self.ready
            .get_or_init(|| async move {
                let (first_tx, first_rx) = tokio::sync::oneshot::channel();
                tokio::spawn(index.follow(store, first_tx));
                let _ = first_rx.await;
            })
            .await;
    }

    /// Re-lists the tasks, then applies the watch until it ends (fell behind, or the store
    /// closed), and again.
    async fn follow(self, store: crate::db::Backend, first: tokio::sync::oneshot::Sender<()>) {
        let prefix = all_of_kind("task");
        let mut first = Some(first);
        loop {
            let from = store.current_revision();
            let Ok(mut watch) = store.watch(&prefix, from) else { return };
            let Ok(all) = store.range(RangeRequest { prefix: prefix.clone(), ..Default::default() }).await else {
                return;
            };
            {
                let mut s = self.lock();
                let bells = std::mem::take(&mut s.bells);
                *s = State { bells, ..State::default() };
                for kv in &all.kvs {
                    s.put(&kv.key, &kv.value);
                }
                for b in s.bells.values() {
                    b.send_modify(|n| *n += 1);
                }
            }
            if let Some(f) = first.take() {
                let _ = f.send(());
            }
            while let Some(Ok(batch)) = watch.next().await {
                let mut s = self.lock();
                for e in batch {
                    match e.kind {
                        EventKind::Put => s.put(&e.kv.key, &e.kv.value),
                        EventKind::Delete => s.remove(&e.kv.key),
                    }
                }
            }
        }
    }

    /// A receiver that changes whenever the tasks on `instance` change.
    pub fn subscribe(&self, instance: &str) -> watch::Receiver<u64> {
        let mut s = self.lock();
        s.bells.retain(|_, b| b.receiver_count() > 0);
        s.bells.entry(instance.to_string()).or_insert_with(|| watch::channel(0).0).subscribe()
    }

    /// Keys of the tasks on `instance` that are not STOPPED.
    pub fn tasks_on(&self, instance: &str) -> Vec<String> {
        self.lock().by_instance.get(instance).map(|s| s.iter().cloned().collect()).unwrap_or_default()
    }
}
