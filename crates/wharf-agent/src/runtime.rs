//! The container runtime seam. The agent speaks only this trait; Docker (through bollard) is
//! the real implementation, and a simulated one may exist for scale benchmarks. Nothing here
//! knows about ECS tasks: it creates, starts, stops and inspects containers.

use std::collections::HashMap;

/// Everything needed to create one container.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub entrypoint: Option<Vec<String>>,
    pub command: Option<Vec<String>>,
    /// `KEY=value` pairs.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub labels: HashMap<String, String>,
    pub cpu_shares: Option<i64>,
    pub memory_bytes: Option<i64>,
    pub memory_reservation_bytes: Option<i64>,
    pub ports: Vec<PortBinding>,
    /// `bridge`, `host`, `none` or `container:<id>`.
    pub network_mode: String,
    pub dns_servers: Vec<String>,
    pub dns_search: Vec<String>,
    /// `hostname:ip`.
    pub extra_hosts: Vec<String>,
    /// `container:alias`.
    pub links: Vec<String>,
    pub ulimits: Vec<Ulimit>,
    pub readonly_rootfs: bool,
    pub privileged: bool,
    pub init: bool,
    /// `source:target[:ro]`.
    pub binds: Vec<String>,
    /// `container[:ro]`.
    pub volumes_from: Vec<String>,
    pub healthcheck: Option<HealthCheck>,
    pub stop_timeout_secs: Option<i64>,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub security_opts: Vec<String>,
    pub sysctls: HashMap<String, String>,
    pub restart_on_failure: Option<i64>,
    /// `linuxParameters.devices`: (host path, container path, cgroup permissions).
    pub devices: Vec<(String, String, String)>,
    /// `linuxParameters.tmpfs`: container path → mount options (`size=64m,rw,…`).
    pub tmpfs: HashMap<String, String>,
    /// `linuxParameters.sharedMemorySize`.
    pub shm_size_bytes: Option<i64>,
    /// Memory plus `linuxParameters.maxSwap` (Docker's `--memory-swap`).
    pub memory_swap_bytes: Option<i64>,
    pub swappiness: Option<i64>,
    /// `disableNetworking`.
    pub network_disabled: bool,
    /// `interactive` (stdin kept open) and `pseudoTerminal`.
    pub open_stdin: bool,
    pub tty: bool,
    /// The task's `pidMode` / `ipcMode` (`host`, or `none` for IPC).
    pub pid_mode: Option<String>,
    pub ipc_mode: Option<String>,
    /// A Docker log driver and its options (not `awslogs`, which the agent ships itself).
    pub log_driver: Option<(String, HashMap<String, String>)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortBinding {
    pub container_port: u16,
    /// 0 asks nothing specific (the agent chooses before calling the runtime).
    pub host_port: u16,
    pub protocol: String,
    pub host_ip: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ulimit {
    pub name: String,
    pub soft: i64,
    pub hard: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthCheck {
    pub command: Vec<String>,
    pub interval_secs: i64,
    pub timeout_secs: i64,
    pub retries: i64,
    pub start_period_secs: i64,
}

/// A container as the runtime sees it now.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ContainerStatus {
    pub id: String,
    pub name: String,
    pub running: bool,
    /// Set once the container has run and exited.
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    /// `healthy`, `unhealthy` or `starting` when a health check is configured.
    pub health: Option<String>,
    pub started: bool,
    pub error: Option<String>,
    pub image_id: Option<String>,
    pub labels: HashMap<String, String>,
    /// Address and MAC on the engine's bridge network (for a pause container).
    pub ip_address: Option<String>,
    pub mac_address: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("image {image} could not be pulled: {message}")]
    Pull { image: String, message: String },
    #[error("container {0} not found")]
    NotFound(String),
    #[error("container runtime call {call} failed: {message}")]
    Call { call: &'static str, message: String },
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// One line of a container's output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub timestamp_ms: i64,
    pub message: String,
}

/// A container's resource usage at one instant: the counters the agent turns into the
/// `AWS/ECS` utilization metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContainerUsage {
    /// CPU time used since the container started, in nanoseconds (cumulative).
    pub cpu_nanos: u64,
    /// Memory in use now, in bytes, as `docker stats` counts it: the cgroup's usage less its
    /// inactive file cache.
    pub memory_bytes: u64,
}

/// Credentials for pulling from a registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
    pub server: String,
}

pub trait ContainerRuntime: Send + Sync + 'static {
    /// Pulls `image`. Returns the error the registry gave when it fails.
    fn pull(&self, image: &str, auth: Option<&RegistryAuth>) -> impl Future<Output = Result<()>> + Send;
    /// The local image's repo digest (`sha256:…`) when the image is present.
    fn image_digest(&self, image: &str) -> impl Future<Output = Result<Option<String>>> + Send;
    fn image_present(&self, image: &str) -> impl Future<Output = Result<bool>> + Send;
    fn create(&self, spec: &ContainerSpec) -> impl Future<Output = Result<String>> + Send;
    fn start(&self, id: &str) -> impl Future<Output = Result<()>> + Send;
    /// SIGTERM, then SIGKILL after `timeout_secs`.
    fn stop(&self, id: &str, timeout_secs: i64) -> impl Future<Output = Result<()>> + Send;
    fn remove(&self, id: &str) -> impl Future<Output = Result<()>> + Send;
    fn inspect(&self, id: &str) -> impl Future<Output = Result<Option<ContainerStatus>>> + Send;
    /// Every container carrying `label` (any value), running or not.
    fn list_labelled(&self, label: &str) -> impl Future<Output = Result<Vec<ContainerStatus>>> + Send;
    /// The container's output (stdout and stderr) since `since_secs` (epoch; 0 = its start),
    /// following until it exits. Each item is one line as the engine framed it, with the
    /// engine's timestamp (epoch ms).
    fn logs(&self, id: &str, since_secs: i64) -> futures_util::stream::BoxStream<'static, Result<LogLine>>;
    /// One sample of the container's resource usage, in the engine's stats format (the task
    /// metadata endpoint serves it as is).
    fn stats(&self, id: &str) -> impl Future<Output = Result<Option<serde_json::Value>>> + Send;
    /// The container's CPU and memory counters now, cheaply (the agent samples every running
    /// container every few seconds); `None` when the container is gone.
    fn usage(&self, id: &str) -> impl Future<Output = Result<Option<ContainerUsage>>> + Send;
    /// The gateway address of the engine's default bridge network (how containers reach the
    /// host, and so the agent's metadata endpoint).
    fn bridge_gateway(&self) -> impl Future<Output = Result<Option<String>>> + Send;
    /// Creates image `name` (`repo:tag`) from a root filesystem tar (`docker import`).
    fn import_image(&self, name: &str, rootfs_tar: Vec<u8>) -> impl Future<Output = Result<()>> + Send;
    /// The engine's version string, for versionInfo.
    fn version(&self) -> impl Future<Output = Result<String>> + Send;
}
