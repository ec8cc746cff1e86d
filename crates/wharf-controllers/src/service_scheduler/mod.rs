//! The service scheduler and deployment controller: keeps each service's PRIMARY deployment at
//! `desiredCount` healthy tasks, moves tasks from older deployments to it as the service's
//! [`strategy`] decides (ECS's rolling update within minimumHealthyPercent / maximumPercent,
//! or one task per ACTIVE instance for DAEMON services), replaces tasks that stop or fail
//! their health checks, trips the deployment circuit breaker (and rolls back), and keeps
//! `deployments[]`, the counts and `events[]` true. Every activation re-reads the world; the
//! deployment's state lives in the service document, so a restarted server resumes where it
//! was.
//!
//! One activation of one service is five steps, each a function below: [`World::observe`]
//! (read the service's tasks, instances and target health; register and drain targets), the
//! circuit breaker ([`breaker`]), the strategy's plan, acting on it ([`stop`], [`start`],
//! and [`held_events`] for tasks scale-in protection keeps), and accounting for it
//! ([`account`]: counts, completion, steady state), written in one compare-and-swap of the
//! service with its events and deployment history.

mod blue_green;
mod strategy;
mod targets;

use crate::planner::TaskView;
use crate::{Reconciler, Status};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use strategy::{Plan, Starts, Strategy};
use targets::LbHealth;
use wharf_core::db::{Versioned, cas_put};
use wharf_core::deployments;
use wharf_core::keys::{Keys, all_of_kind, scope_of_key};
use wharf_core::tasks::{RunRequest, launch, launch_on, stop_task};
use wharf_core::{Db, Scoped};
use wharf_store::Txn;
use wharf_types::Error;
use wharf_types::ecs::{
    Cluster, ContainerInstance, Deployment, DeploymentStatus, Failure, HealthStatus, RolloutState, Service,
    ServiceEvent, ServiceStatus, Task, TaskDefinition, TaskStatus,
};

/// ECS keeps the newest 100 service events.
const MAX_EVENTS: usize = 100;
/// Tasks named per started/stopped event: ECS starts and stops a service's tasks in calls
/// of at most 10 (RunTask's limit) and writes one event per call, so ten thousand tasks
/// are a thousand short events (the newest 100 kept), never one event of ten thousand ids.
const TASKS_PER_EVENT: usize = 10;

#[derive(Debug, Clone)]
pub struct ServiceScheduler {
    db: Db,
    /// Seconds in a minute of AWS's deployment timers (bake times, hook timeouts): 60, or
    /// less for tests (`wharf up --aws-minute-secs`).
    minute: f64,
}

impl ServiceScheduler {
    pub fn new(db: Db) -> Self {
        ServiceScheduler { db, minute: 60.0 }
    }

    /// The same scheduler with AWS's minutes lasting `minute`.
    pub fn with_minute(self, minute: Duration) -> Self {
        ServiceScheduler { minute: minute.as_secs_f64(), ..self }
    }

    /// One pass over every service: how many changed, the errors, and when the earliest
    /// deployment timer falls due (epoch seconds).
    async fn run(&self) -> (usize, Vec<String>, Option<f64>) {
        let mut changed = 0;
        let mut errors = vec![];
        let mut due: Option<f64> = None;
        let now = wharf_types::now();
        let services = match self.db.list::<Service>(&all_of_kind("service")).await {
            Ok(s) => s,
            Err(e) => return (0, vec![e.to_string()], None),
        };
        for s in services {
            if s.doc.status == ServiceStatus::Inactive {
                continue;
            }
            // Only timers still ahead: one that has passed is acted on in this pass.
            if let Some(d) = blue_green::next_due(&s.doc, self.minute).filter(|d| *d > now) {
                due = Some(due.map_or(d, |x: f64| x.min(d)));
            }
            let Some(scope) = scope_of_key(&s.key) else { continue };
            match reconcile(&Scoped::new(scope, self.db.clone()), s, self.minute).await {
                Ok(true) => changed += 1,
                Ok(false) => {}
                Err(e) => errors.push(e.to_string()),
            }
        }
        (changed, errors, due)
    }
}

/// One step for one service. Returns whether anything changed.
async fn reconcile(ctx: &Scoped, s: Versioned<Service>, minute: f64) -> Result<bool, Error> {
    let Some(mut w) = World::observe(ctx, &s.doc).await? else { return Ok(false) };
    let mut out = Activation { changed: w.targets_changed, ..Default::default() };
    if breaker(ctx, &mut w, &mut out).await? == Breaker::RolledBack {
        return write(ctx, &s, w.svc, out).await.map(|_| true);
    }
    let rules_moved = blue_green::advance(ctx, &mut w, &mut out, minute).await?;
    let strategy = strategy::of(&w.svc);
    let Plan { stop: mut to_stop, start: to_start, held } = strategy.plan(&w);
    if rules_moved {
        // Traffic moves in this activation's write: what it moves from stops in a later one.
        to_stop.clear();
    }
    // Tasks this activation wrote (stopped or started), for the counts.
    let mut touched = stop(ctx, &w, &to_stop, &mut out).await?;
    start(ctx, &mut w, to_start, &mut touched, &mut out).await?;
    held_events(&w, &held, &mut out);
    account(ctx, &mut w, strategy, touched, &mut out).await?;
    let was = &s.doc;
    let counts_changed = w.svc.deployments != was.deployments
        || w.svc.running_count != was.running_count
        || w.svc.pending_count != was.pending_count
        || w.svc.desired_count != was.desired_count
        || w.svc.steady != was.steady
        || w.svc.last_completed_task_definition != was.last_completed_task_definition;
    if out.changed || counts_changed || !out.events.is_empty() {
        write(ctx, &s, w.svc, out).await?;
        return Ok(true);
    }
    Ok(false)
}

/// What one activation knows about one service, read once at its start.
struct World {
    /// The service as this activation will write it.
    svc: Service,
    cluster: Cluster,
    cluster_name: String,
    /// Every task of the service, whatever its state.
    all: Vec<Arc<Task>>,
    /// The tasks that count: not asked to stop, holding resources.
    live: Vec<Arc<Task>>,
    /// How the planner sees each of `live` (same order).
    views: Vec<TaskView>,
    instances: Vec<Versioned<ContainerInstance>>,
    definitions: HashMap<String, TaskDefinition>,
    /// What the load balancers report for each live task of a deployment with target groups.
    lb_health: HashMap<String, LbHealth>,
    primary_id: String,
    /// The PRIMARY deployment's circuit breaker has tripped: it must not launch.
    primary_failed: bool,
    /// Registering or draining targets changed a task.
    targets_changed: bool,
    now: f64,
}

impl World {
    /// Reads what the service's activation needs, after bringing its tasks' load balancer
    /// registrations up to date. `None`: nothing to do (no cluster, no PRIMARY deployment).
    async fn observe(ctx: &Scoped, svc: &Service) -> Result<Option<World>, Error> {
        let cluster_name = svc.cluster_arn.rsplit('/').next().unwrap_or_default().to_string();
        let keys = Keys::new(ctx);
        let Some(cluster) = ctx.db.get::<Cluster>(&keys.cluster(&cluster_name)).await? else { return Ok(None) };
        let group = format!("service:{}", svc.service_name);
        let read_tasks = || async {
            let tasks = ctx.db.list_tasks(&keys.tasks(&cluster_name)).await?;
            Ok::<Vec<Arc<Task>>, Error>(
                tasks.into_iter().map(|t| t.doc).filter(|t| t.group.as_ref() == Some(&group)).collect(),
            )
        };
        let all = read_tasks().await?;
        let instances = ctx.db.list::<ContainerInstance>(&keys.instances(&cluster_name)).await?;
        let targets_changed = targets::sync_targets(ctx, svc, &cluster_name, &all, &instances).await?;
        let all = if targets_changed { read_tasks().await? } else { all };
        // An EXTERNAL service may have task sets and no PRIMARY one yet.
        let primary = svc.deployments.iter().find(|d| d.status == DeploymentStatus::Primary);
        let primary = primary.or_else(|| deployments::by_external(svc).then(|| svc.deployments.first()).flatten());
        let Some(primary_id) = primary.map(|d| d.id.clone()) else {
            return Ok(None);
        };
        let mut definitions: HashMap<String, TaskDefinition> = HashMap::new();
        for d in &svc.deployments {
            if !definitions.contains_key(&d.task_definition) {
                let td = wharf_core::task_definitions::require(ctx, &d.task_definition, "taskDefinition").await?;
                definitions.insert(d.task_definition.clone(), td.doc);
            }
        }
        let lb_health = targets::lb_health(ctx, svc, &all).await?;
        let live: Vec<Arc<Task>> = all
            .iter()
            .filter(|t| t.desired_status != TaskStatus::Stopped && t.last_status.holds_resources())
            .cloned()
            .collect();
        let mut w = World {
            svc: svc.clone(),
            cluster: cluster.doc,
            cluster_name,
            all,
            live,
            views: vec![],
            instances,
            definitions,
            lb_health,
            primary_id,
            primary_failed: false,
            targets_changed,
            now: wharf_types::now(),
        };
        w.see();
        Ok(Some(w))
    }

    /// How the planner sees each live task (again after a rollback changed the PRIMARY).
    fn see(&mut self) {
        // Tasks on instances that are draining (or lost) are replaced like an old
        // deployment's: new ones start elsewhere first, within the same bounds.
        let leaving: Vec<&str> = self
            .instances
            .iter()
            .filter(|i| i.doc.status != "ACTIVE" || !i.doc.agent_connected)
            .map(|i| i.doc.container_instance_arn.as_str())
            .collect();
        let views = self
            .live
            .iter()
            .map(|t| {
                let mut v = self.view(t);
                if t.container_instance_arn.as_deref().is_some_and(|a| leaving.contains(&a)) {
                    // Draining an instance is not a scale-in: protection does not keep the task.
                    v.primary = false;
                    v.protected = false;
                }
                v
            })
            .collect();
        self.views = views;
    }

    /// Task `t` as the planner sees it: PRIMARY or not, healthy (its container health checks
    /// and every target group agree), or failing its checks after the grace period.
    fn view(&self, t: &Task) -> TaskView {
        let checked = self
            .definitions
            .get(&t.task_definition_arn)
            .is_some_and(|td| td.container_definitions.iter().any(|c| c.extra.contains_key("healthCheck")));
        let running = t.last_status == TaskStatus::Running;
        let grace = self.svc.health_check_grace_period_seconds.unwrap_or(0) as f64;
        let past_grace = t.started_at.is_some_and(|s| self.now - s >= grace);
        let health = t.health_status;
        let lb = self.lb_health.get(&t.task_arn);
        TaskView {
            primary: self.is_primary(t),
            healthy: running && (!checked || health == Some(HealthStatus::Healthy)) && lb.is_none_or(|h| h.healthy),
            unhealthy: running
                && past_grace
                && ((checked && health == Some(HealthStatus::Unhealthy)) || lb.is_some_and(|h| h.failing.is_some())),
            // Scale-in protection holds off scale-in and deployments of an ACTIVE service; a
            // deleted service's tasks all stop.
            protected: t.is_protected(self.now) && self.svc.status == ServiceStatus::Active,
        }
    }

    /// Whether scale-in protection keeps live task `arn` from a stop the plan would make.
    fn holds(&self, arn: &str) -> bool {
        self.live.iter().zip(&self.views).any(|(t, v)| t.task_arn == arn && v.protected && !v.unhealthy)
    }

    fn is_primary(&self, t: &Task) -> bool {
        t.started_by.as_deref() == Some(self.primary_id.as_str())
    }

    /// The PRIMARY deployment's task count: `desiredCount` while the service is ACTIVE.
    fn desired(&self) -> i64 {
        if self.svc.status == ServiceStatus::Active { self.svc.desired_count } else { 0 }
    }

    /// (minimumHealthyPercent, maximumPercent) with ECS's defaults.
    fn bounds(&self) -> (i64, i64) {
        let c = &self.svc.deployment_configuration;
        (c.minimum_healthy_percent.unwrap_or(100), c.maximum_percent.unwrap_or(200))
    }

    fn active_instances(&self) -> impl Iterator<Item = &str> {
        self.instances.iter().filter(|i| i.doc.status == "ACTIVE").map(|i| i.doc.container_instance_arn.as_str())
    }
}

/// What an activation has to write besides the service: whether anything changed, the
/// events to add, and the deployment-history records to write with it.
#[derive(Default)]
struct Activation {
    changed: bool,
    events: Vec<String>,
    history: Txn,
}

#[derive(Debug, PartialEq, Eq)]
enum Breaker {
    Watching,
    RolledBack,
}

/// The deployment circuit breaker and the deployment alarms. PRIMARY tasks that stopped on
/// their own count as failures: at `clamp(ceil(desired / 2), 3, 200)` of them during a rollout
/// the deployment FAILED; so it is when one of `deploymentConfiguration.alarms` is in ALARM
/// while it rolls out. With rollback on, the last COMPLETED task definition is deployed again.
async fn breaker(ctx: &Scoped, w: &mut World, out: &mut Activation) -> Result<Breaker, Error> {
    let (now, primary_id) = (w.now, w.primary_id.clone());
    let failed = w
        .all
        .iter()
        .filter(|t| t.started_by.as_deref() == Some(primary_id.as_str()) && t.last_status == TaskStatus::Stopped)
        .filter(|t| !matches!(t.stop_code.as_deref(), Some("ServiceSchedulerInitiated" | "UserInitiated")))
        .count() as i64;
    let svc = &mut w.svc;
    let breaker = svc.deployment_configuration.deployment_circuit_breaker.clone();
    let threshold = ((svc.desired_count + 1) / 2).clamp(3, 200);
    w.primary_failed =
        svc.deployments.iter().any(|d| d.id == primary_id && d.rollout_state == Some(RolloutState::Failed));
    if let Some(p) = svc.deployments.iter_mut().find(|d| d.id == primary_id)
        && p.failed_tasks != failed
    {
        p.failed_tasks = failed;
        p.updated_at = now;
        out.changed = true;
    }
    // It watches a deployment only while it rolls out: crashes after COMPLETED are replaced.
    let in_progress =
        svc.deployments.iter().any(|d| d.id == primary_id && d.rollout_state == Some(RolloutState::InProgress));
    let alarms = svc.deployment_configuration.alarms.clone().filter(|a| a.enable);
    let alarm = match &alarms {
        Some(a) if in_progress => alarm_in_alarm(ctx, &a.alarm_names).await?,
        _ => None,
    };
    let tasks_failed = breaker.as_ref().is_some_and(|b| b.enable) && in_progress && failed >= threshold;
    let (reason, what, rollback, after) = match (&alarm, tasks_failed) {
        (Some(name), _) => (
            format!("ECS deployment alarm {name} went into ALARM state."),
            "alarm detected",
            alarms.as_ref().is_some_and(|a| a.rollback),
            "an alarm failure",
        ),
        (None, true) => (
            "ECS deployment circuit breaker: tasks failed to start.".to_string(),
            "tasks failed to start",
            breaker.as_ref().is_some_and(|b| b.rollback),
            "a circuit breaker failure",
        ),
        (None, false) => return Ok(Breaker::Watching),
    };
    w.primary_failed = true;
    out.changed = true;
    for d in svc.deployments.iter_mut().filter(|d| d.id == primary_id) {
        d.rollout_state = Some(RolloutState::Failed);
        d.rollout_state_reason = Some(reason.clone());
        d.updated_at = now;
    }
    out.events.push(format!("(service {}) (deployment {primary_id}) deployment failed: {what}.", svc.service_name));
    let rollback_to = svc.last_completed_task_definition.clone();
    if rollback && let Some(td) = rollback_to {
        deployments::start(ctx, svc, &td, now, Some(&primary_id), &mut out.history).await?;
        out.events.push(format!(
            "(service {}) rolling back to deployment {} ({td}) after {after}.",
            svc.service_name, svc.deployments[0].id
        ));
        svc.steady = false;
        return Ok(Breaker::RolledBack);
    }
    if let Some(p) = svc.deployments.iter().find(|d| d.id == primary_id) {
        deployments::finish(ctx, svc, p, "STOPPED", &reason, &mut out.history).await?;
    }
    Ok(Breaker::Watching)
}

/// The first of `names` that is an alarm in ALARM state.
async fn alarm_in_alarm(ctx: &Scoped, names: &[String]) -> Result<Option<String>, Error> {
    let keys = wharf_core::alarms::AlarmKeys::new(ctx);
    for name in names {
        let a = ctx.db.get::<wharf_core::alarms::MetricAlarm>(&keys.alarm(name)).await?;
        if a.is_some_and(|a| a.doc.state_value == wharf_core::alarms::AlarmState::Alarm) {
            return Ok(Some(name.clone()));
        }
    }
    Ok(None)
}

/// Stops the planned tasks (deregistering them from load balancers first), each with ECS's
/// reason: failed ELB or container health checks, or the deployment's scaling.
async fn stop(ctx: &Scoped, w: &World, arns: &[String], out: &mut Activation) -> Result<HashMap<String, Task>, Error> {
    let mut touched = HashMap::new();
    let mut stopped = vec![];
    for arn in arns {
        let unhealthy = w.live.iter().zip(&w.views).any(|(t, v)| &t.task_arn == arn && v.unhealthy);
        let elb = w.lb_health.get(arn).and_then(|h| h.failing.clone());
        let reason = if let (true, Some(tg)) = (unhealthy, elb) {
            format!("Task failed ELB health checks in (target-group {tg})")
        } else if unhealthy {
            "Task failed container health checks".to_string()
        } else {
            format!("Scaling activity initiated by (deployment {})", w.primary_id)
        };
        let id = arn.rsplit('/').next().unwrap_or_default();
        let t = stop_task(ctx, &w.cluster_name, id, &reason, "ServiceSchedulerInitiated").await?;
        touched.insert(t.task_arn.clone(), t);
        stopped.push(format!("(task {id})"));
    }
    if !stopped.is_empty() {
        out.changed = true;
        for batch in stopped.chunks(TASKS_PER_EVENT) {
            out.events.push(format!(
                "(service {}) has stopped {} running tasks: {}.",
                w.svc.service_name,
                batch.len(),
                batch.join(" ")
            ));
        }
    }
    Ok(touched)
}

/// Launches the planned PRIMARY tasks through the same placement as RunTask; a placement
/// failure becomes one service event.
async fn start(
    ctx: &Scoped,
    w: &mut World,
    starts: Starts,
    touched: &mut HashMap<String, Task>,
    out: &mut Activation,
) -> Result<(), Error> {
    let Some(primary) = w.svc.deployments.iter().find(|d| d.id == w.primary_id) else { return Ok(()) };
    let Some(td) = w.definitions.get(&primary.task_definition) else { return Ok(()) };
    let request = launch_request(&w.svc, primary);
    let (started, failures) = match starts {
        Starts::Count(0) => (vec![], vec![]),
        Starts::Each(counts) => {
            let mut all = (vec![], vec![]);
            for (id, n) in counts {
                let Some(d) = w.svc.deployments.iter().find(|d| d.id == id) else { continue };
                let Some(td) = w.definitions.get(&d.task_definition) else { continue };
                match launch(ctx, &w.cluster, td, &launch_request(&w.svc, d), n).await {
                    Ok((t, f)) => {
                        all.0.extend(t);
                        all.1.extend(f);
                    }
                    Err(e) => all.1.push(failure(e)),
                }
            }
            all
        }
        Starts::Count(n) => match launch(ctx, &w.cluster, td, &request, n).await {
            Ok(r) => r,
            Err(e) => (vec![], vec![failure(e)]),
        },
        Starts::On(instances) => {
            let mut all = (vec![], vec![]);
            for arn in instances {
                let mut r = request.clone();
                r.container_instances = vec![arn];
                match launch_on(ctx, &w.cluster, td, &r).await {
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
    started_events(&mut w.svc, &started, failures.first(), out);
    Ok(())
}

/// What the service launches for deployment `d`: its task definition, network and placement
/// (by default ECS's for services: spread across zones, then instances). A task set (of an
/// EXTERNAL service, or a CodeDeploy replacement) launches with its own launch type, capacity
/// providers, platform version and network; other deployments with the service's.
fn launch_request(svc: &Service, d: &Deployment) -> RunRequest {
    let own = d.task_set.is_some() || d.shift.as_ref().is_some_and(|s| s.plan.is_some());
    let (launch_type, capacity, platform, network) = if own {
        (d.launch_type, &d.capacity_provider_strategy, &d.platform_version, &d.network_configuration)
    } else {
        (svc.launch_type, &svc.capacity_provider_strategy, &svc.platform_version, &svc.network_configuration)
    };
    RunRequest {
        task_definition: d.task_definition.clone(),
        launch_type,
        capacity_provider_strategy: capacity.clone().filter(|s| !s.is_empty()),
        group: Some(format!("service:{}", svc.service_name)),
        started_by: Some(d.id.clone()),
        network_configuration: network.clone(),
        placement_constraints: svc.placement_constraints.clone(),
        placement_strategy: if svc.placement_strategy.is_empty() {
            vec![
                json!({"type": "spread", "field": "attribute:ecs.availability-zone"}),
                json!({"type": "spread", "field": "instanceId"}),
            ]
        } else {
            svc.placement_strategy.clone()
        },
        platform_version: platform.clone(),
        enable_execute_command: svc.enable_execute_command,
        ..Default::default()
    }
}

/// ECS's events for an activation's launches: the tasks started, in batches, and why a task
/// could not be placed (once, not again while it stays the newest event).
fn started_events(svc: &mut Service, started: &[Task], failure: Option<&Failure>, out: &mut Activation) {
    if !started.is_empty() {
        out.changed = true;
        let names: Vec<String> =
            started.iter().map(|t| format!("(task {})", t.task_arn.rsplit('/').next().unwrap_or_default())).collect();
        for batch in names.chunks(TASKS_PER_EVENT) {
            out.events.push(format!(
                "(service {}) has started {} tasks: {}.",
                svc.service_name,
                batch.len(),
                batch.join(" ")
            ));
        }
        svc.steady = false;
    }
    if let Some(f) = failure {
        let reason = match &f.arn {
            Some(arn) => format!("{} on {arn}", f.reason),
            None => f.reason.clone(),
        };
        let message = format!(
            "(service {}) was unable to place a task because no container instance met all of its requirements. Reason: {reason}",
            svc.service_name
        );
        if svc.events.first().map(|e| &e.message) != Some(&message) {
            out.events.push(message);
            out.changed = true;
        }
    }
}

/// ECS's events for tasks scale-in protection keeps: per deployment (ECS names it a task
/// set), how many it could not stop. For the PRIMARY one that is a scale-in waiting; for an
/// older one, a deployment that cannot reach a steady state. Not written again while the
/// same message is among the newest such events.
fn held_events(w: &World, held: &[String], out: &mut Activation) {
    let name = &w.svc.service_name;
    let deployment_of = |arn: &String| w.live.iter().find(|t| &t.task_arn == arn).and_then(|t| t.started_by.clone());
    let mut counts: Vec<(Option<String>, usize)> = vec![];
    for d in held.iter().map(deployment_of) {
        match counts.iter_mut().find(|(x, _)| *x == d) {
            Some((_, n)) => *n += 1,
            None => counts.push((d, 1)),
        }
    }
    let recent: Vec<&str> =
        w.svc.events.iter().map(|e| e.message.as_str()).take_while(|m| m.contains(UNABLE_TO_SCALE_IN)).collect();
    for (deployment, n) in counts {
        let why = format!("{UNABLE_TO_SCALE_IN} (reason {n} tasks under protection)");
        let message = match deployment {
            Some(d) if d == w.primary_id => format!("(service {name}, taskSet {d}) {why}"),
            Some(d) => format!("(service {name}) was unable to reach steady state because (taskSet {d}) {why}"),
            None => format!("(service {name}) {why}"),
        };
        if !recent.contains(&message.as_str()) {
            out.events.push(message);
        }
    }
}

/// What ECS's events say of a task set that protected tasks keep from scaling in.
const UNABLE_TO_SCALE_IN: &str = "was unable to scale in due to";

/// Counts each deployment's tasks, drops drained deployments, and marks the rollout
/// COMPLETED (and the service steady) once the PRIMARY deployment alone runs `target`
/// healthy tasks.
async fn account(
    ctx: &Scoped,
    w: &mut World,
    strategy: &dyn Strategy,
    mut touched: HashMap<String, Task>,
    out: &mut Activation,
) -> Result<(), Error> {
    // What was read at the start plus what this activation wrote (re-reading 10,000 tasks
    // here cost more than the placement itself); the next activation re-reads anyway.
    let mut fresh: Vec<Arc<Task>> =
        w.all.iter().map(|t| touched.remove(&t.task_arn).map_or_else(|| t.clone(), Arc::new)).collect();
    fresh.extend(touched.into_values().map(Arc::new));
    fresh.retain(|t| t.last_status.holds_resources());
    let count = |id: &str, running: bool| {
        fresh
            .iter()
            .filter(|t| t.started_by.as_deref() == Some(id) && (t.last_status == TaskStatus::Running) == running)
            .count() as i64
    };
    let target = strategy.target(w);
    let may_complete = strategy.may_complete(w);
    let healthy_primary = fresh
        .iter()
        .filter(|t| {
            let v = w.view(t);
            v.primary && v.healthy
        })
        .count() as i64;
    let wanted: Vec<(i64, bool)> =
        w.svc.deployments.iter().map(|d| (strategy.desired_of(w, d), strategy.keeps(w, d))).collect();
    let now = w.now;
    let svc = &mut w.svc;
    for (d, (desired, _)) in svc.deployments.iter_mut().zip(&wanted) {
        d.running_count = count(&d.id, true);
        d.pending_count = count(&d.id, false);
        d.desired_count = *desired;
    }
    let mut keep = wanted.iter().map(|(_, k)| *k);
    svc.deployments.retain(|d| keep.next().unwrap_or(false) || d.running_count + d.pending_count > 0);
    svc.running_count = fresh.iter().filter(|t| t.last_status == TaskStatus::Running).count() as i64;
    svc.pending_count = fresh.len() as i64 - svc.running_count;
    if strategy.owns_desired_count() {
        svc.desired_count = target;
    }
    let steady = may_complete
        && svc.deployments.len() == 1
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
        out.events.push(format!("(service {}) (deployment {}) deployment completed.", svc.service_name, p.id));
        svc.last_completed_task_definition = Some(p.task_definition.clone());
        let done = p.clone();
        deployments::finish(ctx, svc, &done, "SUCCESSFUL", "Deployment completed.", &mut out.history).await?;
    }
    if steady && !svc.steady {
        svc.steady = true;
        out.events.push(format!("(service {}) has reached a steady state.", svc.service_name));
    }
    if !steady {
        svc.steady = false;
    }
    Ok(())
}

/// Saves the service with new events (newest first, capped) and the activation's history
/// records in one compare-and-swap; a lost race waits for the next activation.
async fn write(ctx: &Scoped, s: &Versioned<Service>, mut svc: Service, out: Activation) -> Result<bool, Error> {
    let now = wharf_types::now();
    // Newest first: the last message is the newest; only the newest MAX_EVENTS stay.
    let skip = out.events.len().saturating_sub(MAX_EVENTS);
    let mut newest: Vec<ServiceEvent> = out
        .events
        .into_iter()
        .skip(skip)
        .rev()
        .map(|message| ServiceEvent { id: wharf_types::uuid(), created_at: now, message })
        .collect();
    newest.append(&mut svc.events);
    newest.truncate(MAX_EVENTS);
    svc.events = newest;
    let mut txn = cas_put(&s.key, s.rev, &svc)?;
    txn.compares.extend(out.history.compares);
    txn.ops.extend(out.history.ops);
    ctx.db.commit(txn).await
}

fn failure(e: Error) -> Failure {
    Failure { arn: None, reason: e.to_string(), detail: None }
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
            // A deployment alarm going to ALARM fails the deployment it watches.
            wharf_core::alarms::ALL.to_string(),
        ]
    }
    fn period(&self) -> Duration {
        Duration::from_secs(2)
    }
    fn settle(&self) -> Duration {
        Duration::from_millis(50)
    }
    async fn activate(&self) -> Status {
        let (changed, errors, due) = self.run().await;
        // A timer due before the next period wakes the scheduler then (a little after, so
        // it has passed), not up to a period late.
        let wake_after =
            due.map(|d| Duration::from_secs_f64((d - wharf_types::now()).max(0.0)) + Duration::from_millis(20));
        Status { changed, errors, wake_after }
    }
}
