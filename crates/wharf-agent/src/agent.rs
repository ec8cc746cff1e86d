//! The agent's main loop: register the container instance, hold the assignment stream open,
//! and keep one [`TaskRun`] per assigned task; containers this instance owns that no task
//! claims are orphans and get removed.

use crate::client::{Client, ClientError};
use crate::runtime::ContainerRuntime;
use crate::task::TaskRun;
use serde::{Deserialize, Serialize};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;
use tokio::sync::watch;
use wharf_types::agent::{Assignment, StreamMessage, TaskReport, labels};
use wharf_types::ecs::TaskStatus;

/// When the agent pulls images (ECS_IMAGE_PULL_BEHAVIOR).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PullBehavior {
    /// Pull; if that fails, use the cached image (ECS's default).
    #[default]
    Default,
    /// Pull always; a failed pull fails the task.
    Always,
    /// Pull only when the image is not cached.
    Once,
    /// Use the cached image when present.
    PreferCached,
}

impl std::str::FromStr for PullBehavior {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "default" => Ok(Self::Default),
            "always" => Ok(Self::Always),
            "once" => Ok(Self::Once),
            "prefer-cached" => Ok(Self::PreferCached),
            other => Err(format!("unknown pull behaviour '{other}' (default, always, once, prefer-cached)")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub endpoint: String,
    pub region: String,
    pub access_key_id: String,
    pub secret_access_key: String,
    pub cluster: String,
    /// Where the agent remembers its container instance ARN across restarts.
    pub state_dir: PathBuf,
    /// Host address published container ports bind to.
    pub port_bind_ip: String,
    /// The address other hosts (the load balancer) reach this host's task ports on; `None`:
    /// `port_bind_ip`, or 127.0.0.1 when that is unspecified (0.0.0.0).
    pub advertise_address: Option<String>,
    /// Memory (MiB) kept back from tasks for the host and the agent.
    pub reserved_memory_mib: i64,
    /// Host ports never given to tasks.
    pub reserved_ports: Vec<u16>,
    pub pull_behavior: PullBehavior,
    /// Default time between SIGTERM and SIGKILL (ECS_CONTAINER_STOP_TIMEOUT).
    pub container_stop_timeout_secs: i64,
    /// Extra attributes to register (`name=value`).
    pub attributes: Vec<(String, String)>,
    /// The range dynamic host ports come from (defaults to the kernel's ephemeral range).
    pub dynamic_ports: (u16, u16),
    /// Also serve the account's FARGATE tasks (the agent of `wharf up`).
    pub fargate: bool,
    /// How to verify an `https://` endpoint (`None`: plain HTTP only).
    pub tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    /// How often running tasks' usage is sampled and reported; `None`: as the control plane
    /// answers the first report (its `--metrics-period`).
    pub stats_interval: Option<Duration>,
    /// Sample and report no usage (ECS_DISABLE_METRICS): the tasks get no `AWS/ECS` metrics.
    pub disable_metrics: bool,
}

impl AgentConfig {
    /// ECS's reserved ports: SSH, the Docker daemon, and the ECS agent's own.
    pub const DEFAULT_RESERVED_PORTS: [u16; 5] = [22, 2375, 2376, 51678, 51679];

    /// Where this host's published task ports are reachable (the container instance's
    /// `privateIp`, which load balancers send instance targets' traffic to).
    pub fn reachable_address(&self) -> String {
        if let Some(a) = self.advertise_address.as_ref().filter(|a| !a.is_empty()) {
            return a.clone();
        }
        match self.port_bind_ip.parse::<std::net::IpAddr>() {
            Ok(ip) if ip.is_unspecified() => "127.0.0.1".into(),
            _ => self.port_bind_ip.clone(),
        }
    }

    pub fn kernel_ephemeral_range() -> (u16, u16) {
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| {
                let mut it = s.split_whitespace().filter_map(|p| p.parse::<u16>().ok());
                Some((it.next()?, it.next()?))
            })
            .unwrap_or((32768, 60999))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("registering the container instance failed")]
    Register(#[source] ClientError),
    #[error("the container runtime is unusable")]
    Runtime(#[source] crate::runtime::RuntimeError),
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct State {
    container_instance_arn: Option<String>,
    cluster: Option<String>,
    fargate_host: Option<String>,
    /// The host's instance id, the same across re-registrations (as an EC2 instance's is).
    instance_id: Option<String>,
}

pub struct Agent<R: ContainerRuntime> {
    pub(crate) config: AgentConfig,
    pub(crate) runtime: R,
    pub(crate) client: Client,
    instance_arn: Mutex<String>,
    fargate_host: String,
    tasks: Mutex<HashMap<String, (Source, watch::Sender<Assignment>)>>,
    ports: Mutex<HashSet<u16>>,
    /// Base URL of the task metadata endpoint, once it serves.
    metadata_base: Mutex<Option<String>>,
    last_sweep: Mutex<HashMap<Source, std::time::Instant>>,
    /// Instance ARNs this host had before (deregistered, or another cluster): their
    /// containers are orphans too.
    retired: Mutex<Vec<String>>,
    pull_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    pull_failures: Mutex<HashMap<String, std::time::Instant>>,
    /// This Wharf's registry token, for pulling its images.
    pub(crate) registry_token: crate::registry_auth::TokenCache,
    /// Whether the container engine last failed to answer (so an outage is logged once when
    /// it starts and once when it ends, not on every call meanwhile).
    engine_down: std::sync::atomic::AtomicBool,
}

/// Which stream assigned a task: the container instance's, or the Fargate host's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Source {
    Instance,
    Fargate,
}

impl<R: ContainerRuntime> std::fmt::Debug for Agent<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent").field("cluster", &self.config.cluster).finish_non_exhaustive()
    }
}

fn host_memory_mib() -> i64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("MemTotal:"))?.split_whitespace().nth(1)?.parse::<i64>().ok())
        .map_or(1024, |kib| kib / 1024)
}

impl<R: ContainerRuntime> Agent<R> {
    pub fn new(config: AgentConfig, runtime: R) -> Arc<Self> {
        let client = Client::with_tls(
            &config.endpoint,
            &config.region,
            &config.access_key_id,
            &config.secret_access_key,
            config.tls.clone(),
        );
        let state: State = std::fs::read_to_string(config.state_dir.join("agent-state.json"))
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        let fargate_host = state.fargate_host.unwrap_or_else(|| format!("fargate-{}", wharf_types::hex_id(16)));
        Arc::new(Agent {
            config,
            runtime,
            client,
            fargate_host,
            metadata_base: Mutex::new(None),
            last_sweep: Mutex::new(HashMap::new()),
            pull_locks: Mutex::new(HashMap::new()),
            pull_failures: Mutex::new(HashMap::new()),
            registry_token: Default::default(),
            engine_down: Default::default(),
            retired: Mutex::new(Vec::new()),
            instance_arn: Mutex::new(String::new()),
            tasks: Mutex::new(HashMap::new()),
            ports: Mutex::new(HashSet::new()),
        })
    }

    pub fn instance_arn(&self) -> String {
        self.instance_arn.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn state_path(&self) -> PathBuf {
        self.config.state_dir.join("agent-state.json")
    }

    /// Registers (or re-registers) this host: CPU = cores × 1024, memory = host MiB minus the
    /// reserve, and the reserved ports.
    pub async fn register(&self) -> Result<String, AgentError> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
        let memory = (host_memory_mib() - self.config.reserved_memory_mib).max(0);
        let ports: Vec<String> = self.config.reserved_ports.iter().map(u16::to_string).collect();
        let state: State = std::fs::read_to_string(self.state_path())
            .ok()
            .and_then(|s| serde_json::from_str(&s).ok())
            .unwrap_or_default();
        let instance_id = state.instance_id.clone().unwrap_or_else(|| format!("i-{}", &wharf_types::hex_id(17)));
        let remembered = state.container_instance_arn.clone();
        let previous = state.container_instance_arn.filter(|_| state.cluster.as_deref() == Some(&self.config.cluster));
        let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default().trim().to_string();
        let identity = json!({
            "instanceId": instance_id,
            "region": self.config.region,
            "availabilityZone": format!("{}a", self.config.region),
            "instanceType": "wharf",
            "privateIp": self.config.reachable_address(),
            "hostname": hostname,
        });
        let docker = self.runtime.version().await.map_err(AgentError::Runtime)?;
        let mut body = json!({
            "cluster": self.config.cluster,
            "instanceIdentityDocument": identity.to_string(),
            "totalResources": [
                {"name": "CPU", "type": "INTEGER", "integerValue": cores * 1024},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": memory},
                {"name": "PORTS", "type": "STRINGSET", "stringSetValue": ports},
                {"name": "PORTS_UDP", "type": "STRINGSET", "stringSetValue": []},
            ],
            "versionInfo": {"agentVersion": env!("CARGO_PKG_VERSION"), "agentHash": "wharf", "dockerVersion": docker},
            "attributes": self.config.attributes.iter().map(|(n, v)| json!({"name": n, "value": v})).collect::<Vec<_>>(),
        });
        if let Some(arn) = &previous {
            body["containerInstanceArn"] = json!(arn);
        }
        let resp = match self.client.ecs("RegisterContainerInstance", &body).await {
            Ok(r) => r,
            // The remembered instance is gone (deregistered): register a new one.
            Err(ClientError::Api { .. }) if previous.is_some() => {
                body.as_object_mut().map(|o| o.remove("containerInstanceArn"));
                self.client.ecs("RegisterContainerInstance", &body).await.map_err(AgentError::Register)?
            }
            Err(e) => return Err(AgentError::Register(e)),
        };
        let arn = resp["containerInstance"]["containerInstanceArn"].as_str().unwrap_or_default().to_string();
        *self.instance_arn.lock().unwrap_or_else(PoisonError::into_inner) = arn.clone();
        if let Some(old) = remembered.filter(|old| *old != arn) {
            self.retired.lock().unwrap_or_else(PoisonError::into_inner).push(old);
        }
        let state = State {
            container_instance_arn: Some(arn.clone()),
            cluster: Some(self.config.cluster.clone()),
            fargate_host: Some(self.fargate_host.clone()),
            instance_id: Some(instance_id),
        };
        if std::fs::create_dir_all(&self.config.state_dir).is_ok() {
            let _ = std::fs::write(self.state_path(), serde_json::to_vec(&state).unwrap_or_default());
        }
        Ok(arn)
    }

    /// The current assignment of the task with this id, if the agent runs it.
    pub(crate) fn assignment_by_id(&self, task_id: &str) -> Option<Assignment> {
        let tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        let suffix = format!("/{task_id}");
        tasks.iter().find(|(arn, _)| arn.ends_with(&suffix)).map(|(_, (_, tx))| tx.borrow().clone())
    }

    /// The containers of every task that is RUNNING, for usage sampling (ECS publishes the
    /// utilization of RUNNING tasks only).
    pub(crate) fn running_tasks(&self) -> Vec<crate::usage::RunningTask> {
        let tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
        tasks
            .values()
            .filter_map(|(_, tx)| {
                let a = tx.borrow();
                if a.task.last_status != TaskStatus::Running {
                    return None;
                }
                let containers = a
                    .task
                    .containers
                    .iter()
                    .filter(|c| c.last_status == TaskStatus::Running)
                    .filter_map(|c| c.runtime_id.clone())
                    .collect();
                Some(crate::usage::RunningTask { task_arn: a.task.task_arn.clone(), containers })
            })
            .collect()
    }

    /// The lock that makes concurrent pulls of one image a single attempt.
    pub(crate) fn pull_lock(&self, image: &str) -> Arc<tokio::sync::Mutex<()>> {
        self.pull_locks.lock().unwrap_or_else(PoisonError::into_inner).entry(image.to_string()).or_default().clone()
    }

    /// How long a failed pull of a cached image is remembered (the cached image is used
    /// meanwhile, as ECS's default pull behaviour would after its own failed attempt).
    const PULL_FAILURE_MEMORY: Duration = Duration::from_secs(60);

    pub(crate) fn pull_failed_recently(&self, image: &str) -> bool {
        let failures = self.pull_failures.lock().unwrap_or_else(PoisonError::into_inner);
        failures.get(image).is_some_and(|t| t.elapsed() < Self::PULL_FAILURE_MEMORY)
    }

    /// Records that the container engine failed a call: the first failure of an outage is
    /// logged; running tasks keep their state until it answers again.
    pub(crate) fn engine_failed(&self, e: &dyn std::fmt::Display) {
        if !self.engine_down.swap(true, std::sync::atomic::Ordering::Relaxed) {
            tracing::warn!(error = %e, "the container engine does not answer; running tasks are kept as they were and checked again when it returns");
        }
    }

    /// Records that the container engine answered (logging the end of an outage).
    pub(crate) fn engine_answered(&self) {
        if self.engine_down.swap(false, std::sync::atomic::Ordering::Relaxed) {
            tracing::info!("the container engine answers again: re-adopting running containers");
        }
    }

    pub(crate) fn note_pull_failure(&self, image: &str) {
        self.pull_failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(image.to_string(), std::time::Instant::now());
    }

    pub(crate) fn metadata_base(&self) -> Option<String> {
        self.metadata_base.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// The owner label value of the containers a source's tasks run in.
    pub(crate) fn owner(&self, source: Source) -> String {
        match source {
            Source::Instance => self.instance_arn(),
            Source::Fargate => format!("fargate:{}", self.fargate_host),
        }
    }

    /// True for a bridge port mapping the agent must choose a host port for.
    pub(crate) fn is_dynamic(&self, host_port: u16, network_mode: &str) -> bool {
        network_mode == "bridge" && host_port == 0
    }

    /// A free host port from the dynamic range that no task of this agent holds.
    pub(crate) fn allocate_port(&self) -> u16 {
        let (lo, hi) = self.config.dynamic_ports;
        let mut held = self.ports.lock().unwrap_or_else(PoisonError::into_inner);
        for _ in 0..1000 {
            let port = rand::random_range(lo..=hi);
            if held.contains(&port) || self.config.reserved_ports.contains(&port) {
                continue;
            }
            if std::net::TcpListener::bind((self.config.port_bind_ip.as_str(), port)).is_ok() {
                held.insert(port);
                return port;
            }
        }
        // The range is exhausted; let Docker pick (reported as it bound it).
        0
    }

    /// Sends what `SubmitTaskStateChange` cannot carry: container health, a task's network.
    pub(crate) async fn report_task(&self, report: &TaskReport) -> bool {
        let Ok(payload) = serde_json::to_vec(report) else { return false };
        self.client
            .post_json(wharf_types::agent::REPORT_PATH, &[("content-type", "application/json")], payload.into())
            .await
            .map_err(|e| tracing::warn!(error = %e, "task report failed"))
            .is_ok()
    }

    /// Called by a finished task: its ports are free again.
    pub(crate) fn forget(&self, task_arn: &str, _task_id: &str) {
        let sender = self.tasks.lock().unwrap_or_else(PoisonError::into_inner).remove(task_arn);
        if let Some((_, tx)) = sender {
            let a = tx.borrow();
            let mut ports = self.ports.lock().unwrap_or_else(PoisonError::into_inner);
            for c in &a.task.containers {
                for b in &c.network_bindings {
                    if let Some(p) = b.host_port.and_then(|p| u16::try_from(p).ok()) {
                        ports.remove(&p);
                    }
                }
            }
        }
    }

    /// Converges on a snapshot of one source: new tasks start, changed ones learn their new
    /// desired state, tasks the control plane dropped are told to stop, orphan containers of
    /// the source are removed.
    async fn apply(self: &Arc<Self>, source: Source, assignments: Vec<Assignment>) {
        let wanted: HashSet<String> = assignments.iter().map(|a| a.task.task_arn.clone()).collect();
        {
            let mut tasks = self.tasks.lock().unwrap_or_else(PoisonError::into_inner);
            for a in assignments {
                for c in &a.task.containers {
                    for b in &c.network_bindings {
                        if let Some(p) = b.host_port.and_then(|p| u16::try_from(p).ok()) {
                            self.ports.lock().unwrap_or_else(PoisonError::into_inner).insert(p);
                        }
                    }
                }
                match tasks.get(&a.task.task_arn) {
                    Some((_, tx)) => {
                        tx.send_if_modified(|cur| {
                            let changed = *cur != a;
                            *cur = a.clone();
                            changed
                        });
                    }
                    None => {
                        let arn = a.task.task_arn.clone();
                        let (tx, rx) = watch::channel(a);
                        tasks.insert(arn, (source, tx));
                        let run = TaskRun::new(self.clone(), self.owner(source), rx);
                        tokio::spawn(run.run());
                    }
                }
            }
            for (arn, (from, tx)) in tasks.iter() {
                if *from == source && !wanted.contains(arn) {
                    tx.send_modify(|a| {
                        if a.task.desired_status != TaskStatus::Stopped {
                            a.task.desired_status = TaskStatus::Stopped;
                            a.task.stopped_reason =
                                Some("Task is no longer assigned to this container instance".into());
                        }
                    });
                }
            }
        }
        self.remove_orphans(source).await;
    }

    async fn remove_orphans(&self, source: Source) {
        // Snapshots can arrive many times a second; sweeping the engine once every few
        // seconds is enough.
        {
            let mut last = self.last_sweep.lock().unwrap_or_else(PoisonError::into_inner);
            let due = last.get(&source).is_none_or(|t: &std::time::Instant| t.elapsed() >= Duration::from_secs(5));
            if !due {
                return;
            }
            last.insert(source, std::time::Instant::now());
        }
        let mut owners = vec![self.owner(source)];
        if source == Source::Instance {
            owners.extend(self.retired.lock().unwrap_or_else(PoisonError::into_inner).iter().cloned());
        }
        let mut containers = vec![];
        for owner in owners {
            let label = format!("{}={owner}", labels::INSTANCE);
            let Ok(found) = self.runtime.list_labelled(&label).await else { return };
            containers.extend(found);
        }
        let known: HashSet<String> =
            self.tasks.lock().unwrap_or_else(PoisonError::into_inner).keys().cloned().collect();
        for c in containers {
            let task = c.labels.get(labels::TASK_ARN).cloned().unwrap_or_default();
            if !known.contains(&task) {
                tracing::info!(container = %c.name, task = %task, "removing orphaned container");
                let _ = self.runtime.stop(&c.id, 5).await;
                let _ = self.runtime.remove(&c.id).await;
            }
        }
    }
}

/// Runs the agent until `shutdown` flips: register, then follow the assignment stream,
/// reconnecting with backoff. Running tasks keep running across reconnects and agent
/// restarts (a restarted agent re-adopts their containers).
pub async fn run<R: ContainerRuntime>(
    config: AgentConfig,
    runtime: R,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), AgentError> {
    let agent = Agent::new(config, runtime);
    if agent.config.cluster == "default" {
        // The ECS agent creates the default cluster when it joins it.
        let _ = agent.client.ecs("CreateCluster", &json!({"clusterName": "default"})).await;
    }
    let mut delay = Duration::from_millis(200);
    let mut warned = false;
    let arn = loop {
        match agent.register().await {
            Ok(arn) => break arn,
            Err(AgentError::Register(e @ ClientError::Unreachable { .. })) => {
                if !warned {
                    // The whole cause chain: "certificate not trusted" is three sources down.
                    let mut why = e.to_string();
                    let mut source = std::error::Error::source(&e);
                    while let Some(s) = source {
                        why.push_str(&format!(": {s}"));
                        source = s.source();
                    }
                    tracing::warn!(error = %why, "cannot register yet; retrying");
                    warned = true;
                }
                tokio::select! {
                    _ = shutdown.changed() => return Ok(()),
                    _ = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    };
    tracing::info!(cluster = %agent.config.cluster, instance = %arn, "container instance registered");
    let base = crate::metadata::serve(agent.clone(), shutdown.clone()).await;
    *agent.metadata_base.lock().unwrap_or_else(PoisonError::into_inner) = base;
    let fargate = agent.config.fargate.then(|| tokio::spawn(agent.clone().follow(Source::Fargate, shutdown.clone())));
    if !agent.config.disable_metrics {
        tokio::spawn(crate::usage::run(agent.clone(), shutdown.clone()));
    }
    agent.clone().follow(Source::Instance, shutdown).await;
    if let Some(f) = fargate {
        let _ = f.await;
    }
    Ok(())
}

impl<R: ContainerRuntime> Agent<R> {
    /// Holds one source's assignment stream open, reconnecting with backoff, until shutdown.
    async fn follow(self: Arc<Self>, source: Source, mut shutdown: watch::Receiver<bool>) {
        let mut delay = Duration::from_millis(200);
        loop {
            let opened = tokio::select! {
                _ = shutdown.changed() => return,
                s = async {
                    match source {
                        Source::Instance => self.client.assignments(&self.config.cluster, &self.instance_arn()).await,
                        Source::Fargate => self.client.fargate_assignments(&self.fargate_host).await,
                    }
                } => s,
            };
            match opened {
                Ok(mut stream) => {
                    delay = Duration::from_millis(200);
                    loop {
                        let msg = tokio::select! {
                            _ = shutdown.changed() => return,
                            m = tokio::time::timeout(Duration::from_secs(30), stream.next()) => m,
                        };
                        match msg {
                            Ok(Some(Ok(StreamMessage::Snapshot { assignments, .. }))) => {
                                self.apply(source, assignments).await
                            }
                            Ok(Some(Ok(StreamMessage::Heartbeat { .. }))) => {}
                            Ok(Some(Err(e))) => {
                                tracing::warn!(error = %e, "assignment stream broke");
                                break;
                            }
                            Ok(None) => break,
                            Err(_) => {
                                tracing::warn!("no heartbeat from the control plane for 30 s; reconnecting");
                                break;
                            }
                        }
                    }
                }
                Err(ClientError::Api { code, message, .. }) if message.contains("deregistered") => {
                    // Deregistered, as the ECS agent does: stop serving, clean up.
                    tracing::warn!(%code, %message, "container instance deregistered; the agent stops");
                    self.apply(source, vec![]).await;
                    return;
                }
                Err(ClientError::Api { code, message, .. })
                    if code != "InternalFailure" && code != "ServerException" =>
                {
                    tracing::warn!(%code, %message, "assignment stream refused; registering again");
                    if let Err(e) = self.register().await {
                        tracing::warn!(error = %e, "registering again failed");
                    }
                }
                Err(e) => tracing::warn!(error = %e, "cannot open the assignment stream"),
            }
            tokio::select! {
                _ = shutdown.changed() => return,
                _ = tokio::time::sleep(delay) => {}
            }
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }
}
