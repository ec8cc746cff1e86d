//! CodeDeploy deployments of ECS services. CreateDeployment reads the AppSpec (YAML or JSON),
//! starts the replacement (green) task set in the target group of the pair that does not
//! serve production, with the deployment group's listeners and the deployment
//! configuration's steps as its plan, and stores the deployment as `deploymentInfo`. The
//! service scheduler carries the task set through its stages; reads derive the live status
//! (Created, InProgress, Ready) and lifecycle events from it, and the scheduler writes the
//! final one (Succeeded, Failed, Stopped) when the task set finishes.

use super::groups::{ecs_service, target_group};
use super::{application, configs, group, text};
use crate::db::encode;
use crate::{Ctx, input};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha2::Digest;
use wharf_core::codedeploy::{CdKeys, is_terminal};
use wharf_core::db::cas_put;
use wharf_core::keys::Keys;
use wharf_store::{Compare, Op, Txn};
use wharf_types::ecs::{
    Deployment, DeploymentStatus, HookAction, HookStatus, HookTimeout, LifecycleHook, LifecycleStage, RolloutState,
    Service, ShiftPlan, TrafficShift,
};
use wharf_types::{Error, Invalid, Limit, Resource, Result};

/// A deployment id: `d-` and nine upper-case letters and digits.
fn deployment_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let id: String = (0..9).map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())])).collect();
    format!("d-{id}")
}

fn not_found(id: &str) -> Error {
    Error::not_found(Resource::Deployment, format!("The deployment {id} could not be found."))
}

/// The hook point ECS's scheduler holds green at before production moves.
const READY_WAIT: &str = "PRE_PRODUCTION_TRAFFIC_SHIFT";

/// What an AppSpec's one `AWS::ECS::Service` resource asks for.
#[derive(Debug, Default)]
struct AppSpec {
    task_definition: String,
    container_name: Option<String>,
    container_port: Option<i64>,
    platform_version: Option<String>,
    network_configuration: Option<Value>,
    capacity_provider_strategy: Option<Value>,
}

/// A member of an AppSpec object, whatever the case of its key (`Resources`, `resources`).
fn member<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v)
}

fn member_str(v: &Value, key: &str) -> Option<String> {
    member(v, key).and_then(|x| match x {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    })
}

fn bad_revision(message: impl Into<String>) -> Error {
    Error::invalid("revision", message)
}

fn parse_appspec(content: &str) -> Result<AppSpec> {
    let doc: Value = serde_yaml_ng::from_str(content)
        .map_err(|e| bad_revision(format!("The AppSpec content is neither valid YAML nor JSON: {e}")))?;
    if member(&doc, "hooks").is_some_and(|h| !h.is_null() && h != &json!([]) && h != &json!({})) {
        return Err(bad_revision(
            "AppSpec Hooks run Lambda functions, which Wharf does not serve. To check the replacement task set before production traffic moves, give the deployment group deploymentReadyOption STOP_DEPLOYMENT and call ContinueDeployment.",
        ));
    }
    let resources = member(&doc, "resources").and_then(Value::as_array).cloned().unwrap_or_default();
    let [resource] = resources.as_slice() else {
        return Err(bad_revision("The AppSpec must have exactly one resource in Resources (the ECS service)."));
    };
    let Some((_, body)) =
        resource.as_object().and_then(|o| o.iter().next()).filter(|_| resource.as_object().map(Map::len) == Some(1))
    else {
        return Err(bad_revision("An AppSpec resource is one named entry: <name>: {Type, Properties}."));
    };
    if let Some(kind) = member_str(body, "type")
        && kind != "AWS::ECS::Service"
    {
        return Err(bad_revision(format!("The AppSpec resource's Type must be AWS::ECS::Service, not {kind}.")));
    }
    let props = member(body, "properties").cloned().unwrap_or(json!({}));
    let Some(task_definition) = member_str(&props, "taskDefinition").filter(|t| !t.is_empty()) else {
        return Err(bad_revision("The AppSpec resource must have Properties.TaskDefinition."));
    };
    let lb = member(&props, "loadBalancerInfo").cloned().unwrap_or(json!({}));
    let network = member(&props, "networkConfiguration").map(|n| {
        let a = member(n, "awsvpcConfiguration").cloned().unwrap_or(json!({}));
        let mut c = json!({
            "subnets": member(&a, "subnets").cloned().unwrap_or(json!([])),
            "securityGroups": member(&a, "securityGroups").cloned().unwrap_or(json!([])),
        });
        if let Some(p) = member_str(&a, "assignPublicIp") {
            c["assignPublicIp"] = json!(p);
        }
        json!({ "awsvpcConfiguration": c })
    });
    let strategy = member(&props, "capacityProviderStrategy").map(|s| {
        let items = s.as_array().cloned().unwrap_or_default();
        Value::Array(
            items
                .iter()
                .map(|i| {
                    let mut o = json!({ "capacityProvider": member_str(i, "capacityProvider") });
                    if let Some(w) = member(i, "weight") {
                        o["weight"] = w.clone();
                    }
                    if let Some(b) = member(i, "base") {
                        o["base"] = b.clone();
                    }
                    o
                })
                .collect(),
        )
    });
    Ok(AppSpec {
        task_definition,
        container_name: member_str(&lb, "containerName"),
        container_port: member(&lb, "containerPort").and_then(|p| p.as_i64().or_else(|| p.as_str()?.parse().ok())),
        platform_version: member_str(&props, "platformVersion"),
        network_configuration: network,
        capacity_provider_strategy: strategy,
    })
}

/// Refuses a new deployment while the group's last one is still going.
pub async fn refuse_if_active(ctx: &Ctx, group: &Value) -> Result<()> {
    let Some(active) = group.get("wharfActiveDeployment").and_then(Value::as_str) else { return Ok(()) };
    let Some(info) = last_deployment_info(ctx, active).await? else { return Ok(()) };
    if !info["status"].as_str().is_some_and(is_terminal) {
        return Err(Error::limit_exceeded(
            Limit::ActiveDeployments,
            format!(
                "The Deployment Group '{}' already has an active Deployment '{active}'",
                text(group, "deploymentGroupName")
            ),
        ));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateRequest {
    application_name: String,
    deployment_group_name: Option<String>,
    revision: Option<Value>,
    deployment_config_name: Option<String>,
    description: Option<String>,
    auto_rollback_configuration: Option<Value>,
    target_instances: Option<Value>,
    #[serde(default)]
    ignore_application_stop_failures: bool,
    #[serde(default)]
    update_outdated_instances_only: bool,
    file_exists_behavior: Option<String>,
    override_alarm_configuration: Option<Value>,
}

/// The AppSpec content of a revision, its sha256 checked when given.
fn appspec_content(revision: &Value) -> Result<String> {
    if text(revision, "revisionType") != "AppSpecContent" {
        return Err(bad_revision(format!(
            "Wharf deploys ECS services from AppSpecContent revisions; {} revisions are not served.",
            if text(revision, "revisionType").is_empty() { "other" } else { text(revision, "revisionType") }
        )));
    }
    let content = text(&revision["appSpecContent"], "content").to_string();
    if content.is_empty() {
        return Err(bad_revision("revision.appSpecContent.content is required."));
    }
    if let Some(sum) = revision["appSpecContent"].get("sha256").and_then(Value::as_str) {
        let actual = hex::encode(sha2::Sha256::digest(content.as_bytes()));
        if !sum.eq_ignore_ascii_case(&actual) {
            return Err(bad_revision(
                "The sha256 of the AppSpec content does not match revision.appSpecContent.sha256.",
            ));
        }
    }
    Ok(content)
}

/// How the deployment moves: the configuration's steps, the group's termination wait, and
/// the ready wait (STOP_DEPLOYMENT) as a PAUSE before production.
fn plan(id: &str, group: &Value, config: &Value) -> ShiftPlan {
    let bg = &group["blueGreenDeploymentConfiguration"];
    let ready = &bg["deploymentReadyOption"];
    let mut hooks = vec![];
    if text(ready, "actionOnTimeout") == "STOP_DEPLOYMENT" {
        hooks.push(LifecycleHook {
            hook_target_arn: None,
            target_type: Some("PAUSE".into()),
            lifecycle_stages: vec![READY_WAIT.into()],
            timeout_configuration: Some(HookTimeout {
                action: Some(HookAction::Rollback),
                timeout_in_minutes: ready["waitTimeInMinutes"].as_i64(),
            }),
            extra: Map::new(),
        });
    }
    ShiftPlan {
        steps: configs::steps(config),
        bake_minutes: bg["terminateBlueInstancesOnDeploymentSuccess"]["terminationWaitTimeInMinutes"]
            .as_f64()
            .unwrap_or(0.0),
        hooks,
        codedeploy_deployment: Some(id.to_string()),
    }
}

/// The service's load balancers as the deployment's task set registers them: the group's
/// target group pair and listeners (their default rules) as `advancedConfiguration`, the
/// AppSpec's container and port.
async fn load_balancers(ctx: &Ctx, svc: &Service, group: &Value, spec: &AppSpec) -> Result<Vec<Value>> {
    let pair = &group["loadBalancerInfo"]["targetGroupPairInfoList"][0];
    let mut arns = vec![];
    for t in pair["targetGroups"].as_array().cloned().unwrap_or_default() {
        let name = text(&t, "name");
        let tg = target_group(ctx, name).await?.ok_or_else(|| {
            Error::invalid("loadBalancerInfo", format!("The deployment group's target group {name} no longer exists."))
        })?;
        arns.push(tg.target_group_arn);
    }
    let rule = |route: &str| -> Option<String> {
        let arn = pair[route]["listenerArns"][0].as_str()?;
        Some(arn.to_string())
    };
    let mut out = vec![];
    for lb in &svc.load_balancers {
        let mut lb = lb.clone();
        let tg = lb["targetGroupArn"].as_str().unwrap_or_default().to_string();
        let Some(other) = arns.iter().find(|a| **a != tg).cloned() else { continue };
        let mut advanced = json!({ "alternateTargetGroupArn": other, "roleArn": group["serviceRoleArn"] });
        if let Some(prod) = rule("prodTrafficRoute") {
            advanced["productionListenerRule"] = json!(default_rule(ctx, &prod).await?);
        }
        if let Some(test) = rule("testTrafficRoute") {
            advanced["testListenerRule"] = json!(default_rule(ctx, &test).await?);
        }
        lb["advancedConfiguration"] = advanced;
        if let Some(c) = &spec.container_name {
            lb["containerName"] = json!(c);
        }
        if let Some(p) = spec.container_port {
            lb["containerPort"] = json!(p);
        }
        out.push(lb);
    }
    Ok(out)
}

/// The default rule of listener `arn`.
async fn default_rule(ctx: &Ctx, arn: &str) -> Result<String> {
    let id = arn.rsplit('/').next().unwrap_or_default();
    let key = wharf_types::elb::keys::listener(&ctx.scope.account, &ctx.scope.region, id);
    let l = ctx.db.get::<wharf_types::elb::Listener>(&key).await?;
    l.and_then(|l| l.doc.default_rule_arn).ok_or_else(|| {
        Error::invalid("loadBalancerInfo", format!("The deployment group's listener {arn} no longer exists."))
    })
}

pub async fn create(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: CreateRequest = input(v)?;
    application(ctx, &req.application_name).await?;
    let Some(group_name) = req.deployment_group_name.clone() else {
        return Err(Error::invalid(
            "deploymentGroupName",
            "A deployment of an ECS application needs a deploymentGroupName.",
        ));
    };
    let g = group(ctx, &req.application_name, &group_name).await?;
    if req.description.as_ref().is_some_and(|d| d.chars().count() > 512) {
        return Err(Error::invalid("description", "The description is longer than 512 characters."));
    }
    if req.target_instances.is_some() || req.file_exists_behavior.is_some() || req.update_outdated_instances_only {
        return Err(Error::invalid(
            "targetInstances",
            "targetInstances, fileExistsBehavior and updateOutdatedInstancesOnly apply to the EC2/On-premises compute platform.",
        ));
    }
    if req.override_alarm_configuration.as_ref().is_some_and(|a| a["enabled"].as_bool() == Some(true)) {
        return Err(Error::invalid(
            "overrideAlarmConfiguration",
            "CloudWatch alarms are not served by Wharf yet: a deployment cannot be stopped on an alarm.",
        ));
    }
    let Some(revision) = req.revision.clone() else {
        return Err(bad_revision("A deployment of an ECS application needs a revision (AppSpecContent)."));
    };
    let spec = parse_appspec(&appspec_content(&revision)?)?;
    let config_name =
        req.deployment_config_name.clone().unwrap_or_else(|| text(&g.doc, "deploymentConfigName").to_string());
    let config = configs::find(ctx, &config_name).await?;
    let td = wharf_core::task_definitions::resolve(ctx, &spec.task_definition, "revision")
        .await
        .ok()
        .flatten()
        .filter(|t| t.doc.status == "ACTIVE")
        .ok_or_else(|| {
            bad_revision(format!(
                "The AppSpec's TaskDefinition {} is not an ACTIVE task definition.",
                spec.task_definition
            ))
        })?
        .doc;
    if let Some(c) = &spec.container_name
        && wharf_core::task_definitions::container(&td, c).is_none()
    {
        return Err(bad_revision(format!(
            "The AppSpec's LoadBalancerInfo.ContainerName {c} is not a container of {}.",
            td.task_definition_arn
        )));
    }
    let first = ecs_service(ctx, &g.doc).await?;
    let skey = Keys::new(ctx).service(first.cluster_arn.rsplit('/').next().unwrap_or_default(), &first.service_name);
    let auto_rollback =
        req.auto_rollback_configuration.clone().unwrap_or_else(|| g.doc["autoRollbackConfiguration"].clone());
    let id = deployment_id();
    ctx.db
        .update(|| async {
            let g = group(ctx, &req.application_name, &group_name).await?;
            refuse_if_active(ctx, &g.doc).await?;
            let s = ctx.db.get::<Service>(&skey).await?.ok_or_else(Error::service_not_found)?;
            let mut svc = s.doc.clone();
            if svc.deployments.iter().any(|d| {
                d.shift.is_some()
                    && d.rollout_state == Some(RolloutState::InProgress)
                    && d.status == DeploymentStatus::Primary
            }) {
                return Err(Error::limit_exceeded(
                    Limit::ActiveDeployments,
                    format!("The service {} already has a deployment in progress.", svc.service_name),
                ));
            }
            let lbs = load_balancers(ctx, &svc, &g.doc, &spec).await?;
            let now = wharf_types::now();
            let mut history = Txn::default();
            let green = wharf_core::deployments::start_codedeploy(
                ctx,
                &mut svc,
                &td.task_definition_arn,
                now,
                lbs,
                plan(&id, &g.doc, &config),
                &mut history,
            )
            .await?;
            let mut blue = None;
            if let Some(d) = svc.deployments.iter_mut().find(|d| d.id == green) {
                if let Some(n) = &spec.network_configuration {
                    d.network_configuration = Some(n.clone());
                }
                if let Some(p) = &spec.platform_version {
                    d.platform_version = Some(p.clone());
                }
                if let Some(c) = &spec.capacity_provider_strategy {
                    d.capacity_provider_strategy = c.as_array().cloned();
                }
                blue = d.shift.as_ref().and_then(|s| s.blue.clone());
            }
            let doc = json!({
                "applicationName": req.application_name,
                "deploymentGroupName": group_name,
                "deploymentConfigName": text(&config, "deploymentConfigName"),
                "deploymentId": id,
                "revision": revision,
                "status": "Created",
                "createTime": now,
                "startTime": now,
                "description": req.description,
                "creator": "user",
                "ignoreApplicationStopFailures": req.ignore_application_stop_failures,
                "autoRollbackConfiguration": auto_rollback,
                "updateOutdatedInstancesOnly": false,
                "deploymentStyle": g.doc["deploymentStyle"],
                "instanceTerminationWaitTimeStarted": false,
                "blueGreenDeploymentConfiguration": g.doc["blueGreenDeploymentConfiguration"],
                "loadBalancerInfo": g.doc["loadBalancerInfo"],
                "deploymentStatusMessages": [],
                "computePlatform": "ECS",
                "wharfEcs": {
                    "clusterArn": svc.cluster_arn,
                    "serviceArn": svc.service_arn,
                    "serviceName": svc.service_name,
                    "taskSet": green,
                    "originalTaskSet": blue,
                },
            });
            let mut gdoc = g.doc.clone();
            if let Some(previous) = g.doc.get("wharfActiveDeployment").and_then(Value::as_str)
                && let Some(info) = last_deployment_info(ctx, previous).await?
                && info["status"] == "Succeeded"
            {
                gdoc["lastSuccessfulDeployment"] = info;
            }
            gdoc["wharfActiveDeployment"] = json!(id);
            gdoc["lastAttemptedDeployment"] = json!({"deploymentId": id, "status": "Created", "createTime": now});
            let key = CdKeys::new(ctx).deployment(&id);
            let mut txn = cas_put(&s.key, s.rev, &svc)?;
            txn.compares.extend(history.compares);
            txn.ops.extend(history.ops);
            txn.compares.push(Compare::ModRevision(key.clone(), 0));
            txn.ops.push(Op::put(&key, encode(&doc)?));
            txn.compares.push(Compare::ModRevision(g.key.clone(), g.rev));
            txn.ops.push(Op::put(&g.key, encode(&gdoc)?));
            Ok((Some(txn), ()))
        })
        .await?;
    Ok(json!({ "deploymentId": id }))
}

/// A stored deployment and, while it runs, its service and task set.
struct Live {
    doc: Value,
    key: String,
    rev: i64,
    service: Option<(String, i64, Service)>,
}

impl Live {
    fn task_set(&self) -> Option<&Deployment> {
        let id = self.doc["wharfEcs"]["taskSet"].as_str()?;
        self.service.as_ref()?.2.deployments.iter().find(|d| d.id == id)
    }

    /// The task set's shift while the deployment runs.
    fn shift(&self) -> Option<&TrafficShift> {
        if is_terminal(text(&self.doc, "status")) {
            return None;
        }
        let d = self.task_set()?;
        (d.rollout_state == Some(RolloutState::InProgress)).then_some(d.shift.as_ref()).flatten()
    }

    /// Waiting for ContinueDeployment before production moves.
    fn ready(&self) -> bool {
        self.shift().is_some_and(|s| {
            s.hooks
                .iter()
                .any(|h| h.stage == READY_WAIT && h.status == HookStatus::AwaitingAction && h.decision.is_none())
        })
    }

    fn status(&self) -> String {
        let stored = text(&self.doc, "status").to_string();
        match self.shift() {
            _ if is_terminal(&stored) => stored,
            Some(_) if self.ready() => "Ready".into(),
            Some(s) if s.stages.len() <= 1 => "Created".into(),
            Some(_) => "InProgress".into(),
            // The task set went without the scheduler finishing it (its service was deleted).
            None if self.task_set().is_none() => "Stopped".into(),
            None => stored,
        }
    }

    /// When each lifecycle stage was entered, live or as the deployment ended.
    fn stages(&self) -> Vec<(LifecycleStage, f64)> {
        let marks: Vec<wharf_types::ecs::StageMark> = match self.task_set().and_then(|d| d.shift.as_ref()) {
            Some(s) if !is_terminal(text(&self.doc, "status")) => s.stages.clone(),
            _ => serde_json::from_value(self.doc["wharfStages"].clone()).unwrap_or_default(),
        };
        marks.into_iter().map(|m| (m.stage, m.at)).collect()
    }

    /// `deploymentInfo` as the API shows it.
    fn info(&self) -> Value {
        let status = self.status();
        let mut d = self.doc.clone();
        d["status"] = json!(status);
        let baking = self.stages().iter().any(|(s, _)| *s >= LifecycleStage::BakeTime);
        d["instanceTerminationWaitTimeStarted"] = json!(baking);
        let count = |s: &str| i64::from(status == s);
        d["deploymentOverview"] = json!({
            "Pending": count("Created"),
            "InProgress": count("InProgress"),
            "Succeeded": count("Succeeded"),
            "Failed": count("Failed") + count("Stopped"),
            "Skipped": 0,
            "Ready": count("Ready"),
        });
        super::public(d)
    }
}

async fn load(ctx: &Ctx, id: &str) -> Result<Live> {
    if !id.starts_with("d-") || id.len() != 11 {
        return Err(Error::invalid("deploymentId", format!("The deployment id {id} is not valid.")));
    }
    let key = CdKeys::new(ctx).deployment(id);
    let d = ctx.db.get::<Value>(&key).await?.ok_or_else(|| not_found(id))?;
    let mut live = Live { doc: d.doc, key: d.key, rev: d.rev, service: None };
    let arn = live.doc["wharfEcs"]["serviceArn"].as_str().unwrap_or_default().to_string();
    if let Some((cluster, name)) = arn.split_once(":service/").and_then(|(_, p)| p.split_once('/')) {
        let skey = Keys::new(ctx).service(cluster, name);
        if let Some(s) = ctx.db.get::<Service>(&skey).await? {
            live.service = Some((s.key, s.rev, s.doc));
        }
    }
    Ok(live)
}

/// A deployment as a group's `lastAttemptedDeployment` shows it (`LastDeploymentInfo`), with
/// its live status.
pub async fn last_deployment_info(ctx: &Ctx, id: &str) -> Result<Option<Value>> {
    let live = match load(ctx, id).await {
        Ok(l) => l,
        Err(Error::NotFound { .. }) => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut info = json!({"deploymentId": id, "status": live.status(), "createTime": live.doc["createTime"]});
    if let Some(end) = live.doc["completeTime"].as_f64() {
        info["endTime"] = json!(end);
    }
    Ok(Some(info))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct IdRequest {
    deployment_id: String,
}

pub async fn get(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: IdRequest = input(v)?;
    Ok(json!({ "deploymentInfo": load(ctx, &req.deployment_id).await?.info() }))
}

pub async fn batch_get(ctx: &Ctx, v: Value) -> Result<Value> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Request {
        deployment_ids: Vec<String>,
    }
    let req: Request = input(v)?;
    if req.deployment_ids.len() > 25 {
        return Err(Error::invalid("deploymentIds", "At most 25 deployment ids can be given."));
    }
    let mut infos = vec![];
    for id in &req.deployment_ids {
        match load(ctx, id).await {
            Ok(l) => infos.push(l.info()),
            Err(Error::NotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(json!({ "deploymentsInfo": infos }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListRequest {
    application_name: Option<String>,
    deployment_group_name: Option<String>,
    #[serde(default)]
    include_only_statuses: Vec<String>,
    create_time_range: Option<Value>,
    next_token: Option<String>,
    external_id: Option<String>,
}

pub async fn list(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: ListRequest = input(v)?;
    if req.next_token.is_some() {
        return Err(Error::invalid("nextToken", "The next token is not valid."));
    }
    match (&req.application_name, &req.deployment_group_name) {
        (Some(app), Some(g)) => {
            group(ctx, app, g).await?;
        }
        (Some(app), None) => {
            application(ctx, app).await?;
        }
        (None, Some(_)) => {
            return Err(Error::invalid("applicationName", "An applicationName is needed with a deploymentGroupName."));
        }
        (None, None) => {}
    }
    let range = req.create_time_range.unwrap_or(json!({}));
    let mut found: Vec<(f64, String)> = vec![];
    for d in ctx.db.list::<Value>(&CdKeys::new(ctx).deployments()).await? {
        let doc = &d.doc;
        let matches = req.application_name.as_deref().is_none_or(|a| text(doc, "applicationName") == a)
            && req.deployment_group_name.as_deref().is_none_or(|g| text(doc, "deploymentGroupName") == g)
            && req.external_id.as_deref().is_none_or(|e| text(doc, "externalId") == e);
        let created = doc["createTime"].as_f64().unwrap_or(0.0);
        let in_range =
            range["start"].as_f64().is_none_or(|s| created >= s) && range["end"].as_f64().is_none_or(|e| created <= e);
        if !matches || !in_range {
            continue;
        }
        if !req.include_only_statuses.is_empty() {
            let live = load(ctx, text(doc, "deploymentId")).await?;
            if !req.include_only_statuses.contains(&live.status()) {
                continue;
            }
        }
        found.push((created, text(doc, "deploymentId").to_string()));
    }
    // Newest first, as CodeDeploy lists them.
    found.sort_by(|a, b| b.0.total_cmp(&a.0));
    Ok(json!({ "deployments": found.into_iter().map(|(_, id)| id).collect::<Vec<_>>() }))
}

/// The deployment's one target: its ECS service, `<cluster>:<service>`.
fn target_id(live: &Live) -> String {
    let arn = live.doc["wharfEcs"]["serviceArn"].as_str().unwrap_or_default();
    let path = arn.split_once(":service/").map_or("", |(_, p)| p);
    path.replacen('/', ":", 1)
}

pub async fn list_targets(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: IdRequest = input(v)?;
    let live = load(ctx, &req.deployment_id).await?;
    Ok(json!({ "targetIds": [target_id(&live)] }))
}

/// CodeDeploy's lifecycle events of an ECS deployment and the stage each one is.
const EVENTS: [(&str, LifecycleStage); 8] = [
    ("BeforeInstall", LifecycleStage::PreScaleUp),
    ("Install", LifecycleStage::ScaleUp),
    ("AfterInstall", LifecycleStage::PostScaleUp),
    ("AllowTestTraffic", LifecycleStage::TestTrafficShift),
    ("AfterAllowTestTraffic", LifecycleStage::PostTestTrafficShift),
    ("BeforeAllowTraffic", LifecycleStage::ProductionTrafficShift),
    ("AllowTraffic", LifecycleStage::ProductionTrafficShift),
    ("AfterAllowTraffic", LifecycleStage::PostProductionTrafficShift),
];

fn lifecycle_events(live: &Live) -> Vec<Value> {
    let stages = live.stages();
    let status = live.status();
    let ended = is_terminal(&status);
    let succeeded = status == "Succeeded";
    let ready = live.ready();
    EVENTS
        .iter()
        .map(|(name, stage)| {
            let at = stages.iter().position(|(s, _)| s == stage);
            let mut e = json!({ "lifecycleEventName": name });
            let Some(i) = at else {
                e["status"] = json!(if ended { "Skipped" } else { "Pending" });
                return e;
            };
            let start = stages[i].1;
            let next = stages.get(i + 1).map(|(_, t)| *t);
            let before_allow = *name == "BeforeAllowTraffic";
            e["startTime"] = json!(start);
            let done = if before_allow { !ready } else { next.is_some() || succeeded };
            if done {
                e["endTime"] = json!(if before_allow { start } else { next.unwrap_or(start) });
                e["status"] = json!("Succeeded");
            } else {
                e["status"] = json!(if ended { "Failed" } else { "InProgress" });
            }
            e
        })
        .collect()
}

/// The task sets of the deployment as `taskSetsInfo`: green and, while it runs, blue.
async fn task_sets_info(ctx: &Ctx, live: &Live) -> Result<Vec<Value>> {
    let Some((_, _, svc)) = &live.service else { return Ok(vec![]) };
    let green_id = live.doc["wharfEcs"]["taskSet"].as_str().unwrap_or_default();
    let blue_id = live.doc["wharfEcs"]["originalTaskSet"].as_str().unwrap_or_default();
    let weight = live
        .task_set()
        .and_then(|d| d.shift.as_ref())
        .map_or(if text(&live.doc, "status") == "Succeeded" { 100.0 } else { 0.0 }, |s| s.production_weight);
    let mut out = vec![];
    for (id, label, share) in [(blue_id, "Blue", 100.0 - weight), (green_id, "Green", weight)] {
        let Some(d) = svc.deployments.iter().find(|d| d.id == id) else { continue };
        let group_arn = if label == "Green" {
            d.load_balancers.first().and_then(|lb| lb["targetGroupArn"].as_str()).map(str::to_string)
        } else {
            live.task_set()
                .and_then(|g| g.load_balancers.first())
                .and_then(|lb| lb["advancedConfiguration"]["alternateTargetGroupArn"].as_str())
                .map(str::to_string)
        };
        let mut ts = json!({
            "identifer": d.id,
            "desiredCount": d.desired_count,
            "pendingCount": d.pending_count,
            "runningCount": d.running_count,
            "status": d.status,
            "trafficWeight": share,
            "taskSetLabel": label,
        });
        if let Some(name) = group_arn.as_deref().and_then(wharf_types::elb::target_group_name) {
            ts["targetGroup"] = json!({ "name": name });
        }
        let _ = ctx;
        out.push(ts);
    }
    Ok(out)
}

async fn target(ctx: &Ctx, live: &Live) -> Result<Value> {
    let status = live.status();
    let target_status = match status.as_str() {
        "Created" => "Pending",
        s => s,
    };
    let updated = live.task_set().map(|d| d.updated_at).or_else(|| live.doc["completeTime"].as_f64()).unwrap_or(0.0);
    Ok(json!({
        "deploymentTargetType": "ECSTarget",
        "ecsTarget": {
            "deploymentId": live.doc["deploymentId"],
            "targetId": target_id(live),
            "targetArn": live.doc["wharfEcs"]["serviceArn"],
            "lastUpdatedAt": updated,
            "lifecycleEvents": lifecycle_events(live),
            "status": target_status,
            "taskSetsInfo": task_sets_info(ctx, live).await?,
        }
    }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TargetRequest {
    deployment_id: String,
    target_id: String,
}

pub async fn get_target(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: TargetRequest = input(v)?;
    let live = load(ctx, &req.deployment_id).await?;
    if req.target_id != target_id(&live) {
        return Err(Error::not_found(
            Resource::DeploymentTarget,
            format!("The deployment {} has no target {}.", req.deployment_id, req.target_id),
        ));
    }
    Ok(json!({ "deploymentTarget": target(ctx, &live).await? }))
}

pub async fn batch_get_targets(ctx: &Ctx, v: Value) -> Result<Value> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Request {
        deployment_id: String,
        target_ids: Vec<String>,
    }
    let req: Request = input(v)?;
    let live = load(ctx, &req.deployment_id).await?;
    let mut out = vec![];
    for t in &req.target_ids {
        if *t != target_id(&live) {
            return Err(Error::not_found(
                Resource::DeploymentTarget,
                format!("The deployment {} has no target {t}.", req.deployment_id),
            ));
        }
        out.push(target(ctx, &live).await?);
    }
    Ok(json!({ "deploymentTargets": out }))
}

/// Changes the running deployment's task set shift with `change`, in one compare-and-swap of
/// the service (and of the deployment document, when `doc` changes it too).
async fn with_shift(ctx: &Ctx, id: &str, change: impl Fn(&mut TrafficShift, &mut Value) -> Result<()>) -> Result<()> {
    ctx.db
        .update(|| async {
            let live = load(ctx, id).await?;
            let status = live.status();
            if is_terminal(&status) {
                return Err(Error::invalid_input(
                    Invalid::DeploymentCompleted,
                    format!("The deployment {id} has already completed ({status})."),
                ));
            }
            let Some((skey, srev, mut svc)) = live.service.clone() else { return Err(not_found(id)) };
            let green = live.doc["wharfEcs"]["taskSet"].as_str().unwrap_or_default().to_string();
            let Some(shift) = svc
                .deployments
                .iter_mut()
                .find(|d| d.id == green && d.rollout_state == Some(RolloutState::InProgress))
                .and_then(|d| d.shift.as_mut())
            else {
                return Err(Error::invalid_input(
                    Invalid::DeploymentCompleted,
                    format!("The deployment {id} has already completed."),
                ));
            };
            let mut doc = live.doc.clone();
            change(shift, &mut doc)?;
            let mut txn = cas_put(&skey, srev, &svc)?;
            if doc != live.doc {
                txn.compares.push(Compare::ModRevision(live.key.clone(), live.rev));
                txn.ops.push(Op::put(&live.key, encode(&doc)?));
            }
            Ok((Some(txn), ()))
        })
        .await
}

pub async fn continue_deployment(ctx: &Ctx, v: Value) -> Result<Value> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Request {
        deployment_id: Option<String>,
        deployment_wait_type: Option<String>,
    }
    let req: Request = input(v)?;
    let Some(id) = req.deployment_id else {
        return Err(Error::invalid("deploymentId", "A deploymentId is required."));
    };
    let termination = req.deployment_wait_type.as_deref() == Some("TERMINATION_WAIT");
    let not_ready = |what: &str| {
        Err(Error::invalid_input(Invalid::DeploymentNotReady, format!("The deployment {id} is not {what}.")))
    };
    with_shift(ctx, &id, |shift, _| {
        if termination {
            if shift.stage != LifecycleStage::BakeTime || shift.rollback.is_some() {
                return not_ready("waiting to terminate the original task set");
            }
            if let Some(p) = shift.plan.as_mut() {
                p.bake_minutes = 0.0;
            }
            return Ok(());
        }
        let hook = shift
            .hooks
            .iter_mut()
            .find(|h| h.stage == READY_WAIT && h.status == HookStatus::AwaitingAction && h.decision.is_none());
        let Some(hook) = hook else { return not_ready("in a ready state") };
        hook.decision = Some(HookAction::Continue);
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub async fn stop(ctx: &Ctx, v: Value) -> Result<Value> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Request {
        deployment_id: String,
        auto_rollback_enabled: Option<bool>,
    }
    let req: Request = input(v)?;
    with_shift(ctx, &req.deployment_id, |shift, doc| {
        if shift.stage == LifecycleStage::CleanUp {
            return Err(Error::invalid_input(
                Invalid::DeploymentCompleted,
                "The deployment is terminating the original task set and can no longer be stopped.",
            ));
        }
        shift.rollback = Some("StopDeployment asked for it".into());
        doc["wharfStopRequested"] = json!(true);
        doc["wharfStopRollback"] = json!(req.auto_rollback_enabled.unwrap_or(false));
        Ok(())
    })
    .await?;
    Ok(
        json!({ "status": "Pending", "statusMessage": "Stop deployment requested; traffic returns to the original task set." }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appspecs_in_yaml_and_json_whatever_the_case_of_their_keys() {
        let yaml = "version: 0.0\nResources:\n  - TargetService:\n      Type: AWS::ECS::Service\n      Properties:\n        TaskDefinition: \"arn:aws:ecs:us-east-1:1:task-definition/web:3\"\n        LoadBalancerInfo:\n          ContainerName: \"web\"\n          ContainerPort: \"8080\"\n        PlatformVersion: \"LATEST\"\n        NetworkConfiguration:\n          AwsvpcConfiguration:\n            Subnets: [\"subnet-1\"]\n            AssignPublicIp: \"ENABLED\"\n";
        let spec = parse_appspec(yaml).unwrap();
        assert_eq!(spec.task_definition, "arn:aws:ecs:us-east-1:1:task-definition/web:3");
        assert_eq!((spec.container_name.as_deref(), spec.container_port), (Some("web"), Some(8080)));
        assert_eq!(spec.platform_version.as_deref(), Some("LATEST"));
        assert_eq!(
            spec.network_configuration,
            Some(
                json!({"awsvpcConfiguration": {"subnets": ["subnet-1"], "securityGroups": [], "assignPublicIp": "ENABLED"}})
            )
        );
        // The deploy action sends compact JSON with the keys as the user wrote them.
        let json = r#"{"version":0,"resources":[{"svc":{"type":"AWS::ECS::Service","properties":{"taskDefinition":"web:4","loadBalancerInfo":{"containerName":"web","containerPort":80}}}}]}"#;
        let spec = parse_appspec(json).unwrap();
        assert_eq!((spec.task_definition.as_str(), spec.container_port), ("web:4", Some(80)));
    }

    #[test]
    fn appspecs_without_what_ecs_needs_are_refused() {
        let refused = |s: &str| match parse_appspec(s) {
            Err(Error::InvalidParameter { field, message }) => {
                assert_eq!(field, "revision");
                message
            }
            other => panic!("{s}: {other:?}"),
        };
        assert!(refused("Resources: [{svc: {Type: AWS::ECS::Service, Properties: {}}}]").contains("TaskDefinition"));
        assert!(refused("Resources: []").contains("exactly one"));
        assert!(
            refused("Resources: [{svc: {Type: AWS::Lambda::Function, Properties: {TaskDefinition: x}}}]")
                .contains("AWS::ECS::Service")
        );
        let hooks = "Resources: [{svc: {Properties: {TaskDefinition: x}}}]\nHooks: [{BeforeAllowTraffic: f}]";
        assert!(refused(hooks).contains("Lambda"));
        assert!(refused("{not yaml").contains("YAML"));
    }

    #[test]
    fn revisions_are_appspec_content_with_a_matching_sha256() {
        let content = "Resources: []";
        let sum = hex::encode(sha2::Sha256::digest(content.as_bytes()));
        let ok = json!({"revisionType": "AppSpecContent", "appSpecContent": {"content": content, "sha256": sum}});
        assert_eq!(appspec_content(&ok).unwrap(), content);
        let bad = json!({"revisionType": "AppSpecContent", "appSpecContent": {"content": content, "sha256": "00"}});
        assert!(appspec_content(&bad).is_err());
        assert!(appspec_content(&json!({"revisionType": "S3", "s3Location": {}})).is_err());
        assert!(deployment_id().starts_with("d-") && deployment_id().len() == 11);
    }
}
