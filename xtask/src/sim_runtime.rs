//! A simulated container runtime for scale benchmarks only: containers live in a map, "start"
//! at once, report `healthy` when they have a health check, and stop when told. It implements
//! the agent's [`ContainerRuntime`] seam, so the real `wharf_agent` (registration, the
//! assignment stream, the task state machine, state reports) runs unchanged on top of it.
//! Nothing user-visible may rely on it: every behaviour users see is tested on real Docker.

use futures_util::stream::{self, BoxStream, StreamExt};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use wharf_agent::runtime::{
    ContainerRuntime, ContainerSpec, ContainerStatus, ContainerUsage, LogLine, RegistryAuth, Result,
};

#[derive(Debug, Default)]
struct Inner {
    containers: Mutex<HashMap<String, ContainerStatus>>,
    next: AtomicU64,
}

/// One simulated engine (one per simulated host). Cloning shares the engine.
#[derive(Debug, Clone, Default)]
pub struct SimRuntime {
    inner: Arc<Inner>,
    /// Containers started across every engine sharing this counter (for the benchmark).
    started: Arc<AtomicU64>,
}

impl SimRuntime {
    /// An engine whose starts are counted in `started` (shared between engines).
    pub fn new(started: Arc<AtomicU64>) -> Self {
        SimRuntime { inner: Arc::default(), started }
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, ContainerStatus>) -> T) -> T {
        f(&mut self.inner.containers.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// `key=value` or `key` (any value), as Docker's label filter reads it.
fn has_label(c: &ContainerStatus, filter: &str) -> bool {
    match filter.split_once('=') {
        Some((k, v)) => c.labels.get(k).is_some_and(|x| x == v),
        None => c.labels.contains_key(filter),
    }
}

impl ContainerRuntime for SimRuntime {
    async fn pull(&self, _image: &str, _auth: Option<&RegistryAuth>) -> Result<()> {
        Ok(())
    }
    async fn image_digest(&self, _image: &str) -> Result<Option<String>> {
        Ok(Some("sha256:0000000000000000000000000000000000000000000000000000000000000000".into()))
    }
    async fn image_present(&self, _image: &str) -> Result<bool> {
        Ok(true)
    }
    async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        let id = format!("sim{:016x}", self.inner.next.fetch_add(1, Ordering::Relaxed));
        let status = ContainerStatus {
            id: id.clone(),
            name: spec.name.clone(),
            labels: spec.labels.clone(),
            image_id: Some("sha256:sim".into()),
            health: spec.healthcheck.as_ref().map(|_| "starting".to_string()),
            ..Default::default()
        };
        self.with(|m| m.insert(id.clone(), status));
        Ok(id)
    }
    async fn start(&self, id: &str) -> Result<()> {
        let started = self.with(|m| match m.get_mut(id) {
            Some(c) => {
                c.running = true;
                c.started = true;
                if c.health.is_some() {
                    c.health = Some("healthy".into());
                }
                true
            }
            None => false,
        });
        if !started {
            return Err(wharf_agent::runtime::RuntimeError::NotFound(id.to_string()));
        }
        self.started.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
    async fn stop(&self, id: &str, _timeout_secs: i64) -> Result<()> {
        self.with(|m| {
            if let Some(c) = m.get_mut(id)
                && c.running
            {
                c.running = false;
                c.exit_code = Some(0);
            }
        });
        Ok(())
    }
    async fn remove(&self, id: &str) -> Result<()> {
        self.with(|m| m.remove(id));
        Ok(())
    }
    async fn inspect(&self, id: &str) -> Result<Option<ContainerStatus>> {
        Ok(self.with(|m| m.get(id).cloned()))
    }
    async fn list_labelled(&self, label: &str) -> Result<Vec<ContainerStatus>> {
        Ok(self.with(|m| m.values().filter(|c| has_label(c, label)).cloned().collect()))
    }
    fn logs(&self, _id: &str, _since_secs: i64) -> BoxStream<'static, Result<LogLine>> {
        stream::empty().boxed()
    }
    async fn stats(&self, _id: &str) -> Result<Option<serde_json::Value>> {
        Ok(None)
    }
    async fn usage(&self, id: &str) -> Result<Option<ContainerUsage>> {
        // Every running container uses 1% of a core and 16 MiB (so agents report usage at
        // scale as they would on real engines).
        static EPOCH: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let running = self.with(|m| m.get(id).is_some_and(|c| c.running));
        let elapsed = EPOCH.get_or_init(std::time::Instant::now).elapsed().as_nanos() as u64;
        Ok(running.then_some(ContainerUsage { cpu_nanos: elapsed / 100, memory_bytes: 16 << 20 }))
    }
    async fn bridge_gateway(&self) -> Result<Option<String>> {
        // No bridge: the agents serve no task metadata endpoint.
        Ok(None)
    }
    async fn import_image(&self, _name: &str, _rootfs_tar: Vec<u8>) -> Result<()> {
        Ok(())
    }
    async fn version(&self) -> Result<String> {
        Ok("simulated".into())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn containers_start_stop_and_list_by_label() {
        let started = Arc::new(AtomicU64::new(0));
        let rt = SimRuntime::new(started.clone());
        let mut spec = ContainerSpec { name: "a".into(), ..Default::default() };
        spec.labels.insert("owner".into(), "x".into());
        let id = rt.create(&spec).await.unwrap();
        assert!(!rt.inspect(&id).await.unwrap().unwrap().running);
        rt.start(&id).await.unwrap();
        assert!(rt.inspect(&id).await.unwrap().unwrap().running);
        assert_eq!(started.load(Ordering::Relaxed), 1);
        assert_eq!(rt.list_labelled("owner=x").await.unwrap().len(), 1);
        assert_eq!(rt.list_labelled("owner=y").await.unwrap().len(), 0);
        assert_eq!(rt.list_labelled("owner").await.unwrap().len(), 1);
        rt.stop(&id, 1).await.unwrap();
        let s = rt.inspect(&id).await.unwrap().unwrap();
        assert!(!s.running && s.exit_code == Some(0));
        rt.remove(&id).await.unwrap();
        assert!(rt.inspect(&id).await.unwrap().is_none());
        assert!(rt.start(&id).await.is_err());
    }
}
