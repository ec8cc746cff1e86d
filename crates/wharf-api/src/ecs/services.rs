//! Services: the desired state the service scheduler (`wharf-controllers`) keeps running.
//! This module stores and validates the whole shape and keeps `deployments[]` as ECS does:
//! one PRIMARY, older ones ACTIVE until drained.

use super::strategies::{self, deployment_configuration};
use super::task_definitions::{container, require};
use super::{Keys, active_cluster, check_name, input, output, split_ref, tags};
use crate::Ctx;
use crate::db::cas_put;
use crate::paging::{max_results, scan, with_token};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use wharf_core::deployments;
use wharf_store::Txn;
use wharf_types::ecs::{
    DeploymentConfiguration, DeploymentController, DeploymentControllerType, DeploymentStatus, DeploymentStrategy,
    Failure, LaunchType, SchedulingStrategy, Service, ServiceStatus, Tag, TaskDefinition,
};
use wharf_types::{Error, Result, elb};

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct CreateRequest {
    cluster: Option<String>,
    service_name: String,
    task_definition: Option<String>,
    #[serde(default)]
    load_balancers: Vec<Value>,
    #[serde(default)]
    service_registries: Vec<Value>,
    desired_count: Option<i64>,
    launch_type: Option<LaunchType>,
    capacity_provider_strategy: Option<Vec<Value>>,
    platform_version: Option<String>,
    role: Option<String>,
    deployment_configuration: Option<DeploymentConfiguration>,
    #[serde(default)]
    placement_constraints: Vec<Value>,
    #[serde(default)]
    placement_strategy: Vec<Value>,
    network_configuration: Option<Value>,
    health_check_grace_period_seconds: Option<i64>,
    scheduling_strategy: Option<SchedulingStrategy>,
    deployment_controller: Option<DeploymentController>,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(default, rename = "enableECSManagedTags")]
    enable_ecs_managed_tags: bool,
    propagate_tags: Option<String>,
    #[serde(default)]
    enable_execute_command: bool,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

fn check_launch(launch_type: Option<LaunchType>, strategy: Option<&Vec<Value>>) -> Result<()> {
    if launch_type.is_some() && strategy.is_some_and(|s| !s.is_empty()) {
        return Err(Error::invalid(
            "launchType",
            "Specifying both a launch type and capacity provider strategy is not supported. Remove one and try again.",
        ));
    }
    Ok(())
}

/// ECS allows this many target groups per service.
const MAX_LOAD_BALANCERS: usize = 5;

/// Whether any listener or rule of the scope forwards to target group `arn`.
async fn has_load_balancer(ctx: &Ctx, arn: &str) -> Result<bool> {
    let forwards = |actions: &[elb::Action]| {
        actions.iter().any(|a| {
            a.target_group_arn.as_deref() == Some(arn)
                || a.forward_config.as_ref().is_some_and(|f| f.target_groups.iter().any(|t| t.target_group_arn == arn))
        })
    };
    let (account, region) = (&ctx.scope.account, &ctx.scope.region);
    let listeners = ctx.db.list::<elb::Listener>(&format!("/elb/listener/{account}/{region}/")).await?;
    if listeners.iter().any(|l| forwards(&l.doc.default_actions)) {
        return Ok(true);
    }
    let rules = ctx.db.list::<elb::Rule>(&format!("/elb/rule/{account}/{region}/")).await?;
    Ok(rules.iter().any(|r| forwards(&r.doc.actions)))
}

/// Checks load balancer entries as ECS does: target groups (not Classic Load Balancers) that
/// exist, are attached to a load balancer and suit the task's network mode, and a container
/// and container port of the task definition.
pub(super) async fn check_load_balancers(ctx: &Ctx, lbs: &[Value], td: Option<&TaskDefinition>) -> Result<()> {
    if lbs.len() > MAX_LOAD_BALANCERS {
        return Err(Error::invalid(
            "loadBalancers",
            format!("A service can have at most {MAX_LOAD_BALANCERS} target groups (got {}).", lbs.len()),
        ));
    }
    for lb in lbs {
        let tg = lb.get("targetGroupArn").and_then(Value::as_str);
        let name = lb.get("loadBalancerName").and_then(Value::as_str);
        if tg.is_none() && name.is_some() {
            return Err(Error::invalid(
                "loadBalancers.loadBalancerName",
                "Classic Load Balancers are not supported: specify the targetGroupArn of an Application Load Balancer target group instead of loadBalancerName.",
            ));
        }
        let Some(tg_arn) = tg else {
            return Err(Error::invalid(
                "loadBalancers.targetGroupArn",
                "Either targetGroupArn or loadBalancerName must be specified.",
            ));
        };
        let (Some(cname), Some(port)) =
            (lb.get("containerName").and_then(Value::as_str), lb.get("containerPort").and_then(Value::as_i64))
        else {
            return Err(Error::invalid(
                "loadBalancers.containerName",
                "containerName and containerPort must be specified for a load balancer.",
            ));
        };
        if let Some(td) = td {
            let Some(c) = container(td, cname) else {
                return Err(Error::invalid(
                    "loadBalancers.containerName",
                    format!("The container {cname} does not exist in the task definition."),
                ));
            };
            if !c.port_mappings.iter().any(|pm| pm.container_port == Some(port)) {
                return Err(Error::invalid(
                    "loadBalancers.containerPort",
                    format!("The container {cname} did not have a container port {port} defined."),
                ));
            }
        }
        let doc = match elb::target_group_name(tg_arn) {
            Some(name) => {
                ctx.db
                    .get::<elb::TargetGroup>(&elb::keys::target_group(&ctx.scope.account, &ctx.scope.region, name))
                    .await?
            }
            None => None,
        };
        let Some(group) = doc.map(|d| d.doc).filter(|g| g.target_group_arn == tg_arn) else {
            return Err(Error::invalid(
                "loadBalancers.targetGroupArn",
                "Unable to assume role and validate the specified targetGroupArn. Please verify that the ECS service role being passed has the proper permissions.",
            ));
        };
        if !has_load_balancer(ctx, tg_arn).await? {
            return Err(Error::invalid(
                "loadBalancers.targetGroupArn",
                format!("The target group with targetGroupArn {tg_arn} does not have an associated load balancer."),
            ));
        }
        if let Some(td) = td {
            let mode = td.network_mode.as_deref().unwrap_or("bridge");
            let fits = match group.target_type.as_str() {
                "ip" => mode == "awsvpc",
                "instance" => mode != "awsvpc",
                _ => false,
            };
            if !fits {
                return Err(Error::invalid(
                    "loadBalancers.targetGroupArn",
                    format!(
                        "The provided target group {tg_arn} has target type {}, which is incompatible with the {mode} network mode specified in the task definition.",
                        group.target_type
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// A service on Fargate needs a task definition that can run there.
pub(super) fn check_compatible(td: Option<&TaskDefinition>, launch_type: Option<LaunchType>) -> Result<()> {
    if launch_type == Some(LaunchType::Fargate) && td.is_some_and(|t| !t.compatibilities.iter().any(|c| c == "FARGATE"))
    {
        return Err(Error::invalid("launchType", "Task definition does not support launch_type FARGATE."));
    }
    Ok(())
}

pub(super) fn check_network(td: Option<&TaskDefinition>, network: Option<&Value>) -> Result<()> {
    if td.and_then(|t| t.network_mode.as_deref()) == Some("awsvpc") && network.is_none() {
        return Err(Error::invalid(
            "networkConfiguration",
            "Network Configuration must be provided when networkMode 'awsvpc' is specified.",
        ));
    }
    if td.and_then(|t| t.network_mode.as_deref()) != Some("awsvpc") && network.is_some() && td.is_some() {
        return Err(Error::invalid(
            "networkConfiguration",
            "Network Configuration is not valid for the given networkMode of this task definition.",
        ));
    }
    Ok(())
}

/// What each deployment controller asks of a new service: a CODE_DEPLOY service needs a load
/// balancer (CodeDeploy moves its listeners) and rolls no way of its own; an EXTERNAL one
/// leaves everything its task sets carry to them.
fn check_controller(
    controller: DeploymentControllerType,
    load_balancers: &[Value],
    dc: Option<&DeploymentConfiguration>,
) -> Result<()> {
    let rolls_itself = dc.is_some_and(|d| d.strategy.is_some_and(|s| s != DeploymentStrategy::Rolling));
    match controller {
        DeploymentControllerType::Ecs => Ok(()),
        DeploymentControllerType::CodeDeploy if load_balancers.is_empty() => Err(Error::invalid(
            "loadBalancers",
            "A service using the CODE_DEPLOY deployment controller must be configured with a load balancer.",
        )),
        _ if rolls_itself => Err(Error::invalid(
            "deploymentConfiguration.strategy",
            "The deployment strategy can only be set for services that use the ECS deployment controller.",
        )),
        DeploymentControllerType::External if !load_balancers.is_empty() => Err(external_field("loadBalancers")),
        _ => Ok(()),
    }
}

/// A setting an EXTERNAL service's task sets carry, given to the service.
fn external_field(field: &str) -> Error {
    Error::invalid(
        field,
        format!(
            "{field} cannot be specified for a service that uses the EXTERNAL deployment controller: each task set has its own."
        ),
    )
}

/// A service as the API shows it: with its current revisions, and a CODE_DEPLOY service's
/// deployments as task sets.
fn render(ctx: &Ctx, svc: &Service) -> Result<Value> {
    let mut v = output(svc)?;
    current_revisions(ctx, svc, &mut v);
    super::task_sets::show_task_sets(ctx, svc, &mut v);
    Ok(v)
}

pub async fn create(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: CreateRequest = input(v)?;
    check_name("serviceName", "Service", &req.service_name)?;
    tags::validate(&req.tags)?;
    let cluster = active_cluster(ctx, req.cluster.as_deref()).await?;
    let daemon = req.scheduling_strategy == Some(SchedulingStrategy::Daemon);
    check_controller(
        req.deployment_controller.map_or(DeploymentControllerType::Ecs, |c| c.kind),
        &req.load_balancers,
        req.deployment_configuration.as_ref(),
    )?;
    let external = req.deployment_controller.is_some_and(|c| c.kind == DeploymentControllerType::External);
    if external {
        let given = [
            ("taskDefinition", req.task_definition.is_some()),
            ("networkConfiguration", req.network_configuration.is_some()),
            ("serviceRegistries", !req.service_registries.is_empty()),
            ("platformVersion", req.platform_version.is_some()),
        ];
        if let Some((field, _)) = given.iter().find(|(_, g)| *g) {
            return Err(external_field(field));
        }
    }
    let td = match &req.task_definition {
        Some(r) => Some(require(ctx, r, "taskDefinition").await?.doc),
        None if external => None,
        None => {
            return Err(Error::invalid(
                "taskDefinition",
                "A task definition must be specified for a service that uses the ECS deployment controller.",
            ));
        }
    };
    if td.as_ref().is_some_and(|t| t.status != "ACTIVE") {
        return Err(Error::invalid("taskDefinition", "TaskDefinition is inactive"));
    }
    check_launch(req.launch_type, req.capacity_provider_strategy.as_ref())?;
    super::check_placement(&req.placement_constraints, &req.placement_strategy)?;
    if daemon && req.launch_type == Some(LaunchType::Fargate) {
        return Err(Error::invalid(
            "schedulingStrategy",
            "The DAEMON scheduling strategy is not supported for the FARGATE launch type.",
        ));
    }
    if daemon && req.desired_count.is_some() {
        return Err(Error::invalid(
            "desiredCount",
            "The desiredCount parameter is not valid for services that use the DAEMON scheduling strategy.",
        ));
    }
    let desired = req.desired_count.unwrap_or(0);
    if desired < 0 {
        return Err(Error::invalid("desiredCount", "desiredCount must be greater than or equal to 0."));
    }
    check_load_balancers(ctx, &req.load_balancers, td.as_ref()).await?;
    if req.health_check_grace_period_seconds.is_some() && req.load_balancers.is_empty() {
        return Err(Error::invalid(
            "healthCheckGracePeriodSeconds",
            "Health check grace period is only valid for services configured to use load balancers",
        ));
    }
    if req.health_check_grace_period_seconds.is_some_and(|g| !(0..=2_147_483_647).contains(&g)) {
        return Err(Error::invalid(
            "healthCheckGracePeriodSeconds",
            "healthCheckGracePeriodSeconds must be at least 0.",
        ));
    }
    check_compatible(td.as_ref(), req.launch_type)?;
    check_network(td.as_ref(), req.network_configuration.as_ref())?;
    let deployment_configuration = deployment_configuration(req.deployment_configuration.clone(), daemon)?;
    strategies::check_load_balancers(ctx, &deployment_configuration, &req.load_balancers).await?;
    let requires_fargate =
        td.as_ref().and_then(|t| t.requires_compatibilities.as_ref()).is_some_and(|r| r.iter().any(|c| c == "FARGATE"));
    let launch_type = match (req.launch_type, &req.capacity_provider_strategy) {
        (Some(l), _) => Some(l),
        (None, Some(s)) if !s.is_empty() => None,
        (None, _) if cluster.doc.default_capacity_provider_strategy.is_empty() => {
            Some(if requires_fargate { LaunchType::Fargate } else { LaunchType::Ec2 })
        }
        (None, _) => None,
    };
    let capacity_provider_strategy = match (&launch_type, &req.capacity_provider_strategy) {
        (None, Some(s)) if !s.is_empty() => Some(s.clone()),
        (None, _) => Some(cluster.doc.default_capacity_provider_strategy.clone()),
        _ => None,
    };

    let cluster_name = cluster.doc.cluster_name.clone();
    let key = Keys::new(ctx).service(&cluster_name, &req.service_name);
    let arn = ctx.scope.arn("ecs", format!("service/{cluster_name}/{}", req.service_name));
    let td_arn = td.as_ref().map(|t| t.task_definition_arn.clone());
    let service = ctx
        .db
        .update(|| async {
            let existing = ctx.db.get::<Service>(&key).await?;
            if existing.as_ref().is_some_and(|s| s.doc.status != ServiceStatus::Inactive) {
                return Err(Error::invalid("serviceName", "Creation of service was not idempotent."));
            }
            let now = wharf_types::now();
            let r = req.clone();
            let mut service = Service {
                service_arn: arn.clone(),
                service_name: r.service_name,
                cluster_arn: cluster.doc.cluster_arn.clone(),
                load_balancers: r.load_balancers,
                service_registries: r.service_registries,
                status: ServiceStatus::Active,
                desired_count: if daemon { 0 } else { desired },
                running_count: 0,
                pending_count: 0,
                launch_type,
                capacity_provider_strategy: capacity_provider_strategy.clone(),
                platform_version: r
                    .platform_version
                    .or_else(|| (launch_type == Some(LaunchType::Fargate)).then(|| "LATEST".into())),
                task_definition: td_arn.clone(),
                deployment_configuration: deployment_configuration.clone(),
                deployments: vec![],
                role_arn: r.role,
                events: vec![],
                created_at: now,
                placement_constraints: r.placement_constraints,
                placement_strategy: r.placement_strategy,
                network_configuration: r.network_configuration,
                health_check_grace_period_seconds: r.health_check_grace_period_seconds,
                scheduling_strategy: if daemon { SchedulingStrategy::Daemon } else { SchedulingStrategy::Replica },
                deployment_controller: Some(
                    r.deployment_controller.unwrap_or(DeploymentController { kind: DeploymentControllerType::Ecs }),
                ),
                tags: vec![],
                created_by: Some(ctx.principal_arn()),
                enable_ecs_managed_tags: r.enable_ecs_managed_tags,
                propagate_tags: Some(r.propagate_tags.unwrap_or_else(|| "NONE".into())),
                enable_execute_command: r.enable_execute_command,
                last_completed_task_definition: None,
                steady: false,
                live_target_groups: vec![],
                extra: r.extra,
            };
            let mut txn = Txn::default();
            if let Some(td) = &td_arn {
                deployments::start(ctx, &mut service, td, now, None, &mut txn).await?;
            }
            let put = cas_put(&key, existing.map_or(0, |s| s.rev), &service)?;
            txn.compares.extend(put.compares);
            txn.ops.extend(put.ops);
            txn.ops.extend(tags::put_op(ctx, &arn, &req.tags)?);
            Ok((Some(txn), service))
        })
        .await?;
    let mut service = service;
    service.tags = req.tags;
    output(json!({ "service": render(ctx, &service)? }))
}

/// Finds a service by name or ARN in the (resolved) cluster, any status.
async fn find(ctx: &Ctx, cluster: &str, reference: &str, field: &str) -> Result<Option<crate::db::Versioned<Service>>> {
    let (arn_cluster, name) = split_ref(ctx, reference, "service", field)?;
    let cluster = arn_cluster.unwrap_or_else(|| cluster.to_string());
    ctx.db.get::<Service>(&Keys::new(ctx).service(&cluster, name)).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeRequest {
    cluster: Option<String>,
    services: Vec<String>,
    #[serde(default)]
    include: Vec<String>,
}

/// `currentServiceDeployment` (the PRIMARY deployment's ARN) and `currentServiceRevisions`
/// (every revision with tasks, and what it was asked for).
fn current_revisions(ctx: &Ctx, svc: &Service, out: &mut Value) {
    if let Some(p) = svc.deployments.iter().find(|d| d.status == DeploymentStatus::Primary) {
        out["currentServiceDeployment"] = json!(deployments::deployment_arn(ctx, svc, &p.id));
    }
    out["currentServiceRevisions"] = svc
        .deployments
        .iter()
        .map(|d| {
            json!({
                "arn": deployments::revision_arn(ctx, svc, &d.id),
                "requestedTaskCount": d.desired_count,
                "runningTaskCount": d.running_count,
                "pendingTaskCount": d.pending_count,
            })
        })
        .collect();
}

pub async fn describe(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DescribeRequest = input(v)?;
    if req.services.is_empty() || req.services.len() > 10 {
        return Err(Error::invalid("services", "Specify between 1 and 10 services."));
    }
    let cluster = active_cluster(ctx, req.cluster.as_deref()).await?;
    let (mut services, mut failures) = (vec![], vec![]);
    for r in &req.services {
        match find(ctx, &cluster.doc.cluster_name, r, "services").await? {
            Some(s) => {
                let mut doc = s.doc;
                if req.include.iter().any(|i| i == "TAGS") {
                    doc.tags = tags::read(ctx, &doc.service_arn).await?;
                }
                let mut v = render(ctx, &doc)?;
                if !req.include.iter().any(|i| i == "TAGS")
                    && let Some(o) = v.as_object_mut()
                {
                    o.remove("tags");
                }
                services.push(v);
            }
            None => {
                let name = split_ref(ctx, r, "service", "services")?.1;
                failures.push(Failure::missing(
                    ctx.scope.arn("ecs", format!("service/{}/{name}", cluster.doc.cluster_name)),
                ));
            }
        }
    }
    output(json!({ "services": services, "failures": failures }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListRequest {
    cluster: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
    launch_type: Option<LaunchType>,
    scheduling_strategy: Option<SchedulingStrategy>,
    resource_management_type: Option<String>,
}

pub async fn list(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: ListRequest = input(v)?;
    let cluster = active_cluster(ctx, req.cluster.as_deref()).await?;
    let limit = max_results(req.max_results, 10, 100)?;
    let _ = req.resource_management_type;
    let prefix = Keys::new(ctx).services(&cluster.doc.cluster_name);
    let (arns, next) = scan(&ctx.db, &prefix, req.next_token.as_deref(), limit, false, |s: &Service| {
        let keep = s.status != ServiceStatus::Inactive
            && req.launch_type.is_none_or(|l| s.launch_type == Some(l))
            && req.scheduling_strategy.is_none_or(|st| s.scheduling_strategy == st);
        keep.then(|| s.service_arn.clone())
    })
    .await?;
    Ok(with_token(json!({ "serviceArns": arns }), next))
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "camelCase")]
struct UpdateRequest {
    cluster: Option<String>,
    service: String,
    desired_count: Option<i64>,
    task_definition: Option<String>,
    capacity_provider_strategy: Option<Vec<Value>>,
    deployment_configuration: Option<DeploymentConfiguration>,
    network_configuration: Option<Value>,
    placement_constraints: Option<Vec<Value>>,
    placement_strategy: Option<Vec<Value>>,
    platform_version: Option<String>,
    #[serde(default)]
    force_new_deployment: bool,
    health_check_grace_period_seconds: Option<i64>,
    enable_execute_command: Option<bool>,
    #[serde(rename = "enableECSManagedTags")]
    enable_ecs_managed_tags: Option<bool>,
    load_balancers: Option<Vec<Value>>,
    propagate_tags: Option<String>,
    service_registries: Option<Vec<Value>>,
    /// Typed, not left to `extra`: the service document has a field of that name, and a
    /// second copy in `extra` made the stored document unreadable (a duplicate field).
    deployment_controller: Option<DeploymentController>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

/// What UpdateService may not change on a CODE_DEPLOY service: anything that needs new
/// tasks, which only a CodeDeploy deployment starts (ECS's words).
fn check_codedeploy_update(r: &UpdateRequest, svc: &Service, td: Option<&TaskDefinition>) -> Result<()> {
    let refuse = |field: &str, what: &str| {
        Err(Error::invalid(
            field,
            format!(
                "Unable to update {what} on services with a CODE_DEPLOY deployment controller. Use AWS CodeDeploy to trigger a new deployment."
            ),
        ))
    };
    if td.is_some_and(|t| Some(&t.task_definition_arn) != svc.task_definition.as_ref()) {
        return refuse("taskDefinition", "task definition");
    }
    if r.force_new_deployment {
        return refuse("forceNewDeployment", "forceNewDeployment");
    }
    if r.load_balancers.as_ref().is_some_and(|l| l != &svc.load_balancers) {
        return refuse("loadBalancers", "load balancers");
    }
    if r.network_configuration.is_some() && r.network_configuration != svc.network_configuration {
        return refuse("networkConfiguration", "network configuration");
    }
    if r.platform_version.is_some() && r.platform_version != svc.platform_version {
        return refuse("platformVersion", "platform version");
    }
    if r.capacity_provider_strategy.is_some() && r.capacity_provider_strategy != svc.capacity_provider_strategy {
        return refuse("capacityProviderStrategy", "capacity provider strategy");
    }
    if r.deployment_controller.is_some_and(|c| c.kind != DeploymentControllerType::CodeDeploy) {
        return refuse("deploymentController", "the deployment controller");
    }
    if r.deployment_configuration.as_ref().is_some_and(|d| d.strategy.is_some_and(|s| s != DeploymentStrategy::Rolling))
    {
        return Err(Error::invalid(
            "deploymentConfiguration.strategy",
            "The deployment strategy can only be set for services that use the ECS deployment controller.",
        ));
    }
    Ok(())
}

pub async fn update(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: UpdateRequest = input(v)?;
    let cluster = active_cluster(ctx, req.cluster.as_deref()).await?;
    let new_td = match &req.task_definition {
        Some(r) => {
            let td = require(ctx, r, "taskDefinition").await?.doc;
            if td.status != "ACTIVE" {
                return Err(Error::invalid("taskDefinition", "TaskDefinition is inactive"));
            }
            Some(td)
        }
        None => None,
    };
    if req.desired_count.is_some_and(|d| d < 0) {
        return Err(Error::invalid("desiredCount", "desiredCount must be greater than or equal to 0."));
    }
    let service = ctx
        .db
        .update(|| async {
            let Some(s) = find(ctx, &cluster.doc.cluster_name, &req.service, "service").await? else {
                return Err(Error::service_not_found());
            };
            if s.doc.status != ServiceStatus::Active {
                return Err(Error::NotActive("Service was not ACTIVE.".into()));
            }
            let r = req.clone();
            let mut doc = s.doc.clone();
            if deployments::by_codedeploy(&doc) {
                check_codedeploy_update(&r, &doc, new_td.as_ref())?;
            }
            if deployments::by_external(&doc) {
                let given = [
                    ("taskDefinition", r.task_definition.is_some()),
                    ("networkConfiguration", r.network_configuration.is_some()),
                    ("loadBalancers", r.load_balancers.is_some()),
                    ("serviceRegistries", r.service_registries.is_some()),
                    ("platformVersion", r.platform_version.is_some()),
                    ("forceNewDeployment", r.force_new_deployment),
                ];
                if let Some((field, _)) = given.iter().find(|(_, g)| *g) {
                    return Err(external_field(field));
                }
            }
            let daemon = doc.scheduling_strategy == SchedulingStrategy::Daemon;
            if let Some(d) = r.desired_count {
                if daemon {
                    return Err(Error::invalid(
                        "desiredCount",
                        "The desiredCount parameter is not valid for services that use the DAEMON scheduling strategy.",
                    ));
                }
                doc.desired_count = d;
            }
            let current_td = match (&new_td, &doc.task_definition) {
                (Some(t), _) => Some(t.clone()),
                (None, Some(arn)) => super::task_definitions::resolve(ctx, arn, "taskDefinition").await?.map(|t| t.doc),
                (None, None) => None,
            };
            if let Some(dc) = r.deployment_configuration {
                let mut merged = doc.deployment_configuration.clone();
                merged.maximum_percent = dc.maximum_percent.or(merged.maximum_percent);
                merged.minimum_healthy_percent = dc.minimum_healthy_percent.or(merged.minimum_healthy_percent);
                merged.deployment_circuit_breaker = dc.deployment_circuit_breaker.or(merged.deployment_circuit_breaker);
                let strategy_changed = dc.strategy.is_some_and(|s| Some(s) != merged.strategy);
                merged.strategy = dc.strategy.or(merged.strategy);
                // A new strategy starts from its own defaults; settings of the old one go.
                if strategy_changed {
                    merged.bake_time_in_minutes = None;
                    merged.linear_configuration = None;
                    merged.canary_configuration = None;
                    merged.lifecycle_hooks = None;
                }
                merged.bake_time_in_minutes = dc.bake_time_in_minutes.or(merged.bake_time_in_minutes);
                merged.linear_configuration = dc.linear_configuration.or(merged.linear_configuration);
                merged.canary_configuration = dc.canary_configuration.or(merged.canary_configuration);
                merged.lifecycle_hooks = dc.lifecycle_hooks.or(merged.lifecycle_hooks);
                merged.alarms = dc.alarms.or(merged.alarms);
                merged.extra.extend(dc.extra);
                doc.deployment_configuration = deployment_configuration(Some(merged), daemon)?;
            }
            let network_changed =
                r.network_configuration.is_some() && r.network_configuration != doc.network_configuration;
            if let Some(n) = r.network_configuration {
                doc.network_configuration = Some(n);
            }
            check_compatible(new_td.as_ref(), doc.launch_type)?;
            check_network(current_td.as_ref(), doc.network_configuration.as_ref())?;
            let mut lbs_changed = false;
            if let Some(lbs) = r.load_balancers {
                check_load_balancers(ctx, &lbs, current_td.as_ref()).await?;
                lbs_changed = lbs != doc.load_balancers;
                doc.load_balancers = lbs;
            }
            if let Some(g) = r.health_check_grace_period_seconds {
                if doc.load_balancers.is_empty() {
                    return Err(Error::invalid(
                        "healthCheckGracePeriodSeconds",
                        "Health check grace period is only valid for services configured to use load balancers",
                    ));
                }
                doc.health_check_grace_period_seconds = Some(g);
            }
            if let Some(s) = r.capacity_provider_strategy {
                doc.capacity_provider_strategy = Some(s);
                doc.launch_type = None;
            }
            if let Some(p) = r.placement_constraints {
                doc.placement_constraints = p;
            }
            if let Some(p) = r.placement_strategy {
                doc.placement_strategy = p;
            }
            super::check_placement(&doc.placement_constraints, &doc.placement_strategy)?;
            if let Some(p) = r.platform_version {
                doc.platform_version = Some(p);
            }
            if let Some(e) = r.enable_execute_command {
                doc.enable_execute_command = e;
            }
            if let Some(e) = r.enable_ecs_managed_tags {
                doc.enable_ecs_managed_tags = e;
            }
            if let Some(p) = r.propagate_tags {
                doc.propagate_tags = Some(p);
            }
            if let Some(sr) = r.service_registries {
                doc.service_registries = sr;
            }
            if let Some(c) = r.deployment_controller {
                check_controller(c.kind, &doc.load_balancers, Some(&doc.deployment_configuration))?;
                doc.deployment_controller = Some(c);
            }
            strategies::check_load_balancers(ctx, &doc.deployment_configuration, &doc.load_balancers).await?;
            strategies::check_live_groups(&mut doc)?;
            let shifting = doc.deployments.iter().any(|d| {
                d.status == DeploymentStatus::Primary
                    && d.shift.is_some()
                    && d.rollout_state == Some(wharf_types::ecs::RolloutState::InProgress)
            });
            if shifting && doc.deployment_configuration.strategy != s.doc.deployment_configuration.strategy {
                return Err(Error::invalid(
                    "deploymentConfiguration.strategy",
                    "The deployment strategy cannot change while a deployment shifts traffic: wait for it, or stop it with StopServiceDeployment.",
                ));
            }
            doc.extra.extend(r.extra);
            let td_changed =
                new_td.as_ref().is_some_and(|t| Some(&t.task_definition_arn) != doc.task_definition.as_ref());
            if let Some(t) = &new_td {
                doc.task_definition = Some(t.task_definition_arn.clone());
            }
            let now = wharf_types::now();
            let mut history = Txn::default();
            // New target groups need new tasks (ECS starts them, then stops the old ones).
            let mut started = false;
            if (td_changed || r.force_new_deployment || network_changed || lbs_changed)
                && let Some(td) = doc.task_definition.clone()
            {
                deployments::start(ctx, &mut doc, &td, now, None, &mut history).await?;
                started = true;
            }
            // Task sets of an EXTERNAL service follow desiredCount by their scale.
            let desired = doc.desired_count;
            deployments::apply_desired_count(&mut doc, desired, now, started);
            let mut txn = cas_put(&s.key, s.rev, &doc)?;
            txn.compares.extend(history.compares);
            txn.ops.extend(history.ops);
            Ok((Some(txn), doc))
        })
        .await?;
    let mut v = render(ctx, &service)?;
    if let Some(o) = v.as_object_mut() {
        o.remove("tags");
    }
    output(json!({ "service": v }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteRequest {
    cluster: Option<String>,
    service: String,
    #[serde(default)]
    force: bool,
}

pub async fn delete(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DeleteRequest = input(v)?;
    let cluster = active_cluster(ctx, req.cluster.as_deref()).await?;
    let service = ctx
        .db
        .update(|| async {
            let Some(s) = find(ctx, &cluster.doc.cluster_name, &req.service, "service").await? else {
                return Err(Error::service_not_found());
            };
            match s.doc.status {
                ServiceStatus::Active => {}
                ServiceStatus::Draining => return Ok((None, s.doc)),
                ServiceStatus::Inactive => return Err(Error::NotActive("Service was not ACTIVE.".into())),
            }
            if s.doc.scheduling_strategy == SchedulingStrategy::Replica && s.doc.desired_count > 0 && !req.force {
                return Err(Error::invalid("service", "The service cannot be stopped while it is scaled above 0."));
            }
            let mut doc = s.doc.clone();
            doc.status = ServiceStatus::Draining;
            doc.desired_count = 0;
            for d in &mut doc.deployments {
                d.desired_count = 0;
                d.updated_at = wharf_types::now();
            }
            Ok((Some(cas_put(&s.key, s.rev, &doc)?), doc))
        })
        .await?;
    let mut v = render(ctx, &service)?;
    if let Some(o) = v.as_object_mut() {
        o.remove("tags");
    }
    output(json!({ "service": v }))
}
