//! Clusters: the namespace services, tasks and container instances live in.

use super::{Keys, active_cluster, check_name, cluster_name, input, output, tags};
use crate::Ctx;
use crate::db::cas_put;
use serde::Deserialize;
use serde_json::{Value, json};
use wharf_types::ecs::{
    Cluster, ContainerInstance, Failure, KeyValuePair, LaunchType, Service, ServiceStatus, Tag, TaskStatus,
};
use wharf_types::{Error, InUse, Result};

/// Capacity providers every cluster can use without creating them.
pub(crate) const BUILT_IN_PROVIDERS: &[&str] = &["FARGATE", "FARGATE_SPOT"];

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateRequest {
    cluster_name: Option<String>,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(default)]
    settings: Vec<Value>,
    configuration: Option<Value>,
    #[serde(default)]
    capacity_providers: Vec<String>,
    #[serde(default)]
    default_capacity_provider_strategy: Vec<Value>,
    service_connect_defaults: Option<Value>,
}

fn check_settings(settings: &[Value]) -> Result<()> {
    for s in settings {
        let value = s.get("value").and_then(Value::as_str).unwrap_or_default();
        if !["enabled", "disabled", "enhanced"].contains(&value) {
            return Err(Error::invalid(
                "settings",
                format!("Invalid value '{value}' for setting containerInsights: use enabled, enhanced or disabled."),
            ));
        }
    }
    Ok(())
}

fn check_providers(providers: &[String], strategy: &[Value]) -> Result<()> {
    for p in providers {
        if !BUILT_IN_PROVIDERS.contains(&p.as_str()) {
            return Err(Error::invalid(
                "capacityProviders",
                format!("The specified capacity provider '{p}' does not exist."),
            ));
        }
    }
    let mut base_count = 0;
    for item in strategy {
        let name = item.get("capacityProvider").and_then(Value::as_str).unwrap_or_default();
        if !providers.iter().any(|p| p == name) {
            return Err(Error::invalid(
                "defaultCapacityProviderStrategy",
                format!(
                    "The specified capacity provider strategy cannot contain a capacity provider that is not associated with the cluster. Associate the capacity provider with the cluster or specify a valid capacity provider and try again. ({name})"
                ),
            ));
        }
        if item.get("base").and_then(Value::as_i64).unwrap_or(0) > 0 {
            base_count += 1;
        }
    }
    if base_count > 1 {
        return Err(Error::invalid(
            "defaultCapacityProviderStrategy",
            "Only one capacity provider in a strategy can have a base defined.",
        ));
    }
    Ok(())
}

pub async fn create(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: CreateRequest = input(v)?;
    let name = req.cluster_name.clone().unwrap_or_else(|| "default".into());
    check_name("clusterName", "Cluster", &name)?;
    tags::validate(&req.tags)?;
    check_settings(&req.settings)?;
    check_providers(&req.capacity_providers, &req.default_capacity_provider_strategy)?;
    let key = Keys::new(ctx).cluster(&name);
    let arn = ctx.scope.arn("ecs", format!("cluster/{name}"));
    let cluster = ctx
        .db
        .update(|| async {
            let existing = ctx.db.get::<Cluster>(&key).await?;
            if let Some(c) = &existing
                && c.doc.status == "ACTIVE"
            {
                // CreateCluster is idempotent on the name: ECS answers with the cluster.
                return Ok((None, c.doc.clone()));
            }
            let mut extra = serde_json::Map::new();
            if let Some(c) = &req.configuration {
                extra.insert("configuration".into(), c.clone());
            }
            if let Some(s) = &req.service_connect_defaults {
                extra.insert("serviceConnectDefaults".into(), s.clone());
            }
            let settings = if req.settings.is_empty() {
                vec![json!({"name": "containerInsights", "value": "disabled"})]
            } else {
                req.settings.clone()
            };
            let cluster = Cluster {
                cluster_arn: arn.clone(),
                cluster_name: name.clone(),
                status: "ACTIVE".into(),
                registered_container_instances_count: 0,
                running_tasks_count: 0,
                pending_tasks_count: 0,
                active_services_count: 0,
                statistics: vec![],
                tags: vec![],
                settings,
                capacity_providers: req.capacity_providers.clone(),
                default_capacity_provider_strategy: req.default_capacity_provider_strategy.clone(),
                extra,
            };
            let mut txn = cas_put(&key, existing.map_or(0, |c| c.rev), &cluster)?;
            txn.ops.extend(tags::put_op(ctx, &arn, &req.tags)?);
            Ok((Some(txn), cluster))
        })
        .await?;
    let cluster = with_counts(ctx, cluster).await?;
    output(json!({ "cluster": render(ctx, cluster, &["TAGS"]).await? }))
}

/// Fills the counters ECS reports, computed from what the cluster holds now.
async fn with_counts(ctx: &Ctx, mut c: Cluster) -> Result<Cluster> {
    let keys = Keys::new(ctx);
    let services = ctx.db.list::<Service>(&keys.services(&c.cluster_name)).await?;
    let tasks = ctx.db.list_tasks(&keys.tasks(&c.cluster_name)).await?;
    let instances = ctx.db.list::<ContainerInstance>(&keys.instances(&c.cluster_name)).await?;
    c.active_services_count = services.iter().filter(|s| s.doc.status == ServiceStatus::Active).count() as i64;
    c.running_tasks_count = tasks.iter().filter(|t| t.doc.last_status == TaskStatus::Running).count() as i64;
    c.pending_tasks_count = tasks
        .iter()
        .filter(|t| t.doc.last_status != TaskStatus::Running && t.doc.last_status.holds_resources())
        .count() as i64;
    c.registered_container_instances_count = instances.iter().filter(|i| i.doc.status != "INACTIVE").count() as i64;
    Ok(c)
}

/// The cluster as DescribeClusters shows it with the given `include` options.
async fn render(ctx: &Ctx, c: Cluster, include: &[&str]) -> Result<Value> {
    let mut c = c;
    if include.contains(&"STATISTICS") {
        let keys = Keys::new(ctx);
        let tasks = ctx.db.list_tasks(&keys.tasks(&c.cluster_name)).await?;
        // Pending as in pendingTasksCount: on the way to RUNNING, not there yet.
        let count = |launch: LaunchType, running: bool| {
            tasks
                .iter()
                .filter(|t| t.doc.launch_type == Some(launch))
                .filter(|t| match running {
                    true => t.doc.last_status == TaskStatus::Running,
                    false => t.doc.last_status != TaskStatus::Running && t.doc.last_status.holds_resources(),
                })
                .count()
        };
        let services = ctx.db.list::<Service>(&keys.services(&c.cluster_name)).await?;
        let svc_count = |launch: LaunchType, status: ServiceStatus| {
            services.iter().filter(|s| s.doc.status == status && s.doc.launch_type == Some(launch)).count()
        };
        let (ec2, fargate) = (LaunchType::Ec2, LaunchType::Fargate);
        c.statistics = [
            ("runningEC2TasksCount", count(ec2, true)),
            ("runningFargateTasksCount", count(fargate, true)),
            ("pendingEC2TasksCount", count(ec2, false)),
            ("pendingFargateTasksCount", count(fargate, false)),
            ("activeEC2ServiceCount", svc_count(ec2, ServiceStatus::Active)),
            ("activeFargateServiceCount", svc_count(fargate, ServiceStatus::Active)),
            ("drainingEC2ServiceCount", svc_count(ec2, ServiceStatus::Draining)),
            ("drainingFargateServiceCount", svc_count(fargate, ServiceStatus::Draining)),
        ]
        .into_iter()
        .map(|(n, v)| KeyValuePair { name: n.into(), value: v.to_string() })
        .collect();
    }
    if include.contains(&"TAGS") {
        c.tags = tags::read(ctx, &c.cluster_arn).await?;
    }
    let mut v = output(&c)?;
    if let Some(obj) = v.as_object_mut() {
        if !include.contains(&"TAGS") {
            obj.remove("tags");
        }
        if !include.contains(&"STATISTICS") {
            obj.insert("statistics".into(), json!([]));
        }
        if !include.contains(&"CONFIGURATIONS") && !include.contains(&"SETTINGS") {
            // ECS always returns settings; configuration only on request.
            obj.remove("configuration");
        }
    }
    Ok(v)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeRequest {
    clusters: Option<Vec<String>>,
    #[serde(default)]
    include: Vec<String>,
}

pub async fn describe(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DescribeRequest = input(v)?;
    let refs = req.clusters.unwrap_or_else(|| vec!["default".into()]);
    if refs.len() > 100 {
        return Err(Error::invalid("clusters", "At most 100 clusters can be described at once."));
    }
    let include: Vec<&str> = req.include.iter().map(String::as_str).collect();
    let (mut clusters, mut failures) = (vec![], vec![]);
    for r in &refs {
        let name = cluster_name(ctx, Some(r))?;
        match ctx.db.get::<Cluster>(&Keys::new(ctx).cluster(&name)).await? {
            Some(c) => {
                let c = with_counts(ctx, c.doc).await?;
                clusters.push(render(ctx, c, &include).await?);
            }
            None => failures.push(Failure::missing(ctx.scope.arn("ecs", format!("cluster/{name}")))),
        }
    }
    output(json!({ "clusters": clusters, "failures": failures }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListRequest {
    next_token: Option<String>,
    max_results: Option<i64>,
}

pub async fn list(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: ListRequest = input(v)?;
    let limit = crate::paging::max_results(req.max_results, 100, 100)?;
    let (arns, next) = crate::paging::scan(
        &ctx.db,
        &Keys::new(ctx).clusters(),
        req.next_token.as_deref(),
        limit,
        false,
        |c: &Cluster| (c.status == "ACTIVE").then(|| c.cluster_arn.clone()),
    )
    .await?;
    Ok(crate::paging::with_token(json!({ "clusterArns": arns }), next))
}

#[derive(Deserialize)]
struct DeleteRequest {
    cluster: String,
}

pub async fn delete(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DeleteRequest = input(v)?;
    let keys = Keys::new(ctx);
    let cluster = ctx
        .db
        .update(|| async {
            let c = active_cluster(ctx, Some(&req.cluster)).await?;
            let name = &c.doc.cluster_name;
            let services = ctx.db.list::<Service>(&keys.services(name)).await?;
            if services.iter().any(|s| s.doc.status != ServiceStatus::Inactive) {
                return Err(Error::InUse {
                    reason: InUse::ClusterContainsServices,
                    message: "The Cluster cannot be deleted while Services are active.".into(),
                });
            }
            let instances = ctx.db.list::<ContainerInstance>(&keys.instances(name)).await?;
            if instances.iter().any(|i| i.doc.status != "INACTIVE") {
                return Err(Error::InUse {
                    reason: InUse::ClusterContainsContainerInstances,
                    message: "The Cluster cannot be deleted while Container Instances are active or draining.".into(),
                });
            }
            let tasks = ctx.db.list_tasks(&keys.tasks(name)).await?;
            if tasks.iter().any(|t| t.doc.last_status != TaskStatus::Stopped) {
                return Err(Error::InUse {
                    reason: InUse::ClusterContainsTasks,
                    message: "The Cluster cannot be deleted while Tasks are active.".into(),
                });
            }
            let mut doc = c.doc.clone();
            doc.status = "INACTIVE".into();
            Ok((Some(cas_put(&c.key, c.rev, &doc)?), doc))
        })
        .await?;
    output(json!({ "cluster": render(ctx, cluster, &[]).await? }))
}

/// Read-modify-write of an ACTIVE cluster, answering with the updated cluster.
async fn modify(ctx: &Ctx, cluster: &str, f: impl Fn(&mut Cluster) -> Result<()>) -> Result<Value> {
    let updated = ctx
        .db
        .update(|| async {
            let c = active_cluster(ctx, Some(cluster)).await?;
            let mut doc = c.doc.clone();
            f(&mut doc)?;
            Ok((Some(cas_put(&c.key, c.rev, &doc)?), doc))
        })
        .await?;
    let updated = with_counts(ctx, updated).await?;
    output(json!({ "cluster": render(ctx, updated, &["CONFIGURATIONS", "SETTINGS"]).await? }))
}

fn merge_settings(doc: &mut Cluster, settings: &[Value]) {
    for s in settings {
        let name = s.get("name").cloned();
        match doc.settings.iter_mut().find(|x| x.get("name") == name.as_ref()) {
            Some(x) => *x = s.clone(),
            None => doc.settings.push(s.clone()),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateRequest {
    cluster: String,
    #[serde(default)]
    settings: Vec<Value>,
    configuration: Option<Value>,
    service_connect_defaults: Option<Value>,
}

pub async fn update(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: UpdateRequest = input(v)?;
    check_settings(&req.settings)?;
    modify(ctx, &req.cluster, |doc| {
        merge_settings(doc, &req.settings);
        if let Some(c) = &req.configuration {
            doc.extra.insert("configuration".into(), c.clone());
        }
        if let Some(s) = &req.service_connect_defaults {
            doc.extra.insert("serviceConnectDefaults".into(), s.clone());
        }
        Ok(())
    })
    .await
}

pub async fn update_settings(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: UpdateRequest = input(v)?;
    check_settings(&req.settings)?;
    modify(ctx, &req.cluster, |doc| {
        merge_settings(doc, &req.settings);
        Ok(())
    })
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CapacityRequest {
    cluster: String,
    capacity_providers: Vec<String>,
    default_capacity_provider_strategy: Vec<Value>,
}

pub async fn put_capacity_providers(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: CapacityRequest = input(v)?;
    check_providers(&req.capacity_providers, &req.default_capacity_provider_strategy)?;
    modify(ctx, &req.cluster, |doc| {
        doc.capacity_providers.clone_from(&req.capacity_providers);
        doc.default_capacity_provider_strategy.clone_from(&req.default_capacity_provider_strategy);
        Ok(())
    })
    .await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeProvidersRequest {
    capacity_providers: Option<Vec<String>>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

/// A built-in provider as DescribeCapacityProviders shows it.
fn provider(ctx: &Ctx, name: &str) -> Value {
    json!({
        "capacityProviderArn": ctx.scope.arn("ecs", format!("capacity-provider/{name}")),
        "name": name,
        "status": "ACTIVE",
        "tags": [],
    })
}

/// The account's capacity providers: Fargate's two built-in ones, which every cluster of
/// every region has (Wharf's FARGATE capacity is the agents of `wharf up`; FARGATE_SPOT tasks
/// run on the same hosts and are never interrupted). Wharf has no Auto Scaling groups, so
/// there are no others.
pub async fn describe_capacity_providers(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DescribeProvidersRequest = input(v)?;
    if req.max_results.is_some_and(|n| !(1..=10).contains(&n)) {
        return Err(Error::invalid("maxResults", "maxResults must be between 1 and 10."));
    }
    let (mut found, mut failures) = (vec![], vec![]);
    match req.capacity_providers {
        None => {
            let start = match req.next_token.as_deref() {
                None => 0,
                Some(t) => BUILT_IN_PROVIDERS
                    .iter()
                    .position(|p| *p == t)
                    .ok_or_else(|| Error::invalid("nextToken", "The specified nextToken is not valid."))?,
            };
            let n = req.max_results.unwrap_or(10) as usize;
            found.extend(BUILT_IN_PROVIDERS.iter().skip(start).take(n).map(|p| provider(ctx, p)));
            let mut out = json!({"capacityProviders": found, "failures": []});
            if let Some(next) = BUILT_IN_PROVIDERS.get(start + n) {
                out["nextToken"] = json!(next);
            }
            return Ok(out);
        }
        Some(names) => {
            for name in names {
                let short = name.rsplit_once("capacity-provider/").map_or(name.as_str(), |(_, n)| n);
                if BUILT_IN_PROVIDERS.contains(&short) {
                    found.push(provider(ctx, short));
                } else {
                    failures.push(json!({"arn": name, "reason": "MISSING"}));
                }
            }
        }
    }
    Ok(json!({"capacityProviders": found, "failures": failures}))
}

/// Capacity providers of Auto Scaling groups or managed instances need an EC2 that Wharf
/// does not have: refused with a clear error, never stored and ignored.
pub async fn create_capacity_provider(_ctx: &Ctx, v: Value) -> Result<Value> {
    let name = v.get("name").and_then(Value::as_str).unwrap_or_default().to_string();
    Err(Error::Unsupported(format!(
        "Capacity provider '{name}' cannot be created: Wharf has no Auto Scaling groups or managed instances. Clusters get capacity from agents (`wharf agent --cluster …`) and the built-in FARGATE and FARGATE_SPOT providers."
    )))
}
