//! Tasks: RunTask/StartTask create them (placed on container instances with CPU, memory and
//! port accounting), StopTask asks them to stop, Describe/List read them. Agents move them
//! through the lifecycle in a later issue; here the control plane owns what happens before
//! an agent has acknowledged a task.

use super::instances::{Demand, fits, release, reserve};
use super::task_definitions::require;
use super::{Keys, active_cluster, input, output, split_ref, tags};
use crate::Ctx;
use crate::db::{Versioned, encode};
use crate::paging::{max_results, scan, with_token};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use wharf_store::{Compare, Op, Txn};
use wharf_types::ecs::{Attribute, Cluster, Container, ContainerInstance, Failure, Tag, Task, TaskDefinition};
use wharf_types::{Error, Result};

/// Task states in which a task holds resources on its instance.
pub const ACTIVE_TASK_STATES: &[&str] =
    &["PROVISIONING", "PENDING", "ACTIVATING", "RUNNING", "DEACTIVATING", "STOPPING", "DEPROVISIONING"];

/// What to launch: RunTask's and StartTask's request, also built by the service scheduler.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RunRequest {
    pub cluster: Option<String>,
    pub task_definition: String,
    pub count: Option<i64>,
    pub launch_type: Option<String>,
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

/// Checks overrides against the task definition: every overridden container must exist.
fn check_overrides(td: &TaskDefinition, overrides: Option<&Value>) -> Result<()> {
    let Some(list) = overrides.and_then(|o| o.get("containerOverrides")).and_then(Value::as_array) else {
        return Ok(());
    };
    for o in list {
        let name = o.get("name").and_then(Value::as_str).unwrap_or_default();
        if super::task_definitions::container(td, name).is_none() {
            return Err(Error::invalid(
                "overrides.containerOverrides.name",
                format!("Override for container named {name} is not a container in the TaskDefinition."),
            ));
        }
    }
    Ok(())
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
pub(crate) async fn demand_of(ctx: &Ctx, task: &Task) -> Result<Demand> {
    let td = require(ctx, &task.task_definition_arn, "taskDefinition").await?.doc;
    Ok(demand(&td, task.overrides.as_ref()))
}

fn new_task(
    ctx: &Ctx,
    cluster_arn: &str,
    cluster: &str,
    td: &TaskDefinition,
    req: &RunRequest,
    launch_type: Option<&str>,
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
            last_status: "PENDING".into(),
            exit_code: None,
            reason: None,
            network_bindings: vec![],
            network_interfaces: vec![],
            health_status: Some("UNKNOWN".into()),
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
        desired_status: "RUNNING".into(),
        last_status: "PROVISIONING".into(),
        enable_execute_command: req.enable_execute_command,
        group: Some(req.group.clone().unwrap_or_else(|| format!("family:{}", td.family))),
        health_status: Some("UNKNOWN".into()),
        launch_type: launch_type.map(str::to_string),
        overrides: Some(overrides),
        platform_version: (launch_type == Some("FARGATE"))
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
        extra: Map::new(),
    }
}

fn check_common(td: &TaskDefinition, req: &RunRequest) -> Result<()> {
    if td.status != "ACTIVE" {
        return Err(Error::invalid("taskDefinition", "TaskDefinition is inactive"));
    }
    check_overrides(td, req.overrides.as_ref())?;
    tags::validate(&req.tags)?;
    if req.started_by.as_ref().is_some_and(|s| s.len() > 128) {
        return Err(Error::invalid("startedBy", "startedBy can be at most 128 characters."));
    }
    if req.group.as_ref().is_some_and(|g| g.len() > 255) {
        return Err(Error::invalid("group", "group can be at most 255 characters."));
    }
    super::check_placement(&req.placement_constraints, &req.placement_strategy)?;
    if td.network_mode.as_deref() == Some("awsvpc") && req.network_configuration.is_none() {
        return Err(Error::invalid(
            "networkConfiguration",
            "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
        ));
    }
    if req.launch_type.is_some() && req.capacity_provider_strategy.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(Error::invalid(
            "launchType",
            "Specifying both a launch type and capacity provider strategy is not supported. Remove one and try again.",
        ));
    }
    Ok(())
}

/// Places one task per chosen instance and writes tasks and reservations in one
/// transaction guarded by each instance's revision.
async fn place(
    ctx: &Ctx,
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
            let member_of: Vec<super::expr::Expr> = req
                .placement_constraints
                .iter()
                .chain(&td.placement_constraints)
                .filter(|c| c.get("type").and_then(Value::as_str) == Some("memberOf"))
                .filter_map(|c| c.get("expression").and_then(Value::as_str))
                .filter(|e| e.starts_with("attribute:"))
                .map(|e| super::expr::Expr::parse(e, "placementConstraints.expression"))
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
                    && ACTIVE_TASK_STATES.contains(&t.doc.last_status.as_str())
                    && let Some(arn) = &t.doc.container_instance_arn
                {
                    *group_tasks.entry(arn.clone()).or_default() += 1;
                }
            }
            let mut placer = super::placement::Placer::new(&req.placement_strategy, &docs, &group_tasks);

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
                    Some(req.launch_type.as_deref().unwrap_or("EC2")),
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

pub async fn run(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: RunRequest = input(v)?;
    let count = req.count.unwrap_or(1);
    if !(1..=10).contains(&count) {
        return Err(Error::invalid("count", "count must be between 1 and 10."));
    }
    let cluster = active_cluster(ctx, req.cluster.as_deref()).await?;
    let td = require(ctx, &req.task_definition, "taskDefinition").await?.doc;
    check_common(&td, &req)?;
    let (tasks, failures) = launch(ctx, &cluster.doc, &td, &req, count as usize).await?;
    output(json!({ "tasks": tasks, "failures": failures }))
}

/// Launches `count` tasks of `td` in `cluster`: on the account's Fargate capacity for
/// FARGATE, else placed on container instances. Shared by RunTask and the service scheduler.
pub async fn launch(
    ctx: &Ctx,
    cluster: &Cluster,
    td: &TaskDefinition,
    req: &RunRequest,
    count: usize,
) -> Result<(Vec<Task>, Vec<Failure>)> {
    let is_fargate = |s: &[Value]| {
        s.iter().any(|i| i.get("capacityProvider").and_then(Value::as_str).is_some_and(|p| p.starts_with("FARGATE")))
    };
    let fargate = req.launch_type.as_deref() == Some("FARGATE")
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
    if req.launch_type.as_deref() == Some("EXTERNAL") {
        return Err(Error::Unsupported("The EXTERNAL launch type is not supported.".into()));
    }
    place(ctx, &cluster.cluster_arn, &cluster.cluster_name, td, req, count, None).await
}

/// Launches one task of `td` on the instance `req.container_instances[0]` (DAEMON services).
pub async fn launch_on(
    ctx: &Ctx,
    cluster: &Cluster,
    td: &TaskDefinition,
    req: &RunRequest,
) -> Result<(Vec<Task>, Vec<Failure>)> {
    place(ctx, &cluster.cluster_arn, &cluster.cluster_name, td, req, 1, Some(&req.container_instances)).await
}

/// FARGATE tasks run on the hosts that serve Fargate capacity for the account (the agent of
/// `wharf up`); with none connected, ECS's answer for capacity that is not there.
async fn run_fargate(
    ctx: &Ctx,
    cluster: &Cluster,
    td: &TaskDefinition,
    req: &RunRequest,
    count: usize,
) -> Result<(Vec<Task>, Vec<Failure>)> {
    let hosts = crate::agent_api::fargate_hosts(ctx).await?;
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
        let mut task = new_task(ctx, &cluster.cluster_arn, &cluster.cluster_name, td, req, Some("FARGATE"), None);
        if provider.is_some() {
            task.launch_type = None;
            task.capacity_provider_name.clone_from(&provider);
        } else {
            task.capacity_provider_name = Some("FARGATE".into());
        }
        let host = &hosts[rand::random_range(0..hosts.len())];
        task.extra.insert(crate::agent_api::FARGATE_HOST_FIELD.into(), json!(host));
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

pub async fn start(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: RunRequest = input(v)?;
    if req.container_instances.is_empty() || req.container_instances.len() > 10 {
        return Err(Error::invalid("containerInstances", "Specify between 1 and 10 container instances."));
    }
    let cluster = active_cluster(ctx, req.cluster.as_deref()).await?;
    let td = require(ctx, &req.task_definition, "taskDefinition").await?.doc;
    check_common(&td, &req)?;
    let mut all_tasks = vec![];
    let mut all_failures = vec![];
    for r in &req.container_instances {
        let (_, id) = split_ref(ctx, r, "container-instance", "containerInstances")?;
        let only = [id.to_string()];
        let (tasks, failures) =
            place(ctx, &cluster.doc.cluster_arn, &cluster.doc.cluster_name, &td, &req, 1, Some(&only)).await?;
        if tasks.is_empty() && failures.is_empty() {
            all_failures.push(Failure::missing(r.clone()));
        }
        all_tasks.extend(tasks);
        all_failures.extend(failures);
    }
    output(json!({ "tasks": all_tasks, "failures": all_failures }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StopRequest {
    cluster: Option<String>,
    task: String,
    reason: Option<String>,
}

pub async fn stop(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: StopRequest = input(v)?;
    let cluster = active_cluster(ctx, req.cluster.as_deref()).await?;
    let (arn_cluster, id) = split_ref(ctx, &req.task, "task", "task")?;
    let cname = arn_cluster.unwrap_or_else(|| cluster.doc.cluster_name.clone());
    let reason = req.reason.clone().unwrap_or_else(|| "Task stopped by user".into());
    let task = stop_task(ctx, &cname, id, &reason, "UserInitiated").await?;
    output(json!({ "task": task }))
}

/// Asks a task to stop (StopTask, the service scheduler). The agent does the stopping; a task
/// no agent has acknowledged yet is finished here and its instance gets its resources back.
/// A task registered with load balancers is deregistered first, as ECS does: it goes
/// DEACTIVATING, its targets drain, and the agent is told to stop it only once the target
/// groups' deregistration delay has passed (see `targets`; the service scheduler ends it).
pub async fn stop_task(ctx: &Ctx, cluster: &str, id: &str, reason: &str, stop_code: &str) -> Result<Task> {
    let keys = Keys::new(ctx);
    let key = keys.task(cluster, id);
    ctx.db
        .update(|| async {
            let Some(t) = ctx.db.get::<Task>(&key).await? else {
                return Err(Error::invalid("task", "The referenced task was not found."));
            };
            if t.doc.desired_status == "STOPPED" {
                return Ok((None, t.doc));
            }
            let now = wharf_types::now();
            let mut doc = t.doc.clone();
            doc.desired_status = "STOPPED".into();
            doc.stopping_at = Some(now);
            doc.stop_code = Some(stop_code.into());
            doc.stopped_reason = Some(reason.into());
            doc.version += 1;
            let mut txn = Txn { compares: vec![Compare::ModRevision(key.clone(), t.rev)], ops: vec![] };
            let serving = matches!(doc.last_status.as_str(), "PENDING" | "ACTIVATING" | "RUNNING");
            if serving && !super::targets::registered(&doc).is_empty() {
                doc.last_status = "DEACTIVATING".into();
                super::targets::begin_draining(ctx, &mut doc, now, &mut txn).await?;
            }
            if doc.last_status == "PROVISIONING" {
                doc.last_status = "STOPPED".into();
                doc.stopped_at = Some(now);
                for c in &mut doc.containers {
                    c.last_status = "STOPPED".into();
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

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeRequest {
    cluster: Option<String>,
    tasks: Vec<String>,
    #[serde(default)]
    include: Vec<String>,
}

pub async fn describe(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DescribeRequest = input(v)?;
    if req.tasks.is_empty() || req.tasks.len() > 100 {
        return Err(Error::invalid("tasks", "Specify between 1 and 100 tasks."));
    }
    let cluster = active_cluster(ctx, req.cluster.as_deref()).await?;
    let keys = Keys::new(ctx);
    let with_tags = req.include.iter().any(|i| i == "TAGS");
    let (mut tasks, mut failures) = (vec![], vec![]);
    for r in &req.tasks {
        let (arn_cluster, id) = split_ref(ctx, r, "task", "tasks")?;
        let cname = arn_cluster.unwrap_or_else(|| cluster.doc.cluster_name.clone());
        match ctx.db.get::<Task>(&keys.task(&cname, id)).await? {
            Some(t) => {
                let mut doc = t.doc;
                doc.tags = if with_tags { tags::read(ctx, &doc.task_arn).await? } else { vec![] };
                let mut v = output(&doc)?;
                if !with_tags && let Some(o) = v.as_object_mut() {
                    o.remove("tags");
                }
                tasks.push(v);
            }
            None => failures.push(Failure::missing(ctx.scope.arn("ecs", format!("task/{cname}/{id}")))),
        }
    }
    output(json!({ "tasks": tasks, "failures": failures }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListRequest {
    cluster: Option<String>,
    container_instance: Option<String>,
    family: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
    started_by: Option<String>,
    service_name: Option<String>,
    desired_status: Option<String>,
    launch_type: Option<String>,
}

pub async fn list(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: ListRequest = input(v)?;
    let cluster = active_cluster(ctx, req.cluster.as_deref()).await?;
    let limit = max_results(req.max_results, 100, 100)?;
    if req.family.is_some() && req.service_name.is_some() {
        return Err(Error::invalid("family", "family and serviceName cannot both be specified."));
    }
    let instance = match &req.container_instance {
        Some(r) => Some(split_ref(ctx, r, "container-instance", "containerInstance")?.1.to_string()),
        None => None,
    };
    let desired = req.desired_status.as_deref().unwrap_or("RUNNING");
    let family_prefix = req.family.as_ref().map(|f| format!("task-definition/{f}:"));
    let group = req.service_name.as_ref().map(|s| format!("service:{s}"));
    let prefix = Keys::new(ctx).tasks(&cluster.doc.cluster_name);
    let (arns, next) = scan(&ctx.db, &prefix, req.next_token.as_deref(), limit, false, |t: &Task| {
        let status_ok = match desired {
            // ECS lists PENDING tasks under RUNNING: both are on their way to running.
            "RUNNING" | "PENDING" => t.desired_status == "RUNNING",
            s => t.desired_status == s,
        };
        let keep = status_ok
            && instance
                .as_ref()
                .is_none_or(|i| t.container_instance_arn.as_ref().is_some_and(|a| a.ends_with(&format!("/{i}"))))
            && family_prefix.as_ref().is_none_or(|f| t.task_definition_arn.contains(&format!(":{f}")))
            && req.started_by.as_ref().is_none_or(|s| t.started_by.as_ref() == Some(s))
            && group.as_ref().is_none_or(|g| t.group.as_ref() == Some(g))
            && req.launch_type.as_ref().is_none_or(|l| t.launch_type.as_ref() == Some(l));
        keep.then(|| t.task_arn.clone())
    })
    .await?;
    Ok(with_token(json!({ "taskArns": arns }), next))
}
