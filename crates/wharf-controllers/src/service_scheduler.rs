//! The service scheduler and deployment controller (ECS's ROLLING): keeps each service's
//! PRIMARY deployment at `desiredCount` healthy tasks, drains older deployments within
//! minimumHealthyPercent / maximumPercent (see `planner`), replaces tasks that stop or fail
//! their health checks, trips the deployment circuit breaker (and rolls back), and keeps
//! `deployments[]`, the counts and `events[]` true. DAEMON services get one task per ACTIVE
//! instance. Every step re-reads the world; the deployment's state lives in the service
//! document, so a restarted server resumes where it was.

use crate::planner::{TaskView, max_total, min_healthy, plan};
use crate::{Reconciler, Status};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use wharf_core::db::{Versioned, cas_put, encode};
use wharf_core::deployments::{self, LAST_COMPLETED, deployment_load_balancers};
use wharf_core::keys::{Keys, all_of_kind, scope_of_key};
use wharf_core::targets::{self, TargetRef};
use wharf_core::tasks::{RunRequest, launch, launch_on, stop_task};
use wharf_core::{Db, Scoped};
use wharf_store::{Compare, Op, Txn};
use wharf_types::Error;
use wharf_types::ecs::{
    Cluster, ContainerInstance, DeploymentStatus, Failure, HealthStatus, RolloutState, SchedulingStrategy, Service,
    ServiceEvent, ServiceStatus, Task, TaskDefinition, TaskStatus,
};
use wharf_types::elb::TargetGroup;

/// ECS keeps the newest 100 service events.
const MAX_EVENTS: usize = 100;
/// Tasks named per started/stopped event: ECS starts and stops a service's tasks in calls
/// of at most 10 (RunTask's limit) and writes one event per call, so ten thousand tasks
/// are a thousand short events (the newest 100 kept), never one event of ten thousand ids.
const TASKS_PER_EVENT: usize = 10;
/// Private service field: the service is known steady (so the steady-state event is written once).
const STEADY: &str = "wharfSteady";

#[derive(Debug, Clone)]
pub struct ServiceScheduler {
    db: Db,
}

impl ServiceScheduler {
    pub fn new(db: Db) -> Self {
        ServiceScheduler { db }
    }

    async fn run(&self) -> (usize, Vec<String>) {
        let mut changed = 0;
        let mut errors = vec![];
        let services = match self.db.list::<Service>(&all_of_kind("service")).await {
            Ok(s) => s,
            Err(e) => return (0, vec![e.to_string()]),
        };
        for s in services {
            if s.doc.status == ServiceStatus::Inactive {
                continue;
            }
            let Some(scope) = scope_of_key(&s.key) else { continue };
            match self.reconcile(&Scoped::new(scope, self.db.clone()), s).await {
                Ok(true) => changed += 1,
                Ok(false) => {}
                Err(e) => errors.push(e.to_string()),
            }
        }
        (changed, errors)
    }

    /// One step for one service. Returns whether anything changed.
    async fn reconcile(&self, ctx: &Scoped, s: Versioned<Service>) -> Result<bool, Error> {
        let mut svc = s.doc.clone();
        let cluster_name = svc.cluster_arn.rsplit('/').next().unwrap_or_default().to_string();
        let keys = Keys::new(ctx);
        let Some(cluster) = ctx.db.get::<Cluster>(&keys.cluster(&cluster_name)).await? else { return Ok(false) };
        let group = format!("service:{}", svc.service_name);
        let read_tasks = || async {
            let tasks = ctx.db.list_tasks(&keys.tasks(&cluster_name)).await?;
            Ok::<Vec<Arc<Task>>, Error>(
                tasks.into_iter().map(|t| t.doc).filter(|t| t.group.as_ref() == Some(&group)).collect(),
            )
        };
        let all = read_tasks().await?;
        let instances = ctx.db.list::<ContainerInstance>(&keys.instances(&cluster_name)).await?;
        let mut changed = self.sync_targets(ctx, &svc, &cluster_name, &all, &instances).await?;
        let all = if changed { read_tasks().await? } else { all };
        let live: Vec<&Task> = all
            .iter()
            .map(|t| &**t)
            .filter(|t| t.desired_status != TaskStatus::Stopped && t.last_status.holds_resources())
            .collect();
        let Some(primary_id) =
            svc.deployments.iter().find(|d| d.status == DeploymentStatus::Primary).map(|d| d.id.clone())
        else {
            return Ok(false);
        };
        let mut definitions: HashMap<String, TaskDefinition> = HashMap::new();
        for d in &svc.deployments {
            if !definitions.contains_key(&d.task_definition) {
                let td = wharf_core::task_definitions::require(ctx, &d.task_definition, "taskDefinition").await?;
                definitions.insert(d.task_definition.clone(), td.doc);
            }
        }
        let now = wharf_types::now();
        let grace = svc.health_check_grace_period_seconds.unwrap_or(0) as f64;
        // What the load balancers report for each live task of a deployment with target groups.
        let lb_health = self.lb_health(ctx, &svc, &all).await?;
        let view = |t: &Task| -> TaskView {
            let checked = definitions
                .get(&t.task_definition_arn)
                .is_some_and(|td| td.container_definitions.iter().any(|c| c.extra.contains_key("healthCheck")));
            let running = t.last_status == TaskStatus::Running;
            let past_grace = t.started_at.is_some_and(|s| now - s >= grace);
            let health = t.health_status;
            let lb = lb_health.get(&t.task_arn);
            TaskView {
                primary: t.started_by.as_deref() == Some(primary_id.as_str()),
                healthy: running && (!checked || health == Some(HealthStatus::Healthy)) && lb.is_none_or(|h| h.healthy),
                unhealthy: running
                    && past_grace
                    && ((checked && health == Some(HealthStatus::Unhealthy))
                        || lb.is_some_and(|h| h.failing.is_some())),
            }
        };
        // Tasks on instances that are draining (or lost) are replaced like an old
        // deployment's: new ones start elsewhere first, within the same bounds.
        let leaving: Vec<&str> = instances
            .iter()
            .filter(|i| i.doc.status != "ACTIVE" || !i.doc.agent_connected)
            .map(|i| i.doc.container_instance_arn.as_str())
            .collect();
        let views: Vec<TaskView> = live
            .iter()
            .map(|t| {
                let mut v = view(t);
                if t.container_instance_arn.as_deref().is_some_and(|a| leaving.contains(&a)) {
                    v.primary = false;
                }
                v
            })
            .collect();
        let mut events: Vec<String> = vec![];
        let mut history = Txn::default();

        // Circuit breaker: PRIMARY tasks that stopped on their own count as failures.
        let failed = all
            .iter()
            .filter(|t| t.started_by.as_deref() == Some(primary_id.as_str()) && t.last_status == TaskStatus::Stopped)
            .filter(|t| !matches!(t.stop_code.as_deref(), Some("ServiceSchedulerInitiated" | "UserInitiated")))
            .count() as i64;
        let breaker = svc.deployment_configuration.deployment_circuit_breaker.clone();
        let threshold = ((svc.desired_count + 1) / 2).clamp(3, 200);
        let mut primary_failed =
            svc.deployments.iter().any(|d| d.id == primary_id && d.rollout_state == Some(RolloutState::Failed));
        if let Some(p) = svc.deployments.iter_mut().find(|d| d.id == primary_id)
            && p.failed_tasks != failed
        {
            p.failed_tasks = failed;
            p.updated_at = now;
            changed = true;
        }
        // It watches a deployment only while it rolls out: crashes after COMPLETED are replaced.
        let in_progress =
            svc.deployments.iter().any(|d| d.id == primary_id && d.rollout_state == Some(RolloutState::InProgress));
        if breaker.as_ref().is_some_and(|b| b.enable) && in_progress && failed >= threshold {
            primary_failed = true;
            changed = true;
            let rollback_to = svc.extra.get(LAST_COMPLETED).and_then(Value::as_str).map(str::to_string);
            for d in svc.deployments.iter_mut().filter(|d| d.id == primary_id) {
                d.rollout_state = Some(RolloutState::Failed);
                d.rollout_state_reason = Some("ECS deployment circuit breaker: tasks failed to start.".into());
                d.updated_at = now;
            }
            events.push(format!(
                "(service {}) (deployment {primary_id}) deployment failed: tasks failed to start.",
                svc.service_name
            ));
            if breaker.as_ref().is_some_and(|b| b.rollback)
                && let Some(td) = rollback_to
            {
                for d in svc.deployments.iter_mut().filter(|d| d.status == DeploymentStatus::Primary) {
                    d.status = DeploymentStatus::Active;
                }
                let dep = deployments::new_deployment(&svc, &td, now);
                deployments::record(ctx, &svc, &dep, Some(&primary_id), &mut history).await?;
                events.push(format!(
                    "(service {}) rolling back to deployment {} ({td}) after a circuit breaker failure.",
                    svc.service_name, dep.id
                ));
                svc.task_definition = Some(td.clone());
                svc.deployments.insert(0, dep);
                svc.extra.remove(STEADY);
                return self.write(ctx, &s, svc, events, history).await.map(|_| true);
            }
            if let Some(p) = svc.deployments.iter().find(|d| d.id == primary_id) {
                let reason = "ECS deployment circuit breaker: tasks failed to start.";
                deployments::finish(ctx, &svc, p, "STOPPED", reason, &mut history).await?;
            }
        }

        let desired = if svc.status == ServiceStatus::Active { svc.desired_count } else { 0 };
        let (min, max) = (
            svc.deployment_configuration.minimum_healthy_percent.unwrap_or(100),
            svc.deployment_configuration.maximum_percent.unwrap_or(200),
        );
        let (stop, start) = if svc.scheduling_strategy == SchedulingStrategy::Daemon {
            self.daemon_plan(ctx, &svc, &cluster_name, &live, &all, &primary_id, min).await?
        } else {
            let p = plan(&views, desired, min, max, !primary_failed);
            // Tasks asked to stop hold their place under maximumPercent until they have stopped.
            let stopping = all
                .iter()
                .filter(|t| t.desired_status == TaskStatus::Stopped && t.last_status != TaskStatus::Stopped)
                .count();
            let room = (max_total(desired, max) as usize).saturating_sub(live.len() + stopping);
            (p.stop.into_iter().map(|i| live[i].task_arn.clone()).collect(), Starts::Count(p.start.min(room)))
        };

        // Tasks this activation wrote (stopped or started), for the counts below.
        let mut touched: HashMap<String, Task> = HashMap::new();
        let mut stopped = vec![];
        for arn in &stop {
            let unhealthy = live.iter().zip(&views).any(|(t, v)| &t.task_arn == arn && v.unhealthy);
            let elb = lb_health.get(arn).and_then(|h| h.failing.clone());
            let reason = if let (true, Some(tg)) = (unhealthy, elb) {
                format!("Task failed ELB health checks in (target-group {tg})")
            } else if unhealthy {
                "Task failed container health checks".to_string()
            } else {
                format!("Scaling activity initiated by (deployment {primary_id})")
            };
            let id = arn.rsplit('/').next().unwrap_or_default();
            let t = stop_task(ctx, &cluster_name, id, &reason, "ServiceSchedulerInitiated").await?;
            touched.insert(t.task_arn.clone(), t);
            stopped.push(format!("(task {id})"));
        }
        if !stopped.is_empty() {
            changed = true;
            for batch in stopped.chunks(TASKS_PER_EVENT) {
                events.push(format!(
                    "(service {}) has stopped {} running tasks: {}.",
                    svc.service_name,
                    batch.len(),
                    batch.join(" ")
                ));
            }
        }

        let primary_td =
            svc.deployments.iter().find(|d| d.id == primary_id).map(|d| d.task_definition.clone()).unwrap_or_default();
        if let Some(td) = definitions.get(&primary_td) {
            let request = RunRequest {
                task_definition: primary_td.clone(),
                launch_type: svc.launch_type,
                capacity_provider_strategy: svc.capacity_provider_strategy.clone().filter(|s| !s.is_empty()),
                group: Some(group.clone()),
                started_by: Some(primary_id.clone()),
                network_configuration: svc.network_configuration.clone(),
                placement_constraints: svc.placement_constraints.clone(),
                placement_strategy: if svc.placement_strategy.is_empty() {
                    // ECS's default for services: spread across zones, then instances.
                    vec![
                        json!({"type": "spread", "field": "attribute:ecs.availability-zone"}),
                        json!({"type": "spread", "field": "instanceId"}),
                    ]
                } else {
                    svc.placement_strategy.clone()
                },
                platform_version: svc.platform_version.clone(),
                enable_execute_command: svc.enable_execute_command,
                ..Default::default()
            };
            let (started, failures) = match start {
                Starts::Count(0) => (vec![], vec![]),
                Starts::Count(n) => match launch(ctx, &cluster.doc, td, &request, n).await {
                    Ok(r) => r,
                    Err(e) => (vec![], vec![failure(e)]),
                },
                Starts::On(instances) => {
                    let mut all = (vec![], vec![]);
                    for arn in instances {
                        let mut r = request.clone();
                        r.container_instances = vec![arn];
                        match launch_on(ctx, &cluster.doc, td, &r).await {
                            Ok((t, f)) => {
                                all.0.extend(t);
                                all.1.extend(f);
                            }
                            Err(e) => all.1.push(failure(e)),
                        }
                    }
                    all
                }
            };
            for t in &started {
                touched.insert(t.task_arn.clone(), t.clone());
            }
            if !started.is_empty() {
                changed = true;
                let names: Vec<String> = started
                    .iter()
                    .map(|t| format!("(task {})", t.task_arn.rsplit('/').next().unwrap_or_default()))
                    .collect();
                for batch in names.chunks(TASKS_PER_EVENT) {
                    events.push(format!(
                        "(service {}) has started {} tasks: {}.",
                        svc.service_name,
                        batch.len(),
                        batch.join(" ")
                    ));
                }
                svc.extra.remove(STEADY);
            }
            if let Some(f) = failures.first() {
                let reason = match &f.arn {
                    Some(arn) => format!("{} on {arn}", f.reason),
                    None => f.reason.clone(),
                };
                let message = format!(
                    "(service {}) was unable to place a task because no container instance met all of its requirements. Reason: {reason}",
                    svc.service_name
                );
                if svc.events.first().map(|e| &e.message) != Some(&message) {
                    events.push(message);
                    changed = true;
                }
            }
        }

        // Counts, drained deployments, completion.
        // What was read at the start plus what this activation wrote (re-reading 10,000 tasks
        // here cost more than the placement itself); the next activation re-reads anyway.
        let mut fresh: Vec<Arc<Task>> =
            all.iter().map(|t| touched.remove(&t.task_arn).map_or_else(|| t.clone(), Arc::new)).collect();
        fresh.extend(touched.into_values().map(Arc::new));
        fresh.retain(|t| t.last_status.holds_resources());
        let count = |id: &str, running: bool| {
            fresh
                .iter()
                .filter(|t| t.started_by.as_deref() == Some(id) && (t.last_status == TaskStatus::Running) == running)
                .count() as i64
        };
        let daemon_desired = if svc.scheduling_strategy == SchedulingStrategy::Daemon {
            Some(self.daemon_desired(ctx, &cluster_name).await?)
        } else {
            None
        };
        let before = svc.deployments.clone();
        for d in &mut svc.deployments {
            d.running_count = count(&d.id, true);
            d.pending_count = count(&d.id, false);
            d.desired_count = if d.id == primary_id { daemon_desired.unwrap_or(desired) } else { 0 };
        }
        svc.deployments.retain(|d| d.id == primary_id || d.running_count + d.pending_count > 0);
        svc.running_count = fresh.iter().filter(|t| t.last_status == TaskStatus::Running).count() as i64;
        svc.pending_count = fresh.len() as i64 - svc.running_count;
        if let Some(n) = daemon_desired {
            svc.desired_count = n;
        }
        let healthy_primary = fresh
            .iter()
            .filter(|t| {
                let v = view(t);
                v.primary && v.healthy
            })
            .count() as i64;
        let target = daemon_desired.unwrap_or(desired);
        let steady = svc.deployments.len() == 1
            && healthy_primary == target
            && svc.pending_count == 0
            && svc.running_count == target;
        if steady
            && let Some(p) = svc.deployments.first_mut()
            && p.rollout_state == Some(RolloutState::InProgress)
        {
            p.rollout_state = Some(RolloutState::Completed);
            p.rollout_state_reason = Some(format!("ECS deployment {} completed.", p.id));
            p.updated_at = now;
            events.push(format!("(service {}) (deployment {}) deployment completed.", svc.service_name, p.id));
            svc.extra.insert(LAST_COMPLETED.into(), json!(p.task_definition));
            let done = p.clone();
            deployments::finish(ctx, &svc, &done, "SUCCESSFUL", "Deployment completed.", &mut history).await?;
        }
        if steady && !svc.extra.contains_key(STEADY) {
            svc.extra.insert(STEADY.into(), json!(true));
            events.push(format!("(service {}) has reached a steady state.", svc.service_name));
        }
        if !steady {
            svc.extra.remove(STEADY);
        }
        let counts_changed = svc.deployments != before
            || svc.running_count != s.doc.running_count
            || svc.pending_count != s.doc.pending_count
            || svc.desired_count != s.doc.desired_count
            || svc.extra != s.doc.extra;
        if changed || counts_changed || !events.is_empty() {
            self.write(ctx, &s, svc, events, history).await?;
            return Ok(true);
        }
        Ok(false)
    }

    /// Saves the service with new events (newest first, capped); a lost race waits for the
    /// next activation.
    async fn write(
        &self,
        ctx: &Scoped,
        s: &Versioned<Service>,
        mut svc: Service,
        events: Vec<String>,
        history: Txn,
    ) -> Result<bool, Error> {
        let now = wharf_types::now();
        // Newest first: the last message is the newest; only the newest MAX_EVENTS stay.
        let skip = events.len().saturating_sub(MAX_EVENTS);
        let mut newest: Vec<ServiceEvent> = events
            .into_iter()
            .skip(skip)
            .rev()
            .map(|message| ServiceEvent { id: wharf_types::uuid(), created_at: now, message })
            .collect();
        newest.append(&mut svc.events);
        newest.truncate(MAX_EVENTS);
        svc.events = newest;
        let mut txn = cas_put(&s.key, s.rev, &svc)?;
        txn.compares.extend(history.compares);
        txn.ops.extend(history.ops);
        ctx.db.commit(txn).await
    }

    /// Registers the service's RUNNING tasks with their deployment's target groups, and ends
    /// the deregistration of stopping ones whose targets have drained (the agent is then
    /// told to stop them). Returns whether any task changed.
    async fn sync_targets(
        &self,
        ctx: &Scoped,
        svc: &Service,
        cluster: &str,
        all: &[Arc<Task>],
        instances: &[Versioned<ContainerInstance>],
    ) -> Result<bool, Error> {
        let now = wharf_types::now();
        let mut changed = false;
        let mut groups: HashMap<String, Option<TargetGroup>> = HashMap::new();
        for t in all {
            let held = targets::registered(t);
            let stopping = t.desired_status == TaskStatus::Stopped || t.last_status == TaskStatus::Stopped;
            let wanted = if held.is_empty() && !stopping && t.last_status == TaskStatus::Running {
                let lbs = load_balancers_of(svc, t);
                if lbs.is_empty() {
                    continue;
                }
                let instance = t
                    .container_instance_arn
                    .as_ref()
                    .and_then(|a| instances.iter().find(|i| &i.doc.container_instance_arn == a));
                let mut wanted = vec![];
                for lb in &lbs {
                    let Some(arn) = lb.get("targetGroupArn").and_then(Value::as_str) else { continue };
                    if !groups.contains_key(arn) {
                        groups.insert(arn.to_string(), targets::target_group(ctx, arn).await?);
                    }
                    let Some(Some(group)) = groups.get(arn) else { continue };
                    match target_of(t, instance.map(|i| &i.doc), group, lb) {
                        Some(r) => wanted.push(r),
                        // Not reachable yet (no port bound, no address): next activation.
                        None => break,
                    }
                }
                if wanted.len() < lbs.len() {
                    continue;
                }
                Some(wanted)
            } else if !held.is_empty() && stopping {
                None
            } else {
                continue;
            };
            let id = t.task_arn.rsplit('/').next().unwrap_or_default();
            let key = Keys::new(ctx).task(cluster, id);
            let wrote = ctx
                .db
                .update(|| async {
                    let Some(cur) = ctx.db.get::<Task>(&key).await? else { return Ok((None, false)) };
                    let mut doc = cur.doc.clone();
                    let mut txn = Txn { compares: vec![Compare::ModRevision(key.clone(), cur.rev)], ops: vec![] };
                    match &wanted {
                        Some(list) => {
                            if !targets::registered(&doc).is_empty() || doc.desired_status == TaskStatus::Stopped {
                                return Ok((None, false));
                            }
                            targets::register(ctx, &mut doc, list, now, &mut txn)?;
                        }
                        None => {
                            if targets::registered(&doc).is_empty() {
                                return Ok((None, false));
                            }
                            if targets::drain_until(&doc).is_none() {
                                // Stopped without StopTask (it exited): deregister now.
                                targets::begin_draining(ctx, &mut doc, now, &mut txn).await?;
                            } else if targets::drained(ctx, &doc, now).await? {
                                targets::finish_draining(ctx, &mut doc, &mut txn).await?;
                            } else {
                                return Ok((None, false));
                            }
                        }
                    }
                    doc.version += 1;
                    txn.ops.push(Op::put(&key, encode(&doc)?));
                    Ok((Some(txn), true))
                })
                .await?;
            changed |= wrote;
        }
        Ok(changed)
    }

    /// For each live task of a deployment with load balancers: healthy in every target group
    /// (and registered), or failing in one (the target group's ARN).
    async fn lb_health(
        &self,
        ctx: &Scoped,
        svc: &Service,
        all: &[Arc<Task>],
    ) -> Result<HashMap<String, LbHealth>, Error> {
        let mut out = HashMap::new();
        for t in all.iter().filter(|t| t.desired_status != TaskStatus::Stopped && t.last_status == TaskStatus::Running)
        {
            let lbs = load_balancers_of(svc, t);
            if lbs.is_empty() {
                continue;
            }
            let held = targets::registered(t);
            let mut h = LbHealth { healthy: !held.is_empty(), failing: None };
            for r in &held {
                match targets::health(ctx, r).await?.map(|x| x.state) {
                    Some(s) if s == "healthy" => {}
                    Some(s) if s == "unhealthy" => {
                        h.healthy = false;
                        h.failing.get_or_insert_with(|| r.target_group_arn.clone());
                    }
                    _ => h.healthy = false,
                }
            }
            out.insert(t.task_arn.clone(), h);
        }
        Ok(out)
    }

    async fn daemon_desired(&self, ctx: &Scoped, cluster: &str) -> Result<i64, Error> {
        let instances = ctx.db.list::<ContainerInstance>(&Keys::new(ctx).instances(cluster)).await?;
        Ok(instances.iter().filter(|i| i.doc.status == "ACTIVE").count() as i64)
    }

    /// DAEMON: one PRIMARY task on every ACTIVE instance; tasks on instances that are not
    /// ACTIVE (draining, deregistered) and duplicates go. An older deployment's task is
    /// stopped first (maximumPercent is 100) while minimumHealthyPercent allows, and the new
    /// one starts once no task of the service holds the instance any more.
    #[allow(clippy::too_many_arguments)]
    async fn daemon_plan(
        &self,
        ctx: &Scoped,
        svc: &Service,
        cluster: &str,
        live: &[&Task],
        all: &[Arc<Task>],
        primary: &str,
        min_percent: i64,
    ) -> Result<(Vec<String>, Starts), Error> {
        let instances = ctx.db.list::<ContainerInstance>(&Keys::new(ctx).instances(cluster)).await?;
        let active: Vec<&str> = instances
            .iter()
            .filter(|i| i.doc.status == "ACTIVE")
            .map(|i| i.doc.container_instance_arn.as_str())
            .collect();
        let floor = min_healthy(active.len() as i64, min_percent);
        let mut healthy = live.iter().filter(|t| t.last_status == TaskStatus::Running).count() as i64;
        let mut stop = vec![];
        let mut covered = vec![];
        // PRIMARY tasks first: they keep their instance; older ones give theirs up.
        let mut ordered = live.to_vec();
        ordered.sort_by_key(|t| t.started_by.as_deref() != Some(primary));
        for t in ordered {
            let on = t.container_instance_arn.as_deref().unwrap_or_default();
            let is_primary = t.started_by.as_deref() == Some(primary);
            let running = t.last_status == TaskStatus::Running;
            let go = svc.status != ServiceStatus::Active
                || !active.contains(&on)
                || covered.contains(&on)
                || (!is_primary && (!running || healthy > floor));
            if go {
                healthy -= i64::from(running);
                stop.push(t.task_arn.clone());
            } else if is_primary {
                covered.push(on);
            }
        }
        let holding: Vec<&str> = all
            .iter()
            .filter(|t| t.last_status != TaskStatus::Stopped)
            .filter_map(|t| t.container_instance_arn.as_deref())
            .collect();
        let missing = if svc.status == ServiceStatus::Active {
            active.iter().filter(|a| !holding.contains(a)).map(|a| a.to_string()).collect()
        } else {
            vec![]
        };
        Ok((stop, Starts::On(missing)))
    }
}

/// The `loadBalancers` of the deployment that started `t` (none for a task of no deployment).
fn load_balancers_of(svc: &Service, t: &Task) -> Vec<Value> {
    svc.deployments
        .iter()
        .find(|d| Some(&d.id) == t.started_by.as_ref())
        .map(deployment_load_balancers)
        .unwrap_or_default()
}

/// A task's standing with its load balancers.
#[derive(Debug, Clone)]
struct LbHealth {
    /// Registered, and `healthy` in every target group.
    healthy: bool,
    /// The target group reporting it `unhealthy`.
    failing: Option<String>,
}

/// The target task `t` registers as for load balancer entry `lb` in `group`: for `ip`
/// target groups (awsvpc) the task's address and the container port; for `instance` ones the
/// instance's id and the host port bound to the container port. `None` until known.
fn target_of(t: &Task, instance: Option<&ContainerInstance>, group: &TargetGroup, lb: &Value) -> Option<TargetRef> {
    let container = lb.get("containerName").and_then(Value::as_str)?;
    let port = lb.get("containerPort").and_then(Value::as_i64)?;
    let c = t.containers.iter().find(|c| c.name == container)?;
    let (id, port) = if group.target_type == "ip" {
        let ip = c.network_interfaces.iter().find_map(|n| n.get("privateIpv4Address").and_then(Value::as_str))?;
        (ip.to_string(), port)
    } else {
        let host_port = c.network_bindings.iter().find(|b| b.container_port == Some(port))?.host_port?;
        (instance?.ec2_instance_id.clone()?, host_port)
    };
    Some(TargetRef {
        target_group_arn: group.target_group_arn.clone(),
        target_group: group.target_group_name.clone(),
        id,
        port: u16::try_from(port).ok()?,
    })
}

fn failure(e: Error) -> Failure {
    Failure { arn: None, reason: e.to_string(), detail: None }
}

/// What to start: a number of PRIMARY tasks placed by strategy, or one on each instance.
enum Starts {
    Count(usize),
    On(Vec<String>),
}

impl Reconciler for ServiceScheduler {
    fn name(&self) -> &'static str {
        "service-scheduler"
    }
    fn watch_prefixes(&self) -> Vec<String> {
        // Target health decides deployments; a target the data plane removed ends a drain.
        vec![
            all_of_kind("service"),
            all_of_kind("task"),
            all_of_kind("instance"),
            "/elb/health/".to_string(),
            "/elb/target/".to_string(),
        ]
    }
    fn period(&self) -> Duration {
        Duration::from_secs(2)
    }
    fn settle(&self) -> Duration {
        Duration::from_millis(50)
    }
    async fn activate(&self) -> Status {
        let (changed, errors) = self.run().await;
        Status { changed, errors }
    }
}
