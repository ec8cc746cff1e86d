//! The tasks API: RunTask and StartTask check a request against its task definition and
//! launch through `wharf_core::tasks` (placement with CPU, memory and port accounting, or
//! Fargate capacity), StopTask asks a task to stop, DescribeTasks and ListTasks read them.
//! Agents move tasks through their lifecycle (`agent.rs`).

use super::task_definitions::require;
use super::{Keys, active_cluster, input, output, split_ref, tags};
use crate::Ctx;
use crate::paging::{max_results, scan, with_token};
use serde::Deserialize;
use serde_json::{Value, json};
use wharf_core::tasks::{RunRequest, launch, place, stop_task};
use wharf_types::ecs::{Failure, LaunchType, Task, TaskDefinition, TaskStatus};
use wharf_types::{Error, Result};

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
    desired_status: Option<TaskStatus>,
    launch_type: Option<LaunchType>,
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
    let desired = req.desired_status.unwrap_or(TaskStatus::Running);
    let family_prefix = req.family.as_ref().map(|f| format!("task-definition/{f}:"));
    let group = req.service_name.as_ref().map(|s| format!("service:{s}"));
    let prefix = Keys::new(ctx).tasks(&cluster.doc.cluster_name);
    let (arns, next) = scan(&ctx.db, &prefix, req.next_token.as_deref(), limit, false, |t: &Task| {
        let status_ok = match desired {
            // ECS lists PENDING tasks under RUNNING: both are on their way to running.
            TaskStatus::Running | TaskStatus::Pending => t.desired_status == TaskStatus::Running,
            s => t.desired_status == s,
        };
        let keep = status_ok
            && instance
                .as_ref()
                .is_none_or(|i| t.container_instance_arn.as_ref().is_some_and(|a| a.ends_with(&format!("/{i}"))))
            && family_prefix.as_ref().is_none_or(|f| t.task_definition_arn.contains(&format!(":{f}")))
            && req.started_by.as_ref().is_none_or(|s| t.started_by.as_ref() == Some(s))
            && group.as_ref().is_none_or(|g| t.group.as_ref() == Some(g))
            && req.launch_type.is_none_or(|l| t.launch_type == Some(l));
        keep.then(|| t.task_arn.clone())
    })
    .await?;
    Ok(with_token(json!({ "taskArns": arns }), next))
}
