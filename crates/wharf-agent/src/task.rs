//! One task's life on this host, as a small state machine driven by the desired state the
//! control plane streams: pull → create → start (in dependsOn order) → RUNNING → monitor →
//! stop (SIGTERM, then SIGKILL after stopTimeout) → STOPPED → containers removed. Every
//! transition is reported with `SubmitTaskStateChange`. A restarted agent re-adopts a
//! RUNNING task's containers instead of starting them again.

use crate::agent::Agent;
use crate::pause::PAUSE_IMAGE;
use crate::runtime::{ContainerRuntime, ContainerStatus, RegistryAuth};
use crate::spec::{container_spec, start_order, task_id};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use wharf_types::agent::{Assignment, ContainerHealth, TaskNetwork, TaskReport, labels};
use wharf_types::ecs::{HealthStatus, LaunchType, TaskStatus};

/// How long a dependent container waits for its dependency's condition when the task
/// definition gives no startTimeout.
const DEFAULT_START_TIMEOUT: Duration = Duration::from_secs(180);
const TICK: Duration = Duration::from_millis(300);

/// Why a task stopped, as the agent reports it.
#[derive(Debug, Clone)]
struct StopCause {
    reason: String,
}

#[derive(Debug, Clone, Default)]
struct Slot {
    name: String,
    id: Option<String>,
    essential: bool,
    stop_timeout: i64,
    /// (containerPort, hostPort, protocol)
    bindings: Vec<(u16, u16, String)>,
    digest: Option<String>,
    exit_code: Option<i64>,
    reason: Option<String>,
    reported_stopped: bool,
    health: Option<String>,
}

pub(crate) struct TaskRun<R: ContainerRuntime> {
    agent: Arc<Agent<R>>,
    desired: watch::Receiver<Assignment>,
    slots: Vec<Slot>,
    pull_started: Option<f64>,
    pull_stopped: Option<f64>,
    /// The pause container holding an awsvpc task's network namespace.
    pause: Option<String>,
    /// The cluster the task belongs to (a Fargate host serves several).
    cluster: String,
    /// The owner label value this task's containers carry (instance ARN or Fargate host).
    owner: String,
    /// awslogs shippers; the task waits for them before removing its containers.
    shippers: Vec<tokio::task::JoinHandle<()>>,
}

fn now() -> f64 {
    wharf_types::now()
}

impl<R: ContainerRuntime> TaskRun<R> {
    pub(crate) fn new(agent: Arc<Agent<R>>, owner: String, desired: watch::Receiver<Assignment>) -> Self {
        let a = desired.borrow().clone();
        let cluster = a.task.cluster_arn.rsplit('/').next().unwrap_or_default().to_string();
        let slots = a
            .task_definition
            .container_definitions
            .iter()
            .map(|d| Slot {
                name: d.name.clone().unwrap_or_default(),
                essential: d.essential.unwrap_or(true),
                stop_timeout: d
                    .extra
                    .get("stopTimeout")
                    .and_then(Value::as_i64)
                    .unwrap_or(agent.config.container_stop_timeout_secs),
                ..Default::default()
            })
            .collect();
        TaskRun {
            agent,
            desired,
            slots,
            pull_started: None,
            pull_stopped: None,
            pause: None,
            cluster,
            owner,
            shippers: vec![],
        }
    }

    fn assignment(&self) -> Assignment {
        self.desired.borrow().clone()
    }

    fn arn(&self) -> String {
        self.desired.borrow().task.task_arn.clone()
    }

    /// Runs the task to completion. Returns when it is STOPPED and cleaned up.
    pub(crate) async fn run(mut self) {
        let a = self.assignment();
        let existing = self.existing().await;
        if a.task.desired_status == TaskStatus::Stopped {
            self.adopt(&existing);
            return self.stop(StopCause { reason: a.task.stopped_reason.clone().unwrap_or_default() }).await;
        }
        let all_present = self.slots.iter().all(|s| existing.get(&s.name).is_some_and(|c| c.started))
            && (crate::spec::network_mode(&a) != "awsvpc" || existing.contains_key(labels::PAUSE_CONTAINER));
        if all_present && a.task.last_status == TaskStatus::Running {
            tracing::info!(task = %a.task.task_arn, "re-adopting running containers");
            self.adopt(&existing);
        } else {
            for c in existing.values() {
                let _ = self.agent.runtime.remove(&c.id).await;
            }
            if let Err(cause) = self.start().await {
                return self.stop(cause).await;
            }
        }
        let cause = self.monitor().await;
        self.stop(cause).await;
    }

    /// This task's containers already on the host (after an agent restart), by name.
    async fn existing(&self) -> HashMap<String, ContainerStatus> {
        let label = format!("{}={}", labels::TASK_ARN, self.arn());
        match self.agent.runtime.list_labelled(&label).await {
            Ok(list) => {
                list.into_iter().filter_map(|c| Some((c.labels.get(labels::CONTAINER_NAME)?.clone(), c))).collect()
            }
            Err(e) => {
                tracing::warn!(error = %e, "listing containers failed");
                HashMap::new()
            }
        }
    }

    fn adopt(&mut self, existing: &HashMap<String, ContainerStatus>) {
        let a = self.assignment();
        let task = a.task.clone();
        // Lines written while no agent was running are not shipped again from the start.
        let since = wharf_types::now() as i64;
        for def in &a.task_definition.container_definitions {
            let name = def.name.clone().unwrap_or_default();
            if let (Some(c), Some(logs)) = (existing.get(&name), crate::logs::awslogs(def, task_id(&task.task_arn))) {
                self.shippers.push(tokio::spawn(crate::logs::ship(self.agent.clone(), c.id.clone(), logs, since)));
            }
        }
        self.pause = existing.get(labels::PAUSE_CONTAINER).map(|c| c.id.clone());
        for slot in &mut self.slots {
            if let Some(c) = existing.get(&slot.name) {
                slot.id = Some(c.id.clone());
            }
            if let Some(reported) = task.containers.iter().find(|c| c.name == slot.name) {
                slot.bindings = reported
                    .network_bindings
                    .iter()
                    .filter_map(|b| {
                        Some((
                            u16::try_from(b.container_port?).ok()?,
                            u16::try_from(b.host_port?).ok()?,
                            b.protocol.clone().unwrap_or_else(|| "tcp".into()),
                        ))
                    })
                    .collect();
                slot.digest.clone_from(&reported.image_digest);
            }
        }
    }

    async fn report(&self, status: TaskStatus, reason: Option<&str>) -> bool {
        let a = self.assignment();
        let containers: Vec<Value> = self
            .slots
            .iter()
            .map(|s| {
                let container_status = match (status, s.exit_code) {
                    (TaskStatus::Stopped, _) | (_, Some(_)) => TaskStatus::Stopped,
                    (TaskStatus::Running, None) if s.id.is_some() => TaskStatus::Running,
                    _ => TaskStatus::Pending,
                };
                let mut c = json!({
                    "containerName": s.name,
                    "status": container_status,
                    "networkBindings": s.bindings.iter().map(|(cp, hp, proto)| json!({
                        "bindIP": self.agent.config.port_bind_ip, "containerPort": cp, "hostPort": hp, "protocol": proto
                    })).collect::<Vec<_>>(),
                });
                if let Some(id) = &s.id {
                    c["runtimeId"] = json!(id);
                }
                if let Some(d) = &s.digest {
                    c["imageDigest"] = json!(d);
                }
                if let Some(code) = s.exit_code {
                    c["exitCode"] = json!(code);
                }
                if let Some(r) = &s.reason {
                    c["reason"] = json!(r);
                }
                c
            })
            .collect();
        let mut body = json!({
            "cluster": self.cluster,
            "task": a.task.task_arn,
            "status": status,
            "containers": containers,
        });
        if let Some(r) = reason.filter(|r| !r.is_empty()) {
            body["reason"] = json!(r);
        }
        if let Some(t) = self.pull_started {
            body["pullStartedAt"] = json!(t);
        }
        if let Some(t) = self.pull_stopped {
            body["pullStoppedAt"] = json!(t);
        }
        if status == TaskStatus::Stopped {
            body["executionStoppedAt"] = json!(now());
        }
        for attempt in 0..5u32 {
            match self.agent.client.ecs("SubmitTaskStateChange", &body).await {
                Ok(_) => return true,
                // The control plane refused the report (the task or cluster is gone):
                // repeating it cannot help, and nobody is waiting for it.
                Err(crate::client::ClientError::Api { status: 400..=499, code, message }) => {
                    tracing::warn!(task = %a.task.task_arn, %status, %code, %message, "state report refused");
                    return true;
                }
                Err(e) => {
                    tracing::warn!(task = %a.task.task_arn, %status, error = %e, "state report failed");
                    tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                }
            }
        }
        false
    }

    /// Pulls `image` (with `credentials` from `repositoryCredentials`, else the agent's own
    /// registry token when the image is in this Wharf's registry).
    async fn pull(&mut self, image: &str, credentials: Option<RegistryAuth>) -> Result<(), String> {
        use crate::agent::PullBehavior;
        let agent = &self.agent;
        // One pull per image at a time: tasks starting together wait for the same attempt.
        let lock = agent.pull_lock(image);
        let _guard = lock.lock().await;
        let present = agent.runtime.image_present(image).await.unwrap_or(false);
        let pull = match agent.config.pull_behavior {
            PullBehavior::PreferCached | PullBehavior::Once => !present,
            PullBehavior::Always => true,
            // A cached image whose registry just failed us is used without asking again.
            PullBehavior::Default => !(present && agent.pull_failed_recently(image)),
        };
        if !pull {
            return Ok(());
        }
        let auth = match credentials {
            Some(c) => Some(c),
            None => agent.registry_token.auth_for(&agent.client, image).await,
        };
        match agent.runtime.pull(image, auth.as_ref()).await {
            Ok(()) => Ok(()),
            // ECS's default: fall back to the cached image when the pull fails.
            Err(_) if present && agent.config.pull_behavior == PullBehavior::Default => {
                agent.note_pull_failure(image);
                Ok(())
            }
            Err(e) => Err(format!("CannotPullContainerError: {e}")),
        }
    }

    async fn start(&mut self) -> Result<(), StopCause> {
        let a = self.assignment();
        self.pull_started = Some(now());
        self.report(TaskStatus::Pending, None).await;
        let defs = a.task_definition.container_definitions.clone();
        let mut pulled: Vec<&str> = vec![];
        for def in &defs {
            let Some(image) = def.image.as_deref() else { continue };
            if pulled.contains(&image) {
                continue;
            }
            pulled.push(image);
            let pull = match crate::secrets::repository_credentials(&self.agent.client, def, image).await {
                Ok(credentials) => self.pull(image, credentials).await,
                Err(reason) => Err(reason),
            };
            if let Err(reason) = pull {
                self.pull_stopped = Some(now());
                for (slot, def) in self.slots.iter_mut().zip(&defs) {
                    if def.image.as_deref() == Some(image) {
                        slot.reason = Some(reason.clone());
                    }
                }
                return Err(StopCause { reason });
            }
        }
        self.pull_stopped = Some(now());
        // Every container's secrets before any container starts, as ECS reads them as task
        // resources: a missing one stops the task with nothing started.
        let mut secrets = Vec::with_capacity(defs.len());
        for (i, def) in defs.iter().enumerate() {
            match crate::secrets::environment(&self.agent.client, def).await {
                Ok(env) => secrets.push(env),
                Err(reason) => {
                    self.slots[i].reason = Some(reason.clone());
                    return Err(StopCause { reason });
                }
            }
        }
        self.report(TaskStatus::Activating, None).await;
        if crate::spec::network_mode(&a) == "awsvpc" {
            self.start_pause(&a).await?;
        }

        let agent = self.agent.clone();
        let cfg = &agent.config;
        for i in start_order(&defs) {
            let def = &defs[i];
            self.wait_dependencies(def).await?;
            let mut spec = container_spec(&a, def, &self.cluster, &self.owner, &cfg.port_bind_ip);
            if let Some(pause) = &self.pause {
                spec.network_mode = format!("container:{pause}");
            }
            // What ECS puts in every container's environment; the task's own variables,
            // listed after, win where they overlap.
            let fargate = a.task.launch_type == Some(LaunchType::Fargate) || a.task.capacity_provider_name.is_some();
            let mut env = vec![
                format!("AWS_EXECUTION_ENV={}", if fargate { "AWS_ECS_FARGATE" } else { "AWS_ECS_EC2" }),
                format!("AWS_REGION={}", cfg.region),
                format!("AWS_DEFAULT_REGION={}", cfg.region),
            ];
            if let Some(base) = self.agent.metadata_base() {
                let token = crate::metadata::token(&a.task.task_arn, def.name.as_deref().unwrap_or_default());
                env.push(format!("ECS_CONTAINER_METADATA_URI_V4={base}/v4/{token}"));
                env.push(format!("ECS_CONTAINER_METADATA_URI={base}/v3/{token}"));
                env.push(format!("ECS_AGENT_URI={base}/api/{token}"));
            }
            env.append(&mut spec.env);
            env.extend(std::mem::take(&mut secrets[i]).into_iter().map(|(k, v)| format!("{k}={v}")));
            spec.env = env;
            spec.links = def
                .extra
                .get("links")
                .and_then(Value::as_array)
                .map(|l| {
                    l.iter()
                        .filter_map(Value::as_str)
                        .filter_map(|link| {
                            let (target, alias) = link.split_once(':').unwrap_or((link, link));
                            let slot = self.slots.iter().find(|s| s.name == target)?;
                            Some(format!("{}:{alias}", slot.id.as_ref()?))
                        })
                        .collect()
                })
                .unwrap_or_default();
            spec.volumes_from = def
                .volumes_from
                .iter()
                .filter_map(|v| {
                    let src = v.get("sourceContainer")?.as_str()?;
                    let id = self.slots.iter().find(|s| s.name == src)?.id.clone()?;
                    Some(if v.get("readOnly").and_then(Value::as_bool) == Some(true) { format!("{id}:ro") } else { id })
                })
                .collect();
            let awslogs = crate::logs::awslogs(def, task_id(&a.task.task_arn));
            if let Some(logs) = &awslogs
                && let Err(reason) = crate::logs::prepare(&self.agent.client, logs).await
            {
                self.slots[i].reason = Some(reason.clone());
                return Err(StopCause { reason });
            }
            let mut last_err = String::new();
            let mut started = None;
            for _ in 0..5 {
                for p in spec.ports.iter_mut().filter(|p| p.protocol != "udp") {
                    if self.agent.is_dynamic(p.host_port, &spec.network_mode) {
                        p.host_port = self.agent.allocate_port();
                    }
                }
                let id = match self.agent.runtime.create(&spec).await {
                    Ok(id) => id,
                    Err(e) => {
                        last_err = e.to_string();
                        break;
                    }
                };
                match self.agent.runtime.start(&id).await {
                    Ok(()) => {
                        started = Some(id);
                        break;
                    }
                    Err(e) => {
                        last_err = e.to_string();
                        let _ = self.agent.runtime.remove(&id).await;
                        // A dynamic port someone else took meanwhile: pick again.
                        if !last_err.contains("port is already allocated")
                            && !last_err.contains("address already in use")
                        {
                            break;
                        }
                    }
                }
            }
            let slot = &mut self.slots[i];
            let Some(id) = started else {
                let reason = format!("CannotStartContainerError: {last_err}");
                slot.reason = Some(reason.clone());
                return Err(StopCause { reason });
            };
            // awsvpc tasks have no host bindings: they are reached at their own address.
            if self.pause.is_none() {
                slot.bindings =
                    spec.ports.iter().map(|p| (p.container_port, p.host_port, p.protocol.clone())).collect();
            }
            slot.digest = self.agent.runtime.image_digest(&spec.image).await.ok().flatten();
            if let Some(logs) = awslogs {
                self.shippers.push(tokio::spawn(crate::logs::ship(self.agent.clone(), id.clone(), logs, 0)));
            }
            slot.id = Some(id);
        }
        self.report(TaskStatus::Running, None).await;
        Ok(())
    }

    /// Creates and starts the pause container of an awsvpc task and reports its address.
    async fn start_pause(&mut self, a: &Assignment) -> Result<(), StopCause> {
        let runtime = &self.agent.runtime;
        let fail = |e: crate::runtime::RuntimeError| StopCause { reason: format!("ResourceInitializationError: {e}") };
        if !runtime.image_present(PAUSE_IMAGE).await.map_err(fail)? {
            let tar = crate::pause::single_file_tar("pause", &crate::pause::pause_elf());
            runtime.import_image(PAUSE_IMAGE, tar).await.map_err(fail)?;
        }
        let td = &a.task_definition;
        let mut labels_map = HashMap::new();
        labels_map.insert(labels::CLUSTER.to_string(), self.cluster.clone());
        labels_map.insert(labels::TASK_ARN.to_string(), a.task.task_arn.clone());
        labels_map.insert(labels::CONTAINER_NAME.to_string(), labels::PAUSE_CONTAINER.to_string());
        labels_map.insert(labels::INSTANCE.to_string(), self.owner.clone());
        let hostname =
            td.container_definitions.iter().find_map(|d| d.extra.get("hostname")?.as_str().map(str::to_string));
        let spec = crate::runtime::ContainerSpec {
            name: format!("ecs-{}-{}-internalecspause-{}", td.family, td.revision, wharf_types::hex_id(12)),
            image: PAUSE_IMAGE.into(),
            entrypoint: Some(vec!["/pause".into()]),
            labels: labels_map,
            network_mode: "bridge".into(),
            hostname,
            ..Default::default()
        };
        let id = runtime.create(&spec).await.map_err(fail)?;
        self.pause = Some(id.clone());
        runtime.start(&id).await.map_err(fail)?;
        let status = runtime.inspect(&id).await.map_err(fail)?.unwrap_or_default();
        let (Some(ip), Some(mac)) = (status.ip_address, status.mac_address) else {
            return Err(StopCause {
                reason: "ResourceInitializationError: the task's network namespace got no address".into(),
            });
        };
        let report = TaskReport {
            cluster: self.cluster.clone(),
            task: a.task.task_arn.clone(),
            containers: vec![],
            network: Some(TaskNetwork { private_ipv4_address: ip, mac_address: mac }),
        };
        self.agent.report_task(&report).await;
        Ok(())
    }

    /// Waits until every container `def` depends on meets its condition.
    async fn wait_dependencies(&self, def: &wharf_types::ecs::ContainerDefinition) -> Result<(), StopCause> {
        let Some(deps) = def.extra.get("dependsOn").and_then(Value::as_array) else { return Ok(()) };
        let timeout =
            def.extra.get("startTimeout").and_then(Value::as_u64).map_or(DEFAULT_START_TIMEOUT, Duration::from_secs);
        let deadline = Instant::now() + timeout;
        for dep in deps {
            let (Some(target), Some(condition)) =
                (dep.get("containerName").and_then(Value::as_str), dep.get("condition").and_then(Value::as_str))
            else {
                continue;
            };
            loop {
                let id = self.slots.iter().find(|s| s.name == target).and_then(|s| s.id.clone());
                let status = match &id {
                    Some(id) => self.agent.runtime.inspect(id).await.ok().flatten(),
                    None => None,
                };
                let met = match (condition, &status) {
                    ("START", Some(s)) => s.started,
                    ("COMPLETE", Some(s)) => s.exit_code.is_some(),
                    ("SUCCESS", Some(s)) if s.exit_code.is_some_and(|c| c != 0) => {
                        return Err(StopCause {
                            reason: format!(
                                "Dependency container {target} exited with a non-zero code; {} cannot start (dependsOn SUCCESS).",
                                def.name.clone().unwrap_or_default()
                            ),
                        });
                    }
                    ("SUCCESS", Some(s)) => s.exit_code == Some(0),
                    ("HEALTHY", Some(s)) => s.health.as_deref() == Some("healthy"),
                    _ => false,
                };
                if met {
                    break;
                }
                // StopTask while waiting: stop now, not when the dependency times out.
                let stopping = {
                    let a = self.desired.borrow();
                    (a.task.desired_status == TaskStatus::Stopped)
                        .then(|| a.task.stopped_reason.clone().unwrap_or_default())
                };
                if let Some(reason) = stopping {
                    return Err(StopCause { reason });
                }
                if Instant::now() > deadline {
                    return Err(StopCause {
                        reason: format!(
                            "DependencyTimeoutError: {target} did not reach {condition} within {}s",
                            timeout.as_secs()
                        ),
                    });
                }
                tokio::time::sleep(TICK).await;
            }
        }
        Ok(())
    }

    /// Watches the running task until it must stop; returns why.
    async fn monitor(&mut self) -> StopCause {
        let mut last_health_report: Option<Vec<ContainerHealth>> = None;
        loop {
            let a = self.assignment();
            if a.task.desired_status == TaskStatus::Stopped {
                return StopCause { reason: a.task.stopped_reason.clone().unwrap_or_default() };
            }
            let mut essential_exit = None;
            for slot in &mut self.slots {
                let Some(id) = slot.id.clone() else { continue };
                let inspected = self.agent.runtime.inspect(&id).await;
                if inspected.is_ok() {
                    self.agent.engine_answered();
                }
                match inspected {
                    Ok(Some(s)) => {
                        slot.health = s.health.clone();
                        if let Some(code) = s.exit_code.filter(|_| !s.running) {
                            slot.exit_code = Some(code);
                            if s.oom_killed {
                                slot.reason = Some("OutOfMemoryError: Container killed due to memory usage".into());
                            }
                            if slot.essential {
                                essential_exit = Some(slot.name.clone());
                            }
                        }
                    }
                    Ok(None) => {
                        slot.reason = Some("Container was removed outside of Wharf".into());
                        slot.exit_code.get_or_insert(137);
                        if slot.essential {
                            essential_exit = Some(slot.name.clone());
                        }
                    }
                    // The engine is away (restarting, or its socket cut): nothing is known
                    // about the container, so nothing changes until it answers again.
                    Err(e) => self.agent.engine_failed(&e),
                }
            }
            if let Some(name) = essential_exit {
                tracing::info!(task = %a.task.task_arn, container = %name, "essential container exited");
                return StopCause { reason: "Essential container in task exited".into() };
            }
            // A non-essential container that exited is reported once.
            if self.slots.iter().any(|s| s.exit_code.is_some() && !s.reported_stopped)
                && self.report(TaskStatus::Running, None).await
            {
                for s in self.slots.iter_mut().filter(|s| s.exit_code.is_some()) {
                    s.reported_stopped = true;
                }
            }
            let health: Vec<ContainerHealth> = self
                .slots
                .iter()
                .filter(|s| s.health.is_some())
                .map(|s| ContainerHealth {
                    container_name: s.name.clone(),
                    health_status: match s.health.as_deref() {
                        Some("healthy") => HealthStatus::Healthy,
                        Some("unhealthy") => HealthStatus::Unhealthy,
                        _ => HealthStatus::Unknown,
                    },
                })
                .collect();
            if !health.is_empty() && last_health_report.as_ref() != Some(&health) {
                let report = TaskReport {
                    cluster: self.cluster.clone(),
                    task: a.task.task_arn.clone(),
                    containers: health.clone(),
                    network: None,
                };
                if self.agent.report_task(&report).await {
                    last_health_report = Some(health);
                }
            }
            // A RUNNING the control plane never got (it was down) is sent again.
            if a.task.last_status != TaskStatus::Running && a.task.last_status != TaskStatus::Stopped {
                self.report(TaskStatus::Running, None).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(TICK) => {}
                changed = self.desired.changed() => {
                    if changed.is_err() {
                        // The agent dropped this task: the control plane no longer lists it.
                        return StopCause { reason: "Task is no longer assigned to this container instance".into() };
                    }
                }
            }
        }
    }

    /// Stops every container (dependents first), reports STOPPED, removes the containers.
    async fn stop(&mut self, cause: StopCause) {
        let a = self.assignment();
        tracing::info!(task = %a.task.task_arn, reason = %cause.reason, "stopping task");
        if self.slots.iter().any(|s| s.id.is_some()) {
            self.report(TaskStatus::Deactivating, Some(&cause.reason)).await;
            self.report(TaskStatus::Stopping, Some(&cause.reason)).await;
        }
        let order = start_order(&a.task_definition.container_definitions);
        for i in order.into_iter().rev() {
            let slot = &self.slots[i];
            let Some(id) = slot.id.clone() else { continue };
            if let Err(e) = self.agent.runtime.stop(&id, slot.stop_timeout).await {
                tracing::warn!(error = %e, container = %slot.name, "stop failed");
            }
            if let Ok(Some(s)) = self.agent.runtime.inspect(&id).await {
                let slot = &mut self.slots[i];
                slot.exit_code = s.exit_code.or(slot.exit_code);
                if s.oom_killed {
                    slot.reason = Some("OutOfMemoryError: Container killed due to memory usage".into());
                }
            }
        }
        if self.pause.is_some() {
            self.report(TaskStatus::Deprovisioning, Some(&cause.reason)).await;
        }
        // The control plane may be unreachable; keep trying so the task does not stay
        // RUNNING there forever.
        let mut delay = Duration::from_secs(1);
        while !self.report(TaskStatus::Stopped, Some(&cause.reason)).await {
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(30));
        }
        // Every line the containers wrote reaches CloudWatch Logs before they are removed.
        for shipper in self.shippers.drain(..) {
            if tokio::time::timeout(Duration::from_secs(30), shipper).await.is_err() {
                tracing::warn!(task = %a.task.task_arn, "log shipping did not finish within 30 s");
            }
        }
        for id in self.slots.iter().filter_map(|s| s.id.as_ref()).chain(self.pause.as_ref()) {
            let _ = self.agent.runtime.remove(id).await;
        }
        self.agent.forget(&a.task.task_arn, task_id(&a.task.task_arn));
    }
}
