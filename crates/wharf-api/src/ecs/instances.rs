//! Container instances: hosts that registered with a cluster (agents call
//! RegisterContainerInstance), their resources and the attributes placement matches on.

use super::expr::Expr;
use super::{Keys, active_cluster, input, output, split_ref, tags};
use crate::Ctx;
use crate::db::{Versioned, cas_put};
use crate::paging::{max_results, scan, with_token};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use wharf_types::ecs::{Attribute, ContainerInstance, Failure, ResourceAmount, Tag, TaskStatus};
use wharf_types::elb::{InstanceAddress, instance_address_key};
use wharf_types::{Error, Limit, Resource, Result};

fn check_attributes(attrs: &[Attribute]) -> Result<()> {
    for a in attrs {
        let name_ok = !a.name.is_empty()
            && a.name.len() <= 128
            && a.name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_/\\.".contains(&b));
        if !name_ok {
            return Err(Error::invalid(
                "attributes.name",
                format!(
                    "Attribute name '{}' is not valid: up to 128 letters, numbers, hyphens, underscores, slashes, back slashes or periods.",
                    a.name
                ),
            ));
        }
        if let Some(v) = &a.value {
            let ok = !v.is_empty()
                && v.len() <= 128
                && v.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.@/\\: ".contains(&b));
            if !ok {
                return Err(Error::invalid(
                    "attributes.value",
                    format!("Attribute value '{v}' for '{}' is not valid.", a.name),
                ));
            }
        }
    }
    Ok(())
}

/// ECS allows 10 custom attributes per resource; `ecs.`-prefixed ones are the agent's own.
fn check_attribute_limit(attrs: &[Attribute]) -> Result<()> {
    if attrs.iter().filter(|a| !a.name.starts_with("ecs.") && !a.name.starts_with("com.amazonaws.ecs.")).count() > 10 {
        return Err(Error::limit_exceeded(Limit::Attributes, "You can apply up to 10 custom attributes per resource."));
    }
    Ok(())
}

fn merge_attributes(into: &mut Vec<Attribute>, new: &[Attribute]) {
    for a in new {
        let a = Attribute { name: a.name.clone(), value: a.value.clone(), target_type: None, target_id: None };
        match into.iter_mut().find(|x| x.name == a.name) {
            Some(x) => *x = a,
            None => into.push(a),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RegisterRequest {
    cluster: Option<String>,
    instance_identity_document: Option<String>,
    #[serde(default)]
    total_resources: Vec<ResourceAmount>,
    version_info: Option<Value>,
    container_instance_arn: Option<String>,
    #[serde(default)]
    attributes: Vec<Attribute>,
    #[serde(default)]
    tags: Vec<Tag>,
}

pub async fn register(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: RegisterRequest = input(v)?;
    let cluster = active_cluster(ctx, req.cluster.as_deref()).await?;
    check_attributes(&req.attributes)?;
    tags::validate(&req.tags)?;
    let identity: Map<String, Value> = match &req.instance_identity_document {
        Some(doc) => serde_json::from_str(doc).map_err(|_| {
            Error::invalid("instanceIdentityDocument", "instanceIdentityDocument must be a JSON object.")
        })?,
        None => Map::new(),
    };
    for r in &req.total_resources {
        if r.integer_value < 0 || r.long_value < 0 {
            return Err(Error::invalid("totalResources", format!("Resource {} cannot be negative.", r.name)));
        }
    }
    let cname = cluster.doc.cluster_name.clone();
    let keys = Keys::new(ctx);
    let existing_id = match &req.container_instance_arn {
        Some(a) => Some(split_ref(ctx, a, "container-instance", "containerInstanceArn")?.1.to_string()),
        None => None,
    };
    let id = existing_id.clone().unwrap_or_else(|| wharf_types::hex_id(32));
    let key = keys.instance(&cname, &id);
    let arn = ctx.scope.arn("ecs", format!("container-instance/{cname}/{id}"));
    let az = identity
        .get("availabilityZone")
        .and_then(Value::as_str)
        .map(str::to_string)
        .unwrap_or_else(|| format!("{}a", ctx.scope.region));
    let instance = ctx
        .db
        .update(|| async {
            let existing = ctx.db.get::<ContainerInstance>(&key).await?;
            if existing_id.is_some() && existing.is_none() {
                return Err(Error::invalid("containerInstanceArn", "The referenced container instance was not found."));
            }
            // Deregistered stays deregistered: the host registers again as a new instance.
            if existing_id.is_some() && existing.as_ref().is_some_and(|e| e.doc.status == "INACTIVE") {
                return Err(Error::invalid(
                    "containerInstanceArn",
                    "The referenced container instance is deregistered (INACTIVE).",
                ));
            }
            let mut attributes = vec![
                Attribute {
                    name: "ecs.os-type".into(),
                    value: Some("linux".into()),
                    target_type: None,
                    target_id: None,
                },
                Attribute {
                    name: "ecs.cpu-architecture".into(),
                    value: Some("x86_64".into()),
                    target_type: None,
                    target_id: None,
                },
                Attribute {
                    name: "ecs.availability-zone".into(),
                    value: Some(az.clone()),
                    target_type: None,
                    target_id: None,
                },
            ];
            if let Some(t) = identity.get("instanceType").and_then(Value::as_str) {
                attributes.push(Attribute {
                    name: "ecs.instance-type".into(),
                    value: Some(t.into()),
                    target_type: None,
                    target_id: None,
                });
            }
            merge_attributes(&mut attributes, &req.attributes);
            check_attribute_limit(&attributes)?;
            let (rev, version, registered_at, remaining) = match &existing {
                Some(e) => {
                    // Recount from the new totals and the instance's live tasks: tasks stopped
                    // while its agent was away (a lost instance keeps its books) give theirs back.
                    let mut fresh = e.doc.clone();
                    fresh.remaining_resources = req.total_resources.clone();
                    for t in ctx.db.list_tasks(&keys.tasks(&cname)).await? {
                        if t.doc.container_instance_arn.as_ref() == Some(&arn)
                            && t.doc.last_status.holds_resources()
                            && let Ok(d) = wharf_core::tasks::demand_of(ctx, &t.doc).await
                        {
                            let _ = wharf_core::capacity::reserve(&mut fresh, &d);
                        }
                    }
                    (e.rev, e.doc.version + 1, e.doc.registered_at, fresh.remaining_resources)
                }
                None => (0, 1, wharf_types::now(), req.total_resources.clone()),
            };
            let doc = ContainerInstance {
                container_instance_arn: arn.clone(),
                ec2_instance_id: Some(
                    identity
                        .get("instanceId")
                        .and_then(Value::as_str)
                        .map(str::to_string)
                        .unwrap_or_else(|| format!("i-{}", wharf_types::hex_id(17))),
                ),
                version,
                version_info: req.version_info.clone(),
                remaining_resources: if existing.is_some() { remaining } else { req.total_resources.clone() },
                registered_resources: req.total_resources.clone(),
                status: "ACTIVE".into(),
                status_reason: None,
                agent_connected: true,
                running_tasks_count: existing.as_ref().map_or(0, |e| e.doc.running_tasks_count),
                pending_tasks_count: existing.as_ref().map_or(0, |e| e.doc.pending_tasks_count),
                attributes,
                registered_at,
                attachments: vec![],
                tags: vec![],
                extra: Map::new(),
            };
            let mut txn = cas_put(&key, rev, &doc)?;
            txn.ops.extend(tags::put_op(ctx, &arn, &req.tags)?);
            // Where load balancers reach this instance's published ports (see wharf_types::elb).
            if let Some(ec2) = &doc.ec2_instance_id {
                let address = identity.get("privateIp").and_then(Value::as_str).unwrap_or("127.0.0.1");
                let record = InstanceAddress { address: address.to_string(), container_instance_arn: arn.clone() };
                let akey = instance_address_key(&ctx.scope.account, &ctx.scope.region, ec2);
                txn.ops.push(wharf_store::Op::put(akey, crate::db::encode(&record)?));
            }
            Ok((Some(txn), doc))
        })
        .await?;
    output(json!({ "containerInstance": instance }))
}

async fn find(ctx: &Ctx, cluster: &str, reference: &str, field: &str) -> Result<Option<Versioned<ContainerInstance>>> {
    let (arn_cluster, id) = split_ref(ctx, reference, "container-instance", field)?;
    let cluster = arn_cluster.unwrap_or_else(|| cluster.to_string());
    ctx.db.get::<ContainerInstance>(&Keys::new(ctx).instance(&cluster, id)).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeregisterRequest {
    cluster: Option<String>,
    container_instance: String,
    #[serde(default)]
    force: bool,
}

pub async fn deregister(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DeregisterRequest = input(v)?;
    let cluster = active_cluster(ctx, req.cluster.as_deref()).await?;
    let cname = cluster.doc.cluster_name.clone();
    let instance = ctx
        .db
        .update(|| async {
            let Some(i) = find(ctx, &cname, &req.container_instance, "containerInstance")
                .await?
                .filter(|i| i.doc.status != "INACTIVE")
            else {
                return Err(Error::invalid("containerInstance", "The referenced container instance was not found."));
            };
            let tasks = ctx.db.list_tasks(&Keys::new(ctx).tasks(&cname)).await?;
            let busy = tasks.iter().any(|t| {
                t.doc.container_instance_arn.as_ref() == Some(&i.doc.container_instance_arn)
                    && t.doc.last_status.holds_resources()
            });
            if busy && !req.force {
                return Err(Error::invalid(
                    "containerInstance",
                    "Found running tasks on the instance. Use force to deregister it anyway.",
                ));
            }
            let mut doc = i.doc.clone();
            doc.status = "INACTIVE".into();
            doc.agent_connected = false;
            doc.version += 1;
            Ok((Some(cas_put(&i.key, i.rev, &doc)?), doc))
        })
        .await?;
    output(json!({ "containerInstance": instance }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeRequest {
    cluster: Option<String>,
    container_instances: Vec<String>,
    #[serde(default)]
    include: Vec<String>,
}

pub async fn describe(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DescribeRequest = input(v)?;
    if req.container_instances.is_empty() || req.container_instances.len() > 100 {
        return Err(Error::invalid("containerInstances", "Specify between 1 and 100 container instances."));
    }
    let cluster = active_cluster(ctx, req.cluster.as_deref()).await?;
    let with_tags = req.include.iter().any(|i| i == "TAGS");
    let (mut found, mut failures) = (vec![], vec![]);
    // One read of the cluster's tasks counts them for every instance asked about.
    let tasks = ctx.db.list_tasks(&Keys::new(ctx).tasks(&cluster.doc.cluster_name)).await?;
    for r in &req.container_instances {
        match find(ctx, &cluster.doc.cluster_name, r, "containerInstances").await? {
            Some(i) => {
                let mut doc = i.doc;
                let on_it =
                    tasks.iter().filter(|t| t.doc.container_instance_arn.as_ref() == Some(&doc.container_instance_arn));
                let (running, pending): (Vec<_>, Vec<_>) = on_it
                    .filter(|t| t.doc.last_status.holds_resources())
                    .partition(|t| t.doc.last_status == TaskStatus::Running);
                doc.running_tasks_count = running.len() as i64;
                doc.pending_tasks_count = pending.len() as i64;
                if with_tags {
                    doc.tags = tags::read(ctx, &doc.container_instance_arn).await?;
                }
                let mut v = output(&doc)?;
                if !with_tags && let Some(o) = v.as_object_mut() {
                    o.remove("tags");
                }
                found.push(v);
            }
            None => {
                let id = split_ref(ctx, r, "container-instance", "containerInstances")?.1;
                failures.push(Failure::missing(
                    ctx.scope.arn("ecs", format!("container-instance/{}/{id}", cluster.doc.cluster_name)),
                ));
            }
        }
    }
    output(json!({ "containerInstances": found, "failures": failures }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListRequest {
    cluster: Option<String>,
    filter: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
    status: Option<String>,
}

pub async fn list(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: ListRequest = input(v)?;
    let cluster = active_cluster(ctx, req.cluster.as_deref()).await?;
    let limit = max_results(req.max_results, 100, 100)?;
    let filter = req.filter.as_deref().map(|f| Expr::parse(f, "filter")).transpose()?;
    let prefix = Keys::new(ctx).instances(&cluster.doc.cluster_name);
    let (arns, next) = scan(&ctx.db, &prefix, req.next_token.as_deref(), limit, false, |i: &ContainerInstance| {
        let status_ok = match &req.status {
            Some(s) => &i.status == s,
            None => i.status != "INACTIVE",
        };
        (status_ok && filter.as_ref().is_none_or(|f| f.matches(&i.attributes)))
            .then(|| i.container_instance_arn.clone())
    })
    .await?;
    Ok(with_token(json!({ "containerInstanceArns": arns }), next))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateStateRequest {
    cluster: Option<String>,
    container_instances: Vec<String>,
    status: String,
}

pub async fn update_state(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: UpdateStateRequest = input(v)?;
    if req.container_instances.is_empty() || req.container_instances.len() > 10 {
        return Err(Error::invalid("containerInstances", "Specify between 1 and 10 container instances."));
    }
    if !["ACTIVE", "DRAINING"].contains(&req.status.as_str()) {
        return Err(Error::invalid(
            "status",
            format!("Container instance status {} can not be set; use ACTIVE or DRAINING.", req.status),
        ));
    }
    let cluster = active_cluster(ctx, req.cluster.as_deref()).await?;
    let (mut updated, mut failures) = (vec![], vec![]);
    for r in &req.container_instances {
        let outcome = ctx
            .db
            .update(|| async {
                let Some(i) = find(ctx, &cluster.doc.cluster_name, r, "containerInstances")
                    .await?
                    .filter(|i| i.doc.status != "INACTIVE")
                else {
                    return Ok((None, None));
                };
                if i.doc.status == req.status {
                    return Ok((None, Some(i.doc)));
                }
                let mut doc = i.doc.clone();
                doc.status.clone_from(&req.status);
                doc.version += 1;
                Ok((Some(cas_put(&i.key, i.rev, &doc)?), Some(doc)))
            })
            .await?;
        match outcome {
            Some(doc) => updated.push(doc),
            None => failures.push(Failure::missing(r.clone())),
        }
    }
    output(json!({ "containerInstances": updated, "failures": failures }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AttributesRequest {
    cluster: Option<String>,
    attributes: Vec<Attribute>,
}

/// Applies `f` to each attribute's target instance; answers with the attributes.
async fn change_attributes(ctx: &Ctx, v: Value, put: bool) -> Result<Value> {
    let req: AttributesRequest = input(v)?;
    if req.attributes.is_empty() || req.attributes.len() > 10 {
        return Err(Error::invalid("attributes", "Specify between 1 and 10 attributes."));
    }
    if put {
        check_attributes(&req.attributes)?;
    }
    let cluster = active_cluster(ctx, req.cluster.as_deref()).await?;
    for a in &req.attributes {
        if a.target_type.as_deref().is_some_and(|t| t != "container-instance") {
            return Err(Error::invalid(
                "attributes.targetType",
                "The only supported targetType is container-instance.",
            ));
        }
        let Some(target) = &a.target_id else {
            return Err(Error::invalid("attributes.targetId", format!("Attribute '{}' needs a targetId.", a.name)));
        };
        ctx.db
            .update(|| async {
                let Some(i) = find(ctx, &cluster.doc.cluster_name, target, "attributes.targetId")
                    .await?
                    .filter(|i| i.doc.status != "INACTIVE")
                else {
                    return Err(Error::NotFound {
                        resource: Resource::Target,
                        message: format!("Could not find {target}."),
                    });
                };
                let mut doc = i.doc.clone();
                if put {
                    merge_attributes(&mut doc.attributes, std::slice::from_ref(a));
                    check_attribute_limit(&doc.attributes)?;
                } else {
                    doc.attributes.retain(|x| x.name != a.name);
                }
                Ok((Some(cas_put(&i.key, i.rev, &doc)?), ()))
            })
            .await?;
    }
    output(json!({ "attributes": req.attributes }))
}

pub async fn put_attributes(ctx: &Ctx, v: Value) -> Result<Value> {
    change_attributes(ctx, v, true).await
}

pub async fn delete_attributes(ctx: &Ctx, v: Value) -> Result<Value> {
    change_attributes(ctx, v, false).await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListAttributesRequest {
    cluster: Option<String>,
    target_type: String,
    attribute_name: Option<String>,
    attribute_value: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

pub async fn list_attributes(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: ListAttributesRequest = input(v)?;
    if req.attribute_value.is_some() && req.attribute_name.is_none() {
        return Err(Error::invalid("attributeValue", "attributeValue requires attributeName."));
    }
    let cluster = active_cluster(ctx, req.cluster.as_deref()).await?;
    let limit = max_results(req.max_results, 100, 100)?;
    let prefix = Keys::new(ctx).instances(&cluster.doc.cluster_name);
    // A page is a run of instances; every matching attribute of each is returned.
    let (groups, next) = scan(&ctx.db, &prefix, req.next_token.as_deref(), limit, false, |i: &ContainerInstance| {
        if i.status == "INACTIVE" {
            return None;
        }
        let attrs: Vec<Value> = i
            .attributes
            .iter()
            .filter(|a| req.attribute_name.as_ref().is_none_or(|n| &a.name == n))
            .filter(|a| req.attribute_value.as_ref().is_none_or(|v| a.value.as_ref() == Some(v)))
            .map(|a| json!({"name": a.name, "value": a.value, "targetType": req.target_type, "targetId": i.container_instance_arn}))
            .collect();
        (!attrs.is_empty()).then_some(attrs)
    })
    .await?;
    let attributes: Vec<Value> = groups.into_iter().flatten().collect();
    Ok(with_token(json!({ "attributes": attributes }), next))
}
