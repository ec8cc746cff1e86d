//! Wharf's load balancer data plane: follows the ELBv2 resources in the store
//! (`wharf_types::elb`), serves every listener on its port, routes by rules, balances over
//! healthy targets, health-checks them (writing what it sees back to the store) and drains
//! deregistered ones.
//!
//! Layout: [`plane`] follows the store and reconciles (listeners, probes, draining);
//! [`model`] is the immutable snapshot a listener serves from; [`proxy`] is the request path;
//! [`rules`] the conditions; [`health`] the probes; [`metrics`] the counters and series;
//! [`cloudwatch`] what they become as `AWS/ApplicationELB` metrics.
//! The request path never touches the store and never takes a lock.

#![forbid(unsafe_code)]

pub mod cloudwatch;
pub mod health;
pub mod metrics;
pub mod model;
mod plane;
pub mod proxy;
pub mod rules;
pub mod tls;

pub use metrics::{Datapoint, Interval, Metric, Metrics, Totals};
pub use plane::resolve_target_ip;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;
use wharf_store::Store;

/// How the data plane is run.
#[derive(Debug, Clone)]
pub struct Config {
    /// The host address every listener binds (`--lb-bind-ip`).
    pub bind_ip: IpAddr,
    /// Wharf's data dir: HTTPS certificates named by ACM-style ARNs live in `certs/` there.
    pub data_dir: std::path::PathBuf,
}

/// What a listener is doing, for operators and tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerStatus {
    pub load_balancer_arn: String,
    pub address: SocketAddr,
    /// Why it is not serving (a bind failure), or `None` when it serves.
    pub error: Option<String>,
}

/// A handle on the running data plane. Cheap to clone.
#[derive(Debug, Clone)]
pub struct LoadBalancers {
    metrics: Metrics,
    status: Arc<Mutex<BTreeMap<String, ListenerStatus>>>,
}

impl LoadBalancers {
    /// Starts following the store; the task ends when `shutdown` turns true or the store closes.
    pub fn start<S: Store + Clone>(
        store: S,
        config: Config,
        shutdown: watch::Receiver<bool>,
    ) -> (LoadBalancers, tokio::task::JoinHandle<()>) {
        let metrics = Metrics::default();
        let status = Arc::new(Mutex::new(BTreeMap::new()));
        let workers = plane::Workers::start(&shutdown);
        let plane = plane::Plane::new(workers, store, config, metrics.clone(), status.clone());
        let task = tokio::spawn(plane.run(shutdown));
        (LoadBalancers { metrics, status }, task)
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Every listener by ARN with where it serves, or why it does not.
    pub fn listeners(&self) -> BTreeMap<String, ListenerStatus> {
        self.status.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}
