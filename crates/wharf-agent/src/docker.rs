//! `ContainerRuntime` on the Docker Engine API through bollard, negotiating the API version.

use crate::cgroup::{self, Cgroup};
use crate::runtime::{
    ContainerRuntime, ContainerSpec, ContainerStatus, ContainerUsage, LogLine, RegistryAuth, Result, RuntimeError,
};
use bollard::Docker;
use bollard::auth::DockerCredentials;
use bollard::models::{ContainerCreateBody, HealthConfig, HostConfig, PortBinding, ResourcesUlimits, RestartPolicy};
use bollard::query_parameters::{
    CreateContainerOptions, CreateImageOptions, ListContainersOptions, RemoveContainerOptions, StopContainerOptions,
};
use futures_util::StreamExt;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Debug, Clone)]
pub struct DockerRuntime {
    docker: Docker,
    /// Each sampled container's cgroup (`None`: not readable here, ask the engine), found on
    /// its first sample and forgotten when its files go away.
    cgroups: Arc<Mutex<HashMap<String, Option<Cgroup>>>>,
    /// Where the cgroup file systems are mounted.
    cgroup_root: PathBuf,
}

fn call(call: &'static str) -> impl Fn(bollard::errors::Error) -> RuntimeError {
    move |e| RuntimeError::Call { call, message: e.to_string() }
}

fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(e, bollard::errors::Error::DockerResponseServerError { status_code: 404, .. })
}

const NANOS: i64 = 1_000_000_000;

impl DockerRuntime {
    /// Connects to the local engine (DOCKER_HOST or the default socket).
    pub async fn connect() -> Result<Self> {
        let docker = Docker::connect_with_local_defaults().map_err(call("connect"))?;
        let docker = docker.negotiate_version().await.map_err(call("negotiate_version"))?;
        Ok(DockerRuntime { docker, cgroups: Arc::default(), cgroup_root: PathBuf::from("/sys/fs/cgroup") })
    }

    /// The container's counters from the engine's stats API (what [`ContainerRuntime::usage`]
    /// falls back to when the cgroup cannot be read).
    pub async fn engine_usage(&self, id: &str) -> Result<Option<ContainerUsage>> {
        Ok(self.stats(id).await?.as_ref().and_then(cgroup::from_engine_stats))
    }

    /// Whether `id`'s counters are read from its cgroup (after its first sample).
    pub fn reads_cgroup(&self, id: &str) -> bool {
        self.cgroups.lock().unwrap_or_else(PoisonError::into_inner).get(id).is_some_and(Option::is_some)
    }

    /// The cgroup of a running container, from its init process's `/proc/<pid>/cgroup`.
    async fn find_cgroup(&self, id: &str) -> Option<Cgroup> {
        let c = self.docker.inspect_container(id, None).await.ok()?;
        let pid = c.state.and_then(|s| s.pid).filter(|p| *p > 0)?;
        let full_id = c.id?;
        let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        cgroup::find(&self.cgroup_root, &text, &full_id)
    }

    /// Connects to the engine (`DOCKER_HOST`, else the local socket), retrying with backoff
    /// (1 s doubling to 30 s) while it is not there yet; `None` if `shutdown` flips first.
    pub async fn connect_retrying(shutdown: &mut tokio::sync::watch::Receiver<bool>) -> Option<Self> {
        let mut delay = std::time::Duration::from_secs(1);
        let mut warned = false;
        loop {
            match Self::connect().await {
                Ok(r) => {
                    if warned {
                        tracing::info!("the Docker engine answers: the agent starts");
                    }
                    return Some(r);
                }
                Err(e) => {
                    if !warned {
                        tracing::warn!(error = %e, "the Docker engine is not reachable; retrying until it is");
                        warned = true;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => return None,
            }
            delay = (delay * 2).min(std::time::Duration::from_secs(30));
        }
    }

    fn body(spec: &ContainerSpec) -> ContainerCreateBody {
        // Joining another container's network namespace (awsvpc): Docker refuses anything
        // that configures a network of its own.
        let joined = spec.network_mode.starts_with("container:");
        let mut port_bindings: HashMap<String, Option<Vec<PortBinding>>> = HashMap::new();
        let mut exposed = vec![];
        for p in &spec.ports {
            if joined {
                continue;
            }
            let key = format!("{}/{}", p.container_port, p.protocol);
            exposed.push(key.clone());
            if spec.network_mode == "bridge" {
                port_bindings.entry(key).or_insert_with(|| Some(vec![])).get_or_insert_with(Vec::new).push(
                    PortBinding {
                        host_ip: Some(p.host_ip.clone()),
                        host_port: Some(if p.host_port == 0 { String::new() } else { p.host_port.to_string() }),
                    },
                );
            }
        }
        let non_empty = |v: &Vec<String>| (!v.is_empty()).then(|| v.clone());
        let host_config = HostConfig {
            cpu_shares: spec.cpu_shares,
            memory: spec.memory_bytes,
            memory_reservation: spec.memory_reservation_bytes,
            port_bindings: (!port_bindings.is_empty()).then_some(port_bindings),
            network_mode: Some(spec.network_mode.clone()),
            dns: non_empty(&spec.dns_servers).filter(|_| !joined),
            dns_search: non_empty(&spec.dns_search).filter(|_| !joined),
            extra_hosts: non_empty(&spec.extra_hosts).filter(|_| !joined),
            links: non_empty(&spec.links).filter(|_| !joined),
            ulimits: (!spec.ulimits.is_empty()).then(|| {
                spec.ulimits
                    .iter()
                    .map(|u| ResourcesUlimits { name: Some(u.name.clone()), soft: Some(u.soft), hard: Some(u.hard) })
                    .collect()
            }),
            readonly_rootfs: Some(spec.readonly_rootfs),
            privileged: Some(spec.privileged),
            init: spec.init.then_some(true),
            binds: non_empty(&spec.binds),
            volumes_from: non_empty(&spec.volumes_from),
            cap_add: non_empty(&spec.cap_add),
            cap_drop: non_empty(&spec.cap_drop),
            security_opt: non_empty(&spec.security_opts),
            sysctls: (!spec.sysctls.is_empty()).then(|| spec.sysctls.clone()),
            restart_policy: spec.restart_on_failure.map(|n| RestartPolicy {
                name: Some(bollard::models::RestartPolicyNameEnum::ON_FAILURE),
                maximum_retry_count: Some(n),
            }),
            devices: (!spec.devices.is_empty()).then(|| {
                spec.devices
                    .iter()
                    .map(|(host, container, perms)| bollard::models::DeviceMapping {
                        path_on_host: Some(host.clone()),
                        path_in_container: Some(container.clone()),
                        cgroup_permissions: Some(perms.clone()),
                    })
                    .collect()
            }),
            tmpfs: (!spec.tmpfs.is_empty()).then(|| spec.tmpfs.clone()),
            shm_size: spec.shm_size_bytes,
            memory_swap: spec.memory_swap_bytes,
            memory_swappiness: spec.swappiness,
            pid_mode: spec.pid_mode.clone(),
            ipc_mode: spec.ipc_mode.clone(),
            log_config: spec.log_driver.as_ref().map(|(driver, options)| bollard::models::HostConfigLogConfig {
                typ: Some(driver.clone()),
                config: Some(options.clone()),
            }),
            ..Default::default()
        };
        let healthcheck = spec.healthcheck.as_ref().map(|h| HealthConfig {
            test: Some(h.command.clone()),
            interval: Some(h.interval_secs * NANOS),
            timeout: Some(h.timeout_secs * NANOS),
            retries: Some(h.retries),
            start_period: Some(h.start_period_secs * NANOS),
            start_interval: None,
        });
        ContainerCreateBody {
            hostname: spec.hostname.clone().filter(|_| !joined),
            user: spec.user.clone(),
            exposed_ports: (!exposed.is_empty()).then_some(exposed),
            env: Some(spec.env.clone()),
            cmd: spec.command.clone(),
            entrypoint: spec.entrypoint.clone(),
            healthcheck,
            image: Some(spec.image.clone()),
            working_dir: spec.working_dir.clone(),
            labels: Some(spec.labels.clone()),
            stop_timeout: spec.stop_timeout_secs,
            host_config: Some(host_config),
            network_disabled: spec.network_disabled.then_some(true),
            open_stdin: spec.open_stdin.then_some(true),
            tty: spec.tty.then_some(true),
            ..Default::default()
        }
    }
}

/// `2026-11-24T22:09:21.365903123Z` → epoch milliseconds (UTC only, as the engine writes).
fn parse_rfc3339_ms(s: &str) -> Option<i64> {
    let s = s.strip_suffix('Z')?;
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (h, min, sec) = (t.next()??, t.next()??, t.next()??);
    let ms: i64 = format!("{frac:0<3}")[..3].parse().ok()?;
    let days = wharf_types::days_from_civil(y, m, day);
    Some(((days * 86_400 + h * 3600 + min * 60 + sec) * 1000) + ms)
}

/// `repo:tag` (or `repo@digest`) split the way the Engine's pull API wants it.
fn split_image(image: &str) -> (String, String) {
    if let Some((repo, digest)) = image.split_once('@') {
        return (repo.to_string(), digest.to_string());
    }
    let last_slash = image.rfind('/').map_or(0, |i| i + 1);
    match image[last_slash..].rfind(':') {
        Some(i) => (image[..last_slash + i].to_string(), image[last_slash + i + 1..].to_string()),
        None => (image.to_string(), "latest".to_string()),
    }
}

impl ContainerRuntime for DockerRuntime {
    async fn pull(&self, image: &str, auth: Option<&RegistryAuth>) -> Result<()> {
        let (repo, tag) = split_image(image);
        let options = CreateImageOptions { from_image: Some(repo), tag: Some(tag), ..Default::default() };
        let creds = auth.map(|a| DockerCredentials {
            username: Some(a.username.clone()),
            password: Some(a.password.clone()),
            serveraddress: Some(a.server.clone()),
            ..Default::default()
        });
        let mut stream = self.docker.create_image(Some(options), None, creds);
        while let Some(item) = stream.next().await {
            if let Err(e) = item {
                let message = match e {
                    bollard::errors::Error::DockerResponseServerError { message, .. } => message,
                    bollard::errors::Error::DockerStreamError { error } => error,
                    other => other.to_string(),
                };
                return Err(RuntimeError::Pull { image: image.to_string(), message });
            }
        }
        Ok(())
    }

    async fn image_digest(&self, image: &str) -> Result<Option<String>> {
        match self.docker.inspect_image(image).await {
            Ok(i) => {
                // The digest under the repository the image was named by (an image pushed to
                // several registries has one repo digest per repository), else the first.
                let (repo, _) = split_image(image);
                let digests = i.repo_digests.unwrap_or_default();
                let pick =
                    digests.iter().find(|d| d.split_once('@').is_some_and(|(r, _)| r == repo)).or(digests.first());
                Ok(pick.and_then(|d| d.split_once('@').map(|(_, h)| h.to_string())).or(i.id))
            }
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(call("inspect_image")(e)),
        }
    }

    async fn image_present(&self, image: &str) -> Result<bool> {
        match self.docker.inspect_image(image).await {
            Ok(_) => Ok(true),
            Err(e) if is_not_found(&e) => Ok(false),
            Err(e) => Err(call("inspect_image")(e)),
        }
    }

    async fn create(&self, spec: &ContainerSpec) -> Result<String> {
        let options = CreateContainerOptions { name: Some(spec.name.clone()), ..Default::default() };
        let created =
            self.docker.create_container(Some(options), Self::body(spec)).await.map_err(call("create_container"))?;
        Ok(created.id)
    }

    async fn start(&self, id: &str) -> Result<()> {
        self.docker.start_container(id, None).await.map_err(call("start_container"))
    }

    async fn stop(&self, id: &str, timeout_secs: i64) -> Result<()> {
        let options = StopContainerOptions { t: Some(timeout_secs.clamp(0, i32::MAX as i64) as i32), signal: None };
        match self.docker.stop_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            // 304: already stopped.
            Err(bollard::errors::Error::DockerResponseServerError { status_code: 304, .. }) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(call("stop_container")(e)),
        }
    }

    async fn remove(&self, id: &str) -> Result<()> {
        let options = RemoveContainerOptions { force: true, v: true, link: false };
        match self.docker.remove_container(id, Some(options)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(e) => Err(call("remove_container")(e)),
        }
    }

    async fn inspect(&self, id: &str) -> Result<Option<ContainerStatus>> {
        let c = match self.docker.inspect_container(id, None).await {
            Ok(c) => c,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => return Err(call("inspect_container")(e)),
        };
        let state = c.state.unwrap_or_default();
        let bridge =
            c.network_settings.as_ref().and_then(|n| n.networks.as_ref()).and_then(|n| n.get("bridge").cloned());
        let ip_address = bridge.as_ref().and_then(|b| b.ip_address.clone()).filter(|s| !s.is_empty());
        let mac_address = bridge.as_ref().and_then(|b| b.mac_address.clone()).filter(|s| !s.is_empty());
        let running = state.running.unwrap_or(false);
        let started = state.started_at.as_deref().is_some_and(|s| !s.starts_with("0001-"));
        let health =
            state.health.and_then(|h| h.status).map(|s| s.to_string()).filter(|s| !s.is_empty() && s != "none");
        Ok(Some(ContainerStatus {
            id: c.id.unwrap_or_default(),
            name: c.name.unwrap_or_default().trim_start_matches('/').to_string(),
            running,
            exit_code: (!running && started).then(|| state.exit_code.unwrap_or(0)),
            oom_killed: state.oom_killed.unwrap_or(false),
            health,
            started,
            error: state.error.filter(|e| !e.is_empty()),
            image_id: c.image,
            labels: c.config.and_then(|c| c.labels).unwrap_or_default(),
            ip_address,
            mac_address,
        }))
    }

    async fn list_labelled(&self, label: &str) -> Result<Vec<ContainerStatus>> {
        let mut filters = HashMap::new();
        filters.insert("label".to_string(), vec![label.to_string()]);
        let options = ListContainersOptions { all: true, filters: Some(filters), ..Default::default() };
        let list = self.docker.list_containers(Some(options)).await.map_err(call("list_containers"))?;
        let mut out = vec![];
        for c in list {
            if let Some(id) = c.id
                && let Some(status) = self.inspect(&id).await?
            {
                out.push(status);
            }
        }
        Ok(out)
    }

    fn logs(&self, id: &str, since_secs: i64) -> futures_util::stream::BoxStream<'static, Result<LogLine>> {
        let options = bollard::query_parameters::LogsOptions {
            follow: true,
            stdout: true,
            stderr: true,
            timestamps: true,
            since: i32::try_from(since_secs).unwrap_or(0),
            tail: "all".into(),
            ..Default::default()
        };
        self.docker
            .logs(id, Some(options))
            .map(|item| {
                let out = item.map_err(call("logs"))?;
                let text = String::from_utf8_lossy(&out.into_bytes()).into_owned();
                // "2026-11-24T22:09:21.365903123Z message"
                let (stamp, message) = text.split_once(' ').unwrap_or(("", text.as_str()));
                let timestamp_ms = parse_rfc3339_ms(stamp).unwrap_or_else(|| (wharf_types::now() * 1000.0) as i64);
                Ok(LogLine { timestamp_ms, message: message.trim_end_matches(['\n', '\r']).to_string() })
            })
            .boxed()
    }

    async fn stats(&self, id: &str) -> Result<Option<serde_json::Value>> {
        let options = bollard::query_parameters::StatsOptions { stream: false, one_shot: true };
        let mut stream = self.docker.stats(id, Some(options));
        match stream.next().await {
            Some(Ok(s)) => Ok(serde_json::to_value(s).ok()),
            Some(Err(e)) if is_not_found(&e) => Ok(None),
            Some(Err(e)) => Err(call("stats")(e)),
            None => Ok(None),
        }
    }

    async fn usage(&self, id: &str) -> Result<Option<ContainerUsage>> {
        let known = self.cgroups.lock().unwrap_or_else(PoisonError::into_inner).get(id).cloned();
        let cg = match known {
            Some(cg) => cg,
            None => {
                let cg = self.find_cgroup(id).await;
                if cg.is_none() {
                    tracing::debug!(container = %id, "cgroup not readable: sampling through the engine's stats");
                }
                self.cgroups.lock().unwrap_or_else(PoisonError::into_inner).insert(id.to_string(), cg.clone());
                cg
            }
        };
        if let Some(cg) = cg {
            // Kernel pseudo-files answer from memory: reading them inline costs microseconds.
            match cgroup::read(&cg) {
                Ok(u) => return Ok(Some(u)),
                // Gone (the container stopped) or moved: forget it; the engine knows.
                Err(_) => {
                    self.cgroups.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
                }
            }
        }
        let usage = self.engine_usage(id).await?;
        if usage.is_none() {
            self.cgroups.lock().unwrap_or_else(PoisonError::into_inner).remove(id);
        }
        Ok(usage)
    }

    async fn bridge_gateway(&self) -> Result<Option<String>> {
        let net = self.docker.inspect_network("bridge", None).await.map_err(call("inspect_network"))?;
        let configs = net.ipam.and_then(|i| i.config).unwrap_or_default();
        if let Some(gw) = configs.iter().find_map(|c| c.gateway.clone()) {
            return Ok(Some(gw));
        }
        // The default bridge often reports only its subnet; its gateway is the first address.
        Ok(configs.iter().find_map(|c| {
            let (addr, _) = c.subnet.as_deref()?.split_once('/')?;
            let ip: std::net::Ipv4Addr = addr.parse().ok()?;
            Some(std::net::Ipv4Addr::from(u32::from(ip) + 1).to_string())
        }))
    }

    async fn import_image(&self, name: &str, rootfs_tar: Vec<u8>) -> Result<()> {
        let (repo, tag) = split_image(name);
        let options =
            CreateImageOptions { from_src: Some("-".into()), repo: Some(repo), tag: Some(tag), ..Default::default() };
        let mut stream = self.docker.create_image(Some(options), Some(bollard::body_full(rootfs_tar.into())), None);
        while let Some(item) = stream.next().await {
            item.map_err(call("import_image"))?;
        }
        Ok(())
    }

    async fn version(&self) -> Result<String> {
        let v = self.docker.version().await.map_err(call("version"))?;
        Ok(format!("DockerVersion: {}", v.version.unwrap_or_default()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_engine_timestamps() {
        assert_eq!(parse_rfc3339_ms("1970-01-01T00:00:01.5Z"), Some(1500));
        assert_eq!(parse_rfc3339_ms("2026-11-24T21:25:18.250123456Z"), Some(1_795_555_518_250));
        assert_eq!(parse_rfc3339_ms("garbage"), None);
    }

    #[test]
    fn splits_image_references() {
        assert_eq!(split_image("nginx"), ("nginx".into(), "latest".into()));
        assert_eq!(split_image("wharf-echo:v2"), ("wharf-echo".into(), "v2".into()));
        assert_eq!(split_image("127.0.0.1:5000/app"), ("127.0.0.1:5000/app".into(), "latest".into()));
        assert_eq!(split_image("127.0.0.1:5000/app:v1"), ("127.0.0.1:5000/app".into(), "v1".into()));
        assert_eq!(split_image("repo@sha256:abc"), ("repo".into(), "sha256:abc".into()));
    }
}
