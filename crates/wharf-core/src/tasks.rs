//! Tasks in the domain: what a task asks of an instance, placing tasks on container
//! instances (CPU, memory and port accounting in one transaction with the tasks), Fargate
//! capacity, asking a task to stop (deregistering it from load balancers first), and a
//! service task's scale-in protection. Shared by RunTask/StartTask/StopTask, the task
//! protection operations and the service scheduler.

use crate::capacity::{Demand, fits, release, reserve};
use crate::db::{Versioned, encode};
use crate::keys::Keys;
use crate::task_definitions::require;
use crate::{Scoped, tags};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use wharf_store::{Compare, Op, Txn};
use wharf_types::ecs::{
    Attribute, Cluster, Container, ContainerInstance, Failure, HealthStatus, LaunchType, ProtectedTask, Tag, Task,
    TaskDefinition, TaskStatus,
};
use wharf_types::{Error, Result};

/// What to launch: RunTask's and StartTask's request, also built by the service scheduler.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRequest {
    pub cluster: Option<String>,
    pub task_definition: String,
    pub count: Option<i64>,
    pub launch_type: Option<LaunchType>,
    pub capacity_provider_strategy: Option<Vec<Value>>,
    pub group: Option<String>,
    pub started_by: Option<String>,
    pub overrides: Option<Value>,
    pub network_configuration: Option<Value>,
    #[serde(default)]
    pub placement_constraints: Vec<Value>,
    #[serde(default)]
    pub placement_strategy: Vec<Value>,
    pub platform_version: Option<String>,
    #[serde(default)]
    pub tags: Vec<Tag>,
    #[serde(default)]
    pub enable_execute_command: bool,
    #[serde(default)]
    pub container_instances: Vec<String>,
}

/// What the task asks of an instance: CPU units, memory MiB and fixed host ports.
fn demand(td: &TaskDefinition, overrides: Option<&Value>) -> Demand {
    let container_override = |name: &str, field: &str| {
        overrides
            .and_then(|o| o.get("containerOverrides"))
            .and_then(Value::as_array)
            .and_then(|l| l.iter().find(|o| o.get("name").and_then(Value::as_str) == Some(name)))
            .and_then(|o| o.get(field))
            .and_then(Value::as_i64)
    };
    let task_level =
        |field: &str| overrides.and_then(|o| o.get(field)).and_then(Value::as_str).and_then(|s| s.parse::<i64>().ok());
    let mut cpu = 0;
    let mut memory = 0;
    let mut ports = vec![];
    for c in &td.container_definitions {
        let name = c.name.as_deref().unwrap_or_default();
        cpu += container_override(name, "cpu").unwrap_or(c.cpu);
        let hard = container_override(name, "memory").or(c.memory);
        let soft = container_override(name, "memoryReservation").or(c.memory_reservation);
        memory += soft.or(hard).unwrap_or(0);
        let host_network = matches!(td.network_mode.as_deref(), Some("host"));
        // An awsvpc task has a network interface of its own: its ports are not the host's.
        let own_interface = matches!(td.network_mode.as_deref(), Some("awsvpc"));
        for pm in c.port_mappings.iter().filter(|_| !own_interface) {
            let hp = if host_network { pm.container_port } else { pm.host_port };
            if let Some(p) = hp.filter(|p| *p > 0) {
                ports.push((p, pm.protocol.clone().unwrap_or_else(|| "tcp".into())));
            }
        }
    }
    if let Some(c) = task_level("cpu").or_else(|| td.cpu.as_deref().and_then(|s| s.parse().ok())) {
        cpu = c;
    }
    if let Some(m) = task_level("memory").or_else(|| td.memory.as_deref().and_then(|s| s.parse().ok())) {
        memory = m;
    }
    Demand { cpu, memory, ports }
}

/// What a stored task holds on its instance (its definition's demand with its overrides).
pub async fn demand_of(ctx: &Scoped, task: &Task) -> Result<Demand> {
    let td = require(ctx, &task.task_definition_arn, "taskDefinition").await?.doc;
    Ok(demand(&td, task.overrides.as_ref()))
}

fn new_task(
    ctx: &Scoped,
    cluster_arn: &str,
    cluster: &str,
    td: &TaskDefinition,
    req: &RunRequest,
    launch_type: Option<LaunchType>,
    instance: Option<&ContainerInstance>,
) -> Task {
    let id = wharf_types::hex_id(32);
    let task_arn = ctx.scope.arn("ecs", format!("task/{cluster}/{id}"));
    let d = demand(td, req.overrides.as_ref());
    let containers = td
        .container_definitions
        .iter()
        .map(|c| Container {
            container_arn: ctx.scope.arn("ecs", format!("container/{cluster}/{id}/{}", wharf_types::uuid())),
            task_arn: task_arn.clone(),
            name: c.name.clone().unwrap_or_default(),
            image: c.image.clone(),
            image_digest: None,
            runtime_id: None,
            last_status: TaskStatus::Pending,
            exit_code: None,
            reason: None,
            network_bindings: vec![],
            network_interfaces: vec![],
            health_status: Some(HealthStatus::Unknown),
            cpu: Some(c.cpu.to_string()),
            memory: c.memory.map(|m| m.to_string()),
            memory_reservation: c.memory_reservation.map(|m| m.to_string()),
            extra: Map::new(),
        })
        .collect();
    let az = instance
        .and_then(|i| i.attributes.iter().find(|a| a.name == "ecs.availability-zone"))
        .and_then(|a| a.value.clone())
        .unwrap_or_else(|| format!("{}a", ctx.scope.region));
    let overrides = req.overrides.clone().unwrap_or_else(|| json!({}));
    let mut overrides = overrides;
    if let Some(o) = overrides.as_object_mut() {
        o.entry("containerOverrides").or_insert_with(|| json!([]));
        o.entry("inferenceAcceleratorOverrides").or_insert_with(|| json!([]));
    }
    Task {
        task_arn,
        cluster_arn: cluster_arn.to_string(),
        task_definition_arn: td.task_definition_arn.clone(),
        container_instance_arn: instance.map(|i| i.container_instance_arn.clone()),
        attachments: vec![],
        attributes: vec![Attribute {
            name: "ecs.cpu-architecture".into(),
            value: Some("x86_64".into()),
            target_type: None,
            target_id: None,
        }],
        availability_zone: Some(az),
        capacity_provider_name: None,
        containers,
        cpu: Some(d.cpu.to_string()),
        memory: Some(d.memory.to_string()),
        created_at: wharf_types::now(),
        desired_status: TaskStatus::Running,
        last_status: TaskStatus::Provisioning,
        enable_execute_command: req.enable_execute_command,
        group: Some(req.group.clone().unwrap_or_else(|| format!("family:{}", td.family))),
        health_status: Some(HealthStatus::Unknown),
        launch_type,
        overrides: Some(overrides),
        platform_version: (launch_type == Some(LaunchType::Fargate))
            .then(|| req.platform_version.clone().unwrap_or_else(|| "1.4.0".into())),
        pull_started_at: None,
        pull_stopped_at: None,
        started_at: None,
        started_by: req.started_by.clone(),
        stop_code: None,
        stopped_at: None,
        stopped_reason: None,
        stopping_at: None,
        tags: req.tags.clone(),
        version: 1,
        targets: vec![],
        drain_until: None,
        fargate_host: None,
        protected_until: None,
        extra: Map::new(),
    }
}

/// Places one task per chosen instance and writes tasks and reservations in one
/// transaction guarded by each instance's revision.
pub async fn place(
    ctx: &Scoped,
    cluster_arn: &str,
    cluster: &str,
    td: &TaskDefinition,
    req: &RunRequest,
    count: usize,
    only: Option<&[String]>,
) -> Result<(Vec<Task>, Vec<Failure>)> {
    let keys = Keys::new(ctx);
    let d = demand(td, req.overrides.as_ref());
    ctx.db
        .update(|| async {
            let mut instances: Vec<Versioned<ContainerInstance>> = ctx
                .db
                .list::<ContainerInstance>(&keys.instances(cluster))
                .await?
                .into_iter()
                .filter(|i| i.doc.status == "ACTIVE" && i.doc.agent_connected)
                .collect();
            if let Some(only) = only {
                instances.retain(|i| {
                    only.iter().any(|r| {
                        r == &i.doc.container_instance_arn || i.doc.container_instance_arn.ends_with(&format!("/{r}"))
                    })
                });
            }
            if instances.is_empty() && only.is_none() {
                return Err(Error::invalid("cluster", "No Container Instances were found in your cluster."));
            }
            let member_of: Vec<crate::expr::Expr> = req
                .placement_constraints
                .iter()
                .chain(&td.placement_constraints)
                .filter(|c| c.get("type").and_then(Value::as_str) == Some("memberOf"))
                .filter_map(|c| c.get("expression").and_then(Value::as_str))
                .filter(|e| e.starts_with("attribute:"))
                .map(|e| crate::expr::Expr::parse(e, "placementConstraints.expression"))
                .collect::<Result<_>>()?;
            let distinct = req
                .placement_constraints
                .iter()
                .any(|c| c.get("type").and_then(Value::as_str) == Some("distinctInstance"));
            let (mut tasks, mut failures) = (vec![], vec![]);
            let mut touched = vec![false; instances.len()];
            // Working copies the loop reserves from; written back for the instances it touched.
            let mut docs: Vec<ContainerInstance> = instances.iter().map(|i| i.doc.clone()).collect();
            let member: Vec<bool> = docs.iter().map(|i| member_of.iter().all(|e| e.matches(&i.attributes))).collect();
            // Tasks of the same group already running or pending, per instance (spread).
            let group = req.group.clone().unwrap_or_else(|| format!("family:{}", td.family));
            let mut group_tasks: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
            for t in ctx.db.list_tasks(&keys.tasks(cluster)).await? {
                if t.doc.group.as_ref() == Some(&group)
                    && t.doc.last_status.holds_resources()
                    && let Some(arn) = &t.doc.container_instance_arn
                {
                    *group_tasks.entry(arn.clone()).or_default() += 1;
                }
            }
            let mut placer = crate::placement::Placer::new(&req.placement_strategy, &docs, &group_tasks);

            // Why each instance cannot take a task (None: it can). Only the instance a task
            // was just placed on changes, so each placement re-checks one instance, not all.
            let mut unfit: Vec<Option<String>> = docs
                .iter()
                .enumerate()
                .map(|(i, inst)| {
                    if !member[i] {
                        Some("MemberOf placement constraint unsatisfied.".to_string())
                    } else {
                        fits(inst, &d).err()
                    }
                })
                .collect();
            let mut candidates: Vec<usize> = (0..docs.len()).filter(|i| unfit[*i].is_none()).collect();
            for n in 0..count {
                // DAEMON placements name one instance per task.
                let pick =
                    if only.is_some() { candidates.contains(&n).then_some(n) } else { placer.pick(&candidates, &docs) };
                let Some(pick) = pick else {
                    let first = unfit
                        .iter()
                        .enumerate()
                        .filter(|(i, _)| (only.is_none() || *i == n) && !(distinct && touched[*i]))
                        .find_map(|(i, r)| Some((i, r.clone()?)));
                    match first {
                        Some((i, reason)) => failures.push(Failure {
                            arn: Some(docs[i].container_instance_arn.clone()),
                            reason,
                            detail: None,
                        }),
                        None => break,
                    }
                    continue;
                };
                let inst = &mut docs[pick];
                let _ = reserve(inst, &d);
                touched[pick] = true;
                placer.placed(pick);
                tasks.push(new_task(
                    ctx,
                    cluster_arn,
                    cluster,
                    td,
                    req,
                    Some(req.launch_type.unwrap_or(LaunchType::Ec2)),
                    Some(inst),
                ));
                unfit[pick] = fits(inst, &d).err();
                if unfit[pick].is_some() || distinct {
                    candidates.retain(|c| *c != pick);
                }
            }
            if tasks.is_empty() {
                return Ok((None, (tasks, failures)));
            }
            let mut txn = Txn::default();
            for ((inst, doc), _) in instances.iter().zip(&docs).zip(&touched).filter(|(_, t)| **t) {
                txn.compares.push(Compare::ModRevision(inst.key.clone(), inst.rev));
                txn.ops.push(Op::put(&inst.key, encode(doc)?));
            }
            for t in &tasks {
                let id = t.task_arn.rsplit('/').next().unwrap_or_default();
                txn.ops.push(Op::put(keys.task(cluster, id), encode(t)?));
                txn.ops.extend(tags::put_op(ctx, &t.task_arn, &t.tags)?);
            }
            Ok((Some(txn), (tasks, failures)))
        })
        .await
}

/// Launches `count` tasks of `td` in `cluster`: on the account's Fargate capacity for
/// FARGATE, else placed on container instances. Shared by RunTask and the service scheduler.
pub async fn launch(
    ctx: &Scoped,
    cluster: &Cluster,
    td: &TaskDefinition,
    req: &RunRequest,
    count: usize,
) -> Result<(Vec<Task>, Vec<Failure>)> {
    let is_fargate = |s: &[Value]| {
        s.iter().any(|i| i.get("capacityProvider").and_then(Value::as_str).is_some_and(|p| p.starts_with("FARGATE")))
    };
    let fargate = req.launch_type == Some(LaunchType::Fargate)
        || req.capacity_provider_strategy.as_deref().is_some_and(is_fargate)
        || (req.launch_type.is_none()
            && req.capacity_provider_strategy.is_none()
            && is_fargate(&cluster.default_capacity_provider_strategy));
    if fargate {
        if !td.compatibilities.iter().any(|c| c == "FARGATE") {
            return Err(Error::invalid("launchType", "Task definition does not support launch_type FARGATE."));
        }
        return run_fargate(ctx, cluster, td, req, count).await;
    }
    if req.launch_type == Some(LaunchType::External) {
        return Err(Error::Unsupported("The EXTERNAL launch type is not supported.".into()));
    }
    place(ctx, &cluster.cluster_arn, &cluster.cluster_name, td, req, count, None).await
}

/// Launches one task of `td` on the instance `req.container_instances[0]` (DAEMON services).
pub async fn launch_on(
    ctx: &Scoped,
    cluster: &Cluster,
    td: &TaskDefinition,
    req: &RunRequest,
) -> Result<(Vec<Task>, Vec<Failure>)> {
    place(ctx, &cluster.cluster_arn, &cluster.cluster_name, td, req, 1, Some(&req.container_instances)).await
}

/// FARGATE tasks run on the hosts that serve Fargate capacity for the account (the agent of
/// `wharf up`); with none connected, ECS's answer for capacity that is not there.
async fn run_fargate(
    ctx: &Scoped,
    cluster: &Cluster,
    td: &TaskDefinition,
    req: &RunRequest,
    count: usize,
) -> Result<(Vec<Task>, Vec<Failure>)> {
    let hosts = crate::fargate::hosts(ctx).await?;
    if hosts.is_empty() {
        let failures: Vec<Failure> = (0..count)
            .map(|_| Failure {
                arn: None,
                reason:
                    "Capacity is unavailable at this time. Please try again later or in a different availability zone"
                        .into(),
                detail: None,
            })
            .collect();
        return Ok((vec![], failures));
    }
    let provider = req
        .capacity_provider_strategy
        .as_ref()
        .and_then(|s| s.first())
        .and_then(|i| i.get("capacityProvider"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let keys = Keys::new(ctx);
    let mut txn = Txn::default();
    let mut tasks = vec![];
    for _ in 0..count {
        let mut task =
            new_task(ctx, &cluster.cluster_arn, &cluster.cluster_name, td, req, Some(LaunchType::Fargate), None);
        if provider.is_some() {
            task.launch_type = None;
            task.capacity_provider_name.clone_from(&provider);
        } else {
            task.capacity_provider_name = Some("FARGATE".into());
        }
        let host = &hosts[rand::random_range(0..hosts.len())];
        task.fargate_host = Some(host.clone());
        let key = keys.task(&cluster.cluster_name, task.task_arn.rsplit('/').next().unwrap_or_default());
        txn.compares.push(Compare::ModRevision(key.clone(), 0));
        txn.ops.push(Op::put(key, encode(&task)?));
        txn.ops.extend(tags::put_op(ctx, &task.task_arn, &task.tags)?);
        tasks.push(task);
    }
    if !ctx.db.commit(txn).await? {
        return Err(Error::Internal("a new task id collided; try again".into()));
    }
    Ok((tasks, vec![]))
}

/// Asks a task to stop (StopTask, the service scheduler). The agent does the stopping; a task
/// no agent has acknowledged yet is finished here and its instance gets its resources back.
/// A task registered with load balancers is deregistered first, as ECS does: it goes
/// DEACTIVATING, its targets drain, and the agent is told to stop it only once the target
/// groups' deregistration delay has passed (see `targets`; the service scheduler ends it).
pub async fn stop_task(ctx: &Scoped, cluster: &str, id: &str, reason: &str, stop_code: &str) -> Result<Task> {
    let keys = Keys::new(ctx);
    let key = keys.task(cluster, id);
    ctx.db
        .update(|| async {
            let Some(t) = ctx.db.get::<Task>(&key).await? else {
                return Err(Error::invalid("task", "The referenced task was not found."));
            };
            if t.doc.desired_status == TaskStatus::Stopped {
                return Ok((None, t.doc));
            }
            let now = wharf_types::now();
            let mut doc = t.doc.clone();
            doc.desired_status = TaskStatus::Stopped;
            doc.stopping_at = Some(now);
            doc.stop_code = Some(stop_code.into());
            doc.stopped_reason = Some(reason.into());
            doc.version += 1;
            let mut txn = Txn { compares: vec![Compare::ModRevision(key.clone(), t.rev)], ops: vec![] };
            let serving = matches!(doc.last_status, TaskStatus::Pending | TaskStatus::Activating | TaskStatus::Running);
            if serving && !crate::targets::registered(&doc).is_empty() {
                doc.last_status = TaskStatus::Deactivating;
                crate::targets::begin_draining(ctx, &mut doc, now, &mut txn).await?;
            }
            if doc.last_status == TaskStatus::Provisioning {
                doc.last_status = TaskStatus::Stopped;
                doc.stopped_at = Some(now);
                for c in &mut doc.containers {
                    c.last_status = TaskStatus::Stopped;
                }
                if let Some(inst_arn) = &doc.container_instance_arn {
                    let ikey = keys.instance(cluster, inst_arn.rsplit('/').next().unwrap_or_default());
                    if let Some(mut inst) = ctx.db.get::<ContainerInstance>(&ikey).await? {
                        release(&mut inst.doc, &demand_of(ctx, &doc).await?);
                        txn.compares.push(Compare::ModRevision(ikey.clone(), inst.rev));
                        txn.ops.push(Op::put(&ikey, encode(&inst.doc)?));
                    }
                }
            }
            txn.ops.push(Op::put(&key, encode(&doc)?));
            Ok((Some(txn), doc))
        })
        .await
}

/// ECS's failure reasons for task protection: the task is not one of a service's
/// (UpdateTaskProtection's documented `TASK_NOT_VALID`), or it is stopping or stopped.
const NOT_A_SERVICE_TASK: &str = "TASK_NOT_VALID";
const STOPPING_OR_STOPPED: &str = "TASK_STOPPING_OR_STOPPED";

/// A service task's scale-in protection (GetTaskProtection): what `task/<cluster>/<id>` has
/// at `now`, or why ECS reports it as a failure (MISSING, TASK_NOT_VALID).
pub async fn protection(ctx: &Scoped, cluster: &str, id: &str, now: f64) -> Result<Result<ProtectedTask, Failure>> {
    let arn = ctx.scope.arn("ecs", format!("task/{cluster}/{id}"));
    let Some(t) = ctx.db.get::<Task>(&Keys::new(ctx).task(cluster, id)).await? else {
        return Ok(Err(Failure::missing(arn)));
    };
    if t.doc.service_name().is_none() {
        return Ok(Err(Failure::reason(t.doc.task_arn, NOT_A_SERVICE_TASK)));
    }
    Ok(Ok(t.doc.protection(now)))
}

/// Turns a service task's scale-in protection on until `until` (again from now when it is
/// already on: UpdateTaskProtection resets the expiration) or off (`None`), in the task's
/// document, so it lasts as long as the task. The service scheduler reads it when it chooses
/// tasks to stop for scale-in or a deployment. Failures as ECS reports them: MISSING,
/// TASK_NOT_VALID (not a service's task), TASK_STOPPING_OR_STOPPED.
pub async fn set_protection(
    ctx: &Scoped,
    cluster: &str,
    id: &str,
    until: Option<f64>,
    now: f64,
) -> Result<Result<ProtectedTask, Failure>> {
    let key = Keys::new(ctx).task(cluster, id);
    let arn = ctx.scope.arn("ecs", format!("task/{cluster}/{id}"));
    ctx.db
        .update(|| async {
            let Some(t) = ctx.db.get::<Task>(&key).await? else {
                return Ok((None, Err(Failure::missing(arn.clone()))));
            };
            if t.doc.service_name().is_none() {
                return Ok((None, Err(Failure::reason(t.doc.task_arn.clone(), NOT_A_SERVICE_TASK))));
            }
            if t.doc.desired_status == TaskStatus::Stopped {
                return Ok((None, Err(Failure::reason(t.doc.task_arn.clone(), STOPPING_OR_STOPPED))));
            }
            let mut doc = t.doc.clone();
            doc.protected_until = until;
            let reported = doc.protection(now);
            if doc == t.doc {
                return Ok((None, Ok(reported)));
            }
            Ok((Some(crate::db::cas_put(&key, t.rev, &doc)?), Ok(reported)))
        })
        .await
}
