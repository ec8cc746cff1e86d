//! Applications and deployment groups. An ECS deployment group names one service that uses the
//! CODE_DEPLOY deployment controller, the pair of target groups its task sets alternate
//! between, the production listener (and optionally a test listener), when green may take
//! production (`deploymentReadyOption`) and how long blue is kept
//! (`terminateBlueInstancesOnDeploymentSuccess`). Groups are stored as `deploymentGroupInfo`.

use super::{application, check_name, configs, group, text};
use crate::db::encode;
use crate::{Ctx, input};
use serde::Deserialize;
use serde_json::{Value, json};
use wharf_core::codedeploy::CdKeys;
use wharf_core::keys::Keys;
use wharf_store::{Compare, Op, Txn};
use wharf_types::ecs::{Service, ServiceStatus};
use wharf_types::elb::{self, Listener, TargetGroup};
use wharf_types::{Error, Resource, Result};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateApplicationRequest {
    application_name: String,
    compute_platform: Option<String>,
    #[serde(default)]
    tags: Vec<Value>,
}

pub async fn create_application(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: CreateApplicationRequest = input(v)?;
    check_name("applicationName", &req.application_name)?;
    if req.compute_platform.as_deref() != Some("ECS") {
        return Err(Error::invalid(
            "computePlatform",
            "Wharf serves CodeDeploy for ECS only: computePlatform must be ECS (Server and Lambda are not served).",
        ));
    }
    let key = CdKeys::new(ctx).application(&req.application_name);
    let doc = json!({
        "applicationId": wharf_types::uuid(),
        "applicationName": req.application_name,
        "createTime": wharf_types::now(),
        "linkedToGitHub": false,
        "computePlatform": "ECS",
        "wharfTags": req.tags,
    });
    let txn = Txn { compares: vec![Compare::ModRevision(key.clone(), 0)], ops: vec![Op::put(&key, encode(&doc)?)] };
    if !ctx.db.commit(txn).await? {
        return Err(Error::already_exists(
            Resource::Application,
            format!("The application {} already exists with the IAM user or AWS account.", req.application_name),
        ));
    }
    Ok(json!({ "applicationId": doc["applicationId"] }))
}

fn application_info(doc: &Value) -> Value {
    super::public(doc.clone())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ApplicationRequest {
    application_name: String,
}

pub async fn get_application(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: ApplicationRequest = input(v)?;
    let app = application(ctx, &req.application_name).await?;
    Ok(json!({ "application": application_info(&app.doc) }))
}

pub async fn batch_get_applications(ctx: &Ctx, v: Value) -> Result<Value> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Request {
        application_names: Vec<String>,
    }
    let req: Request = input(v)?;
    if req.application_names.len() > 100 {
        return Err(Error::invalid("applicationNames", "At most 100 applications can be named."));
    }
    let mut infos = vec![];
    for name in &req.application_names {
        infos.push(application_info(&application(ctx, name).await?.doc));
    }
    Ok(json!({ "applicationsInfo": infos }))
}

pub async fn list_applications(ctx: &Ctx, v: Value) -> Result<Value> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Request {
        next_token: Option<String>,
    }
    let req: Request = input(v)?;
    if req.next_token.is_some() {
        return Err(Error::invalid("nextToken", "The next token is not valid."));
    }
    let apps = ctx.db.list::<Value>(&CdKeys::new(ctx).applications()).await?;
    Ok(json!({ "applications": apps.iter().map(|a| text(&a.doc, "applicationName")).collect::<Vec<_>>() }))
}

pub async fn delete_application(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: ApplicationRequest = input(v)?;
    check_name("applicationName", &req.application_name)?;
    let keys = CdKeys::new(ctx);
    let Some(app) = ctx.db.get::<Value>(&keys.application(&req.application_name)).await? else {
        return Ok(json!({}));
    };
    let mut txn = Txn {
        compares: vec![Compare::ModRevision(app.key.clone(), app.rev)],
        ops: vec![Op::Delete { key: app.key.clone() }],
    };
    for g in ctx.db.list::<Value>(&keys.groups(&req.application_name)).await? {
        txn.compares.push(Compare::ModRevision(g.key.clone(), g.rev));
        txn.ops.push(Op::Delete { key: g.key });
    }
    ctx.db.commit(txn).await?;
    Ok(json!({}))
}

/// The settings of a deployment group a request gives (CreateDeploymentGroup,
/// UpdateDeploymentGroup): the members of `deploymentGroupInfo` a user sets.
const SETTINGS: [&str; 8] = [
    "deploymentConfigName",
    "serviceRoleArn",
    "deploymentStyle",
    "blueGreenDeploymentConfiguration",
    "loadBalancerInfo",
    "ecsServices",
    "autoRollbackConfiguration",
    "alarmConfiguration",
];

/// Members of the EC2/on-premises and Lambda platforms an ECS group cannot have.
const NOT_ECS: [&str; 7] = [
    "ec2TagFilters",
    "onPremisesInstanceTagFilters",
    "autoScalingGroups",
    "ec2TagSet",
    "onPremisesTagSet",
    "outdatedInstancesStrategy",
    "terminationHookEnabled",
];

fn refuse_not_ecs(v: &Value) -> Result<()> {
    for k in NOT_ECS {
        if v.get(k).is_some_and(|x| !x.is_null() && x != &json!([]) && x != &json!({})) {
            return Err(Error::invalid(
                k,
                format!("{k} does not apply to deployment groups of the ECS compute platform."),
            ));
        }
    }
    if v.get("triggerConfigurations").is_some_and(|t| t.as_array().is_some_and(|a| !a.is_empty())) {
        return Err(Error::invalid(
            "triggerConfigurations",
            "Deployment triggers (SNS notifications) are not served by Wharf.",
        ));
    }
    Ok(())
}

/// The listener `arn` names, if it exists in the caller's scope.
async fn listener(ctx: &Ctx, arn: &str) -> Result<Option<Listener>> {
    let Some(id) = arn.rsplit('/').next() else { return Ok(None) };
    let l = ctx.db.get::<Listener>(&elb::keys::listener(&ctx.scope.account, &ctx.scope.region, id)).await?;
    Ok(l.map(|l| l.doc).filter(|l| l.listener_arn == arn))
}

/// The target group named `name`.
pub async fn target_group(ctx: &Ctx, name: &str) -> Result<Option<TargetGroup>> {
    let key = elb::keys::target_group(&ctx.scope.account, &ctx.scope.region, name);
    Ok(ctx.db.get::<TargetGroup>(&key).await?.map(|t| t.doc))
}

/// The one listener of a traffic route (`prodTrafficRoute`, `testTrafficRoute`).
fn route_listener<'a>(pair: &'a Value, route: &str) -> Result<Option<&'a str>> {
    let field = format!("loadBalancerInfo.targetGroupPairInfoList.{route}.listenerArns");
    let Some(arns) = pair.get(route).and_then(|r| r.get("listenerArns")).and_then(Value::as_array) else {
        return Ok(None);
    };
    match arns.as_slice() {
        [] => Ok(None),
        [one] => one.as_str().map(Some).ok_or_else(|| Error::invalid(&field, "A listener ARN must be a string.")),
        _ => Err(Error::invalid(&field, format!("{route} takes exactly one listener."))),
    }
}

/// The one service of an ECS group, ACTIVE and deployed by CodeDeploy.
pub async fn ecs_service(ctx: &Ctx, group: &Value) -> Result<Service> {
    let services = group.get("ecsServices").and_then(Value::as_array).cloned().unwrap_or_default();
    let [s] = services.as_slice() else {
        return Err(Error::invalid("ecsServices", "An ECS deployment group names exactly one ECS service."));
    };
    let (cluster, name) = (text(s, "clusterName"), text(s, "serviceName"));
    let cluster = cluster.rsplit('/').next().unwrap_or(cluster);
    let name = name.rsplit('/').next().unwrap_or(name);
    let svc = ctx.db.get::<Service>(&Keys::new(ctx).service(cluster, name)).await?.map(|s| s.doc);
    let Some(svc) = svc.filter(|s| s.status == ServiceStatus::Active) else {
        return Err(Error::invalid(
            "ecsServices",
            format!("The ECS service {name} in cluster {cluster} does not exist or is not ACTIVE."),
        ));
    };
    if !wharf_core::deployments::by_codedeploy(&svc) {
        return Err(Error::invalid(
            "ecsServices",
            format!(
                "The ECS service {name} must use the CODE_DEPLOY deployment controller to be deployed by CodeDeploy."
            ),
        ));
    }
    Ok(svc)
}

/// Checks an ECS group's settings as CodeDeploy does and fills in its defaults.
async fn check_group(ctx: &Ctx, g: &mut Value) -> Result<()> {
    refuse_not_ecs(g)?;
    let style = &g["deploymentStyle"];
    if text(style, "deploymentType") != "BLUE_GREEN" || text(style, "deploymentOption") != "WITH_TRAFFIC_CONTROL" {
        return Err(Error::invalid(
            "deploymentStyle",
            "An ECS deployment group needs deploymentStyle BLUE_GREEN with WITH_TRAFFIC_CONTROL.",
        ));
    }
    let name = text(g, "deploymentConfigName").to_string();
    let name = if name.is_empty() { configs::DEFAULT.to_string() } else { name };
    configs::find(ctx, &name).await?;
    g["deploymentConfigName"] = json!(name);

    // When green may take production, and how long blue stays.
    let bg = g.get("blueGreenDeploymentConfiguration").cloned().filter(Value::is_object).unwrap_or(json!({}));
    if bg.get("greenFleetProvisioningOption").is_some() {
        return Err(Error::invalid(
            "blueGreenDeploymentConfiguration.greenFleetProvisioningOption",
            "greenFleetProvisioningOption applies to the EC2/On-premises compute platform.",
        ));
    }
    let ready = bg.get("deploymentReadyOption").cloned().unwrap_or(json!({}));
    let on_timeout = ready.get("actionOnTimeout").and_then(Value::as_str).unwrap_or("CONTINUE_DEPLOYMENT");
    let wait = ready.get("waitTimeInMinutes").and_then(Value::as_i64).unwrap_or(0);
    if !(0..=2880).contains(&wait) {
        return Err(Error::invalid(
            "blueGreenDeploymentConfiguration.deploymentReadyOption.waitTimeInMinutes",
            "waitTimeInMinutes must be between 0 and 2880.",
        ));
    }
    if on_timeout == "STOP_DEPLOYMENT" && wait == 0 {
        return Err(Error::invalid(
            "blueGreenDeploymentConfiguration.deploymentReadyOption.waitTimeInMinutes",
            "With actionOnTimeout STOP_DEPLOYMENT, waitTimeInMinutes must be at least 1.",
        ));
    }
    let terminate = bg.get("terminateBlueInstancesOnDeploymentSuccess").cloned().unwrap_or(json!({}));
    let action = terminate.get("action").and_then(Value::as_str).unwrap_or("TERMINATE");
    let termination = terminate.get("terminationWaitTimeInMinutes").and_then(Value::as_i64).unwrap_or(0);
    if action != "TERMINATE" {
        return Err(Error::invalid(
            "blueGreenDeploymentConfiguration.terminateBlueInstancesOnDeploymentSuccess.action",
            "An ECS deployment group terminates the original task set: action must be TERMINATE.",
        ));
    }
    if !(0..=2880).contains(&termination) {
        return Err(Error::invalid(
            "blueGreenDeploymentConfiguration.terminateBlueInstancesOnDeploymentSuccess.terminationWaitTimeInMinutes",
            "terminationWaitTimeInMinutes must be between 0 and 2880.",
        ));
    }
    g["blueGreenDeploymentConfiguration"] = json!({
        "terminateBlueInstancesOnDeploymentSuccess": {"action": action, "terminationWaitTimeInMinutes": termination},
        "deploymentReadyOption": {"actionOnTimeout": on_timeout, "waitTimeInMinutes": wait},
    });

    // The service, its target group pair and listeners.
    let svc = ecs_service(ctx, g).await?;
    let pairs = g["loadBalancerInfo"]["targetGroupPairInfoList"].as_array().cloned().unwrap_or_default();
    let [pair] = pairs.as_slice() else {
        return Err(Error::invalid(
            "loadBalancerInfo.targetGroupPairInfoList",
            "An ECS deployment group needs exactly one target group pair.",
        ));
    };
    let names: Vec<&str> =
        pair["targetGroups"].as_array().map_or(vec![], |a| a.iter().map(|t| text(t, "name")).collect());
    let field = "loadBalancerInfo.targetGroupPairInfoList.targetGroups";
    if names.len() != 2 || names[0] == names[1] {
        return Err(Error::invalid(field, "A target group pair names two different target groups."));
    }
    let mut arns = vec![];
    for n in &names {
        let tg = target_group(ctx, n)
            .await?
            .ok_or_else(|| Error::invalid(field, format!("The target group {n} does not exist.")))?;
        arns.push(tg.target_group_arn);
    }
    let service_group = svc.load_balancers.first().and_then(|lb| lb["targetGroupArn"].as_str()).unwrap_or_default();
    if !arns.iter().any(|a| a == service_group) {
        return Err(Error::invalid(
            field,
            format!("The service's target group {service_group} must be one of the pair."),
        ));
    }
    let route = "loadBalancerInfo.targetGroupPairInfoList.prodTrafficRoute.listenerArns";
    let Some(prod) = route_listener(pair, "prodTrafficRoute")? else {
        return Err(Error::invalid(route, "A target group pair needs a production listener (prodTrafficRoute)."));
    };
    let test = route_listener(pair, "testTrafficRoute")?;
    if test == Some(prod) {
        return Err(Error::invalid(route, "The test listener must differ from the production listener."));
    }
    for arn in [Some(prod), test].into_iter().flatten() {
        let Some(l) = listener(ctx, arn).await? else {
            return Err(Error::invalid(route, format!("The listener {arn} does not exist.")));
        };
        let forwards_to_pair = l.default_actions.len() == 1
            && l.default_actions[0].kind == "forward"
            && listener_groups(&l).iter().all(|g| arns.contains(g));
        if !forwards_to_pair {
            return Err(Error::invalid(
                route,
                format!("The listener {arn}'s default action must be a single forward to the pair's target groups."),
            ));
        }
    }

    let rollback = g.get("autoRollbackConfiguration").cloned().filter(Value::is_object);
    if let Some(r) = &rollback {
        let events = r.get("events").and_then(Value::as_array).cloned().unwrap_or_default();
        let known = ["DEPLOYMENT_FAILURE", "DEPLOYMENT_STOP_ON_ALARM", "DEPLOYMENT_STOP_ON_REQUEST"];
        if events.iter().any(|e| !e.as_str().is_some_and(|e| known.contains(&e))) {
            return Err(Error::invalid("autoRollbackConfiguration", "Unknown auto rollback event."));
        }
    }
    if g["alarmConfiguration"]["enabled"].as_bool() == Some(true) {
        return Err(Error::invalid(
            "alarmConfiguration",
            "CloudWatch alarms are not served by Wharf yet: a deployment cannot be stopped on an alarm.",
        ));
    }
    Ok(())
}

/// The target groups a listener's default forward sends to.
fn listener_groups(l: &Listener) -> Vec<String> {
    l.default_actions
        .iter()
        .flat_map(|a| match &a.forward_config {
            Some(fc) => fc.target_groups.iter().map(|t| t.target_group_arn.clone()).collect(),
            None => a.target_group_arn.iter().cloned().collect::<Vec<_>>(),
        })
        .collect()
}

/// `deploymentGroupInfo` as the API shows it: its last deployment with its live status (and
/// as the last successful one once it succeeded).
pub async fn group_info(ctx: &Ctx, doc: &Value) -> Result<Value> {
    let mut d = doc.clone();
    if let Some(id) = doc.get("wharfActiveDeployment").and_then(Value::as_str)
        && let Some(info) = super::deployments::last_deployment_info(ctx, id).await?
    {
        if info["status"] == "Succeeded" {
            d["lastSuccessfulDeployment"] = info.clone();
        }
        d["lastAttemptedDeployment"] = info;
    }
    Ok(super::public(d))
}

pub async fn create_group(ctx: &Ctx, v: Value) -> Result<Value> {
    let app_name = v["applicationName"].as_str().unwrap_or_default().to_string();
    let name = v["deploymentGroupName"].as_str().unwrap_or_default().to_string();
    application(ctx, &app_name).await?;
    check_name("deploymentGroupName", &name)?;
    let mut g = json!({
        "applicationName": app_name,
        "deploymentGroupId": wharf_types::uuid(),
        "deploymentGroupName": name,
        "computePlatform": "ECS",
        "ec2TagFilters": [],
        "onPremisesInstanceTagFilters": [],
        "autoScalingGroups": [],
        "triggerConfigurations": [],
        "alarmConfiguration": {"enabled": false, "ignorePollAlarmFailure": false, "alarms": []},
        "autoRollbackConfiguration": {"enabled": false, "events": []},
    });
    for k in SETTINGS.iter().chain(NOT_ECS.iter()).chain(["triggerConfigurations"].iter()) {
        if let Some(x) = v.get(*k) {
            g[*k] = x.clone();
        }
    }
    check_group(ctx, &mut g).await?;
    g["wharfTags"] = v.get("tags").cloned().unwrap_or(json!([]));
    let key = CdKeys::new(ctx).group(&app_name, &name);
    let txn = Txn { compares: vec![Compare::ModRevision(key.clone(), 0)], ops: vec![Op::put(&key, encode(&g)?)] };
    if !ctx.db.commit(txn).await? {
        return Err(Error::already_exists(
            Resource::DeploymentGroup,
            format!("The deployment group {name} already exists for application {app_name}."),
        ));
    }
    Ok(json!({ "deploymentGroupId": g["deploymentGroupId"] }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupRequest {
    application_name: String,
    deployment_group_name: String,
}

pub async fn get_group(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: GroupRequest = input(v)?;
    let g = group(ctx, &req.application_name, &req.deployment_group_name).await?;
    Ok(json!({ "deploymentGroupInfo": group_info(ctx, &g.doc).await? }))
}

pub async fn batch_get_groups(ctx: &Ctx, v: Value) -> Result<Value> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Request {
        application_name: String,
        deployment_group_names: Vec<String>,
    }
    let req: Request = input(v)?;
    application(ctx, &req.application_name).await?;
    let (mut infos, mut missing) = (vec![], vec![]);
    for name in &req.deployment_group_names {
        match ctx.db.get::<Value>(&CdKeys::new(ctx).group(&req.application_name, name)).await? {
            Some(g) => infos.push(group_info(ctx, &g.doc).await?),
            None => missing.push(name.clone()),
        }
    }
    let mut out = json!({ "deploymentGroupsInfo": infos });
    if !missing.is_empty() {
        out["errorMessage"] = json!(format!("Deployment groups not found: {}", missing.join(", ")));
    }
    Ok(out)
}

pub async fn list_groups(ctx: &Ctx, v: Value) -> Result<Value> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Request {
        application_name: String,
        next_token: Option<String>,
    }
    let req: Request = input(v)?;
    application(ctx, &req.application_name).await?;
    if req.next_token.is_some() {
        return Err(Error::invalid("nextToken", "The next token is not valid."));
    }
    let groups = ctx.db.list::<Value>(&CdKeys::new(ctx).groups(&req.application_name)).await?;
    Ok(json!({
        "applicationName": req.application_name,
        "deploymentGroups": groups.iter().map(|g| text(&g.doc, "deploymentGroupName")).collect::<Vec<_>>(),
    }))
}

pub async fn update_group(ctx: &Ctx, v: Value) -> Result<Value> {
    let app_name = v["applicationName"].as_str().unwrap_or_default().to_string();
    let current = v["currentDeploymentGroupName"].as_str().unwrap_or_default().to_string();
    let existing = group(ctx, &app_name, &current).await?;
    if existing.doc.get("wharfActiveDeployment").and_then(Value::as_str).is_some() {
        super::deployments::refuse_if_active(ctx, &existing.doc).await?;
    }
    let mut g = existing.doc.clone();
    for k in SETTINGS.iter().chain(NOT_ECS.iter()).chain(["triggerConfigurations"].iter()) {
        if let Some(x) = v.get(*k) {
            g[*k] = x.clone();
        }
    }
    let new_name = v.get("newDeploymentGroupName").and_then(Value::as_str).unwrap_or(&current).to_string();
    check_name("newDeploymentGroupName", &new_name)?;
    g["deploymentGroupName"] = json!(new_name);
    check_group(ctx, &mut g).await?;
    let keys = CdKeys::new(ctx);
    let new_key = keys.group(&app_name, &new_name);
    let mut txn = Txn { compares: vec![Compare::ModRevision(existing.key.clone(), existing.rev)], ops: vec![] };
    if new_key != existing.key {
        txn.compares.push(Compare::ModRevision(new_key.clone(), 0));
        txn.ops.push(Op::Delete { key: existing.key.clone() });
    }
    txn.ops.push(Op::put(&new_key, encode(&g)?));
    if !ctx.db.commit(txn).await? {
        return Err(Error::already_exists(
            Resource::DeploymentGroup,
            format!("The deployment group {new_name} already exists for application {app_name}."),
        ));
    }
    Ok(json!({ "hooksNotCleanedUp": [] }))
}

pub async fn delete_group(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: GroupRequest = input(v)?;
    application(ctx, &req.application_name).await?;
    check_name("deploymentGroupName", &req.deployment_group_name)?;
    let key = CdKeys::new(ctx).group(&req.application_name, &req.deployment_group_name);
    if let Some(g) = ctx.db.get::<Value>(&key).await? {
        let txn = Txn { compares: vec![Compare::ModRevision(key.clone(), g.rev)], ops: vec![Op::Delete { key }] };
        ctx.db.commit(txn).await?;
    }
    Ok(json!({ "hooksNotCleanedUp": [] }))
}
