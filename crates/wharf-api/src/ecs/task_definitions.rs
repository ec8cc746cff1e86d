//! Task definitions: immutable, numbered revisions grouped in families.

use super::{Keys, input, output, tags};
use crate::Ctx;
use crate::db::{cas_put, encode};
use crate::paging::{max_results, scan, with_token};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::HashSet;
pub(crate) use wharf_core::task_definitions::{container, require, resolve};
use wharf_store::{Compare, Op, Txn};
use wharf_types::ecs::{Failure, Tag, TaskDefinition};
use wharf_types::{Error, Result};

/// ECS refuses task definitions whose JSON exceeds 64 KiB.
const MAX_TASK_DEFINITION_BYTES: usize = 64 * 1024;

/// Task sizes Fargate accepts: (cpu units, allowed memory MiB).
fn fargate_memory_ok(cpu: i64, memory: i64) -> bool {
    let range = |lo: i64, hi: i64, step: i64| memory >= lo && memory <= hi && (memory - lo) % step == 0;
    match cpu {
        256 => [512, 1024, 2048].contains(&memory),
        512 => range(1024, 4096, 1024),
        1024 => range(2048, 8192, 1024),
        2048 => range(4096, 16384, 1024),
        4096 => range(8192, 30720, 1024),
        8192 => range(16384, 61440, 4096),
        16384 => range(32768, 122880, 8192),
        _ => false,
    }
}

/// Task-level `cpu` as units: "1024", "1 vCPU", "0.5 vcpu".
fn parse_cpu(s: &str) -> Option<i64> {
    let t = s.trim().to_ascii_lowercase();
    match t.strip_suffix("vcpu") {
        Some(n) => n.trim().parse::<f64>().ok().filter(|v| *v > 0.0).map(|v| (v * 1024.0).round() as i64),
        None => t.parse::<i64>().ok().filter(|v| *v > 0),
    }
}

/// Task-level `memory` as MiB: "2048", "2 GB", "2gb".
fn parse_memory(s: &str) -> Option<i64> {
    let t = s.trim().to_ascii_lowercase();
    match t.strip_suffix("gb") {
        Some(n) => n.trim().parse::<f64>().ok().filter(|v| *v > 0.0).map(|v| (v * 1024.0).round() as i64),
        None => t.parse::<i64>().ok().filter(|v| *v > 0),
    }
}

fn client(msg: impl Into<String>) -> Error {
    Error::client(msg)
}

/// ECS's own rules for a task definition, beyond what the model checks.
fn check(td: &mut TaskDefinition, fargate: bool) -> Result<()> {
    if td.container_definitions.is_empty() {
        return Err(client("Container list cannot be empty."));
    }
    if td.container_definitions.len() > 10 {
        return Err(client("Too many containers: a task definition can have at most 10 containers."));
    }
    let mode = td.network_mode.clone().unwrap_or_else(|| "bridge".into());
    let task_mem = match &td.memory {
        Some(m) => Some(
            parse_memory(m)
                .ok_or_else(|| Error::invalid("memory", format!("Invalid 'memory' setting for task: '{m}'.")))?,
        ),
        None => None,
    };
    let task_cpu = match &td.cpu {
        Some(c) => {
            Some(parse_cpu(c).ok_or_else(|| Error::invalid("cpu", format!("Invalid 'cpu' setting for task: '{c}'.")))?)
        }
        None => None,
    };
    td.memory = task_mem.map(|m| m.to_string());
    td.cpu = task_cpu.map(|c| c.to_string());
    // Defaults ECS fills in and reports back: containers are essential, ports are TCP, and
    // with awsvpc or host networking the host port is the container port.
    for c in &mut td.container_definitions {
        c.essential.get_or_insert(true);
        for pm in &mut c.port_mappings {
            pm.protocol.get_or_insert_with(|| "tcp".into());
            if (mode == "awsvpc" || mode == "host") && pm.host_port.is_none() {
                pm.host_port = pm.container_port;
            }
        }
    }

    let volumes: HashSet<&str> = td.volumes.iter().filter_map(|v| v.get("name").and_then(Value::as_str)).collect();
    let names: Vec<String> = td.container_definitions.iter().filter_map(|c| c.name.clone()).collect();
    let mut seen = HashSet::new();
    let mut host_ports = HashSet::new();
    let mut container_mem_sum = 0;
    for (i, c) in td.container_definitions.iter().enumerate() {
        let field = format!("containerDefinitions.{}", i + 1);
        let name = c.name.as_deref().unwrap_or_default();
        if name.is_empty() {
            return Err(client("Container.name should not be null or empty."));
        }
        super::check_name(&format!("{field}.name"), "Container", name)?;
        if !seen.insert(name) {
            return Err(client(format!(
                "Duplicate container name '{name}': container names must be unique within a task definition."
            )));
        }
        if c.image.as_deref().is_none_or(|i| i.trim().is_empty()) {
            return Err(client("Container.image should not be null or empty."));
        }
        if c.cpu < 0 {
            return Err(Error::invalid(
                format!("{field}.cpu"),
                format!("Invalid 'cpu' setting for container '{name}': must be at least 0."),
            ));
        }
        match (c.memory, c.memory_reservation) {
            (None, None) if task_mem.is_none() => {
                return Err(client(format!(
                    "Invalid setting for container '{name}'. At least one of 'memory' or 'memoryReservation' must be specified."
                )));
            }
            (Some(m), _) if m < 6 => {
                return Err(client(format!(
                    "Invalid 'memory' setting for container '{name}'. The minimum allowed value is 6 MiB."
                )));
            }
            (_, Some(r)) if r < 6 => {
                return Err(client(format!(
                    "Invalid 'memoryReservation' setting for container '{name}'. The minimum allowed value is 6 MiB."
                )));
            }
            (Some(m), Some(r)) if r > m => {
                return Err(client(format!(
                    "Invalid setting for container '{name}': 'memoryReservation' ({r}) must be less than or equal to 'memory' ({m})."
                )));
            }
            _ => {}
        }
        container_mem_sum += c.memory.or(c.memory_reservation).unwrap_or(0);
        for (j, pm) in c.port_mappings.iter().enumerate() {
            let pf = format!("{field}.portMappings.{}", j + 1);
            let cp = pm.container_port.unwrap_or(0);
            if pm.container_port.is_some() && !(1..=65535).contains(&cp) {
                return Err(Error::invalid(
                    format!("{pf}.containerPort"),
                    format!("Invalid containerPort {cp} for container '{name}': must be between 1 and 65535."),
                ));
            }
            if let Some(hp) = pm.host_port {
                if !(0..=65535).contains(&hp) {
                    return Err(Error::invalid(
                        format!("{pf}.hostPort"),
                        format!("Invalid hostPort {hp} for container '{name}': must be between 0 and 65535."),
                    ));
                }
                if (mode == "awsvpc" || mode == "host") && pm.container_port.is_some() && hp != cp {
                    return Err(Error::invalid(
                        format!("{pf}.hostPort"),
                        format!(
                            "When networkMode={mode}, the host ports and container ports in port mappings must match (container '{name}': hostPort {hp}, containerPort {cp})."
                        ),
                    ));
                }
                let proto = pm.protocol.as_deref().unwrap_or("tcp");
                if hp != 0 && !host_ports.insert((hp, proto.to_string())) {
                    return Err(Error::invalid(
                        format!("{pf}.hostPort"),
                        format!("Host port {hp}/{proto} is used by more than one port mapping in the task definition."),
                    ));
                }
            }
            if mode == "none" {
                return Err(Error::invalid(pf.clone(), "Port mappings are not allowed when networkMode is 'none'."));
            }
        }
        for mp in &c.mount_points {
            let vol = mp.get("sourceVolume").and_then(Value::as_str).unwrap_or_default();
            if !volumes.contains(vol) {
                return Err(client(format!(
                    "Invalid 'mountPoints' setting for container '{name}': unknown volume '{vol}'."
                )));
            }
        }
        for vf in &c.volumes_from {
            let src = vf.get("sourceContainer").and_then(Value::as_str).unwrap_or_default();
            if !names.iter().any(|n| n == src) || src == name {
                return Err(client(format!(
                    "Invalid 'volumesFrom' setting for container '{name}': unknown source container '{src}'."
                )));
            }
        }
        if let Some(deps) = c.extra.get("dependsOn").and_then(Value::as_array) {
            for d in deps {
                let dep = d.get("containerName").and_then(Value::as_str).unwrap_or_default();
                if !names.iter().any(|n| n == dep) || dep == name {
                    return Err(client(format!(
                        "Invalid 'dependsOn' setting for container '{name}': '{dep}' is not another container of this task definition."
                    )));
                }
            }
        }
        if c.extra.contains_key("links") && mode != "bridge" {
            return Err(client(format!(
                "Invalid 'links' setting for container '{name}': links are supported only in bridge network mode."
            )));
        }
    }
    if let Some(m) = task_mem
        && container_mem_sum > m
    {
        return Err(client(format!(
            "Invalid setting: the sum of container memory ({container_mem_sum} MiB) exceeds the task memory ({m} MiB)."
        )));
    }
    super::td_fields::check_supported(td)?;
    if fargate {
        super::td_fields::check_fargate(td)?;
        if mode != "awsvpc" {
            return Err(client("Fargate only supports network mode 'awsvpc'."));
        }
        let (Some(cpu), Some(mem)) = (task_cpu, task_mem) else {
            return Err(client(
                "Fargate requires that 'cpu' be defined at the task level and 'memory' be defined at the task level.",
            ));
        };
        if !fargate_memory_ok(cpu, mem) {
            return Err(client(format!(
                "No Fargate configuration exists for given values: {cpu} CPU, {mem} memory. See the Amazon ECS documentation for the valid combinations."
            )));
        }
    }
    Ok(())
}

/// Compatibilities ECS reports: EC2 always, FARGATE when the definition would run there.
fn compatibilities(td: &TaskDefinition) -> Vec<String> {
    let mut out = vec!["EC2".to_string()];
    let sized = td.cpu.as_deref().and_then(parse_cpu).zip(td.memory.as_deref().and_then(parse_memory));
    if td.network_mode.as_deref() == Some("awsvpc") && sized.is_some_and(|(c, m)| fargate_memory_ok(c, m)) {
        out.push("FARGATE".into());
    }
    out
}

const TOP_LEVEL_TYPED: &[&str] = &[
    "family",
    "containerDefinitions",
    "networkMode",
    "volumes",
    "placementConstraints",
    "requiresCompatibilities",
    "cpu",
    "memory",
    "tags",
];

pub async fn register(ctx: &Ctx, v: Value) -> Result<Value> {
    let size = serde_json::to_vec(&v).map(|b| b.len()).unwrap_or(0);
    if size > MAX_TASK_DEFINITION_BYTES {
        return Err(client(format!(
            "Actual length: '{size}'. Max allowed length is '{MAX_TASK_DEFINITION_BYTES}' bytes."
        )));
    }
    let Value::Object(mut body) = v else { return Err(Error::Serialization("Expected structure".into())) };
    let family = body.get("family").and_then(Value::as_str).unwrap_or_default().to_string();
    super::check_name("family", "Family", &family)?;
    let tags: Vec<Tag> = input(body.remove("tags").unwrap_or(json!([])))?;
    tags::validate(&tags)?;
    let typed: Map<String, Value> =
        TOP_LEVEL_TYPED.iter().filter_map(|k| body.remove(*k).map(|v| (k.to_string(), v))).collect();
    let mut typed = typed;
    typed.insert("taskDefinitionArn".into(), json!(""));
    typed.insert("revision".into(), json!(0));
    typed.insert("status".into(), json!("ACTIVE"));
    typed.insert("registeredAt".into(), json!(wharf_types::now()));
    let mut td: TaskDefinition = input(Value::Object(typed))?;
    td.extra = body;
    td.registered_by = Some(ctx.principal_arn());
    let fargate = td.requires_compatibilities.as_ref().is_some_and(|r| r.iter().any(|c| c == "FARGATE"));
    check(&mut td, fargate)?;
    td.compatibilities = compatibilities(&td);
    if fargate && !td.compatibilities.iter().any(|c| c == "FARGATE") {
        return Err(client("Task definition does not support launch_type FARGATE."));
    }

    let keys = Keys::new(ctx);
    let registered = ctx
        .db
        .update(|| async {
            let (last, _) = ctx.db.range::<TaskDefinition>(&keys.family(&family), None, 1, true).await?;
            let stored_last = last.first().map_or(0, |l| l.doc.revision);
            let revision = ctx.db.next_in_sequence(&keys.family(&family), stored_last);
            let mut doc = td.clone();
            doc.revision = revision;
            doc.task_definition_arn = ctx.scope.arn("ecs", format!("task-definition/{family}:{revision}"));
            let mut txn = cas_put(&keys.taskdef(&family, revision), 0, &doc)?;
            txn.ops.extend(tags::put_op(ctx, &doc.task_definition_arn, &tags)?);
            Ok((Some(txn), doc))
        })
        .await?;
    output(json!({ "taskDefinition": registered, "tags": tags }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeRequest {
    task_definition: String,
    #[serde(default)]
    include: Vec<String>,
}

pub async fn describe(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DescribeRequest = input(v)?;
    let td = require(ctx, &req.task_definition, "taskDefinition").await?;
    let mut out = json!({ "taskDefinition": td.doc });
    if req.include.iter().any(|i| i == "TAGS") {
        out["tags"] = output(tags::read(ctx, &td.doc.task_definition_arn).await?)?;
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListRequest {
    family_prefix: Option<String>,
    status: Option<String>,
    sort: Option<String>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

pub async fn list(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: ListRequest = input(v)?;
    let limit = max_results(req.max_results, 100, 100)?;
    let status = req.status.as_deref().unwrap_or("ACTIVE");
    let keys = Keys::new(ctx);
    // Despite its name, ListTaskDefinitions' familyPrefix is a whole family name.
    let prefix = match &req.family_prefix {
        Some(family) => keys.family(family),
        None => keys.taskdefs(),
    };
    let descending = req.sort.as_deref() == Some("DESC");
    let (arns, next) = scan(&ctx.db, &prefix, req.next_token.as_deref(), limit, descending, |td: &Brief| {
        (status == "ALL" || td.status == status).then(|| td.task_definition_arn.clone())
    })
    .await?;
    Ok(with_token(json!({ "taskDefinitionArns": arns }), next))
}

/// What listing needs of a revision; serde skips the rest of the document unbuilt, which
/// makes a page of 100 several times cheaper than decoding whole task definitions.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Brief {
    task_definition_arn: String,
    status: String,
}

pub async fn list_families(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: ListRequest = input(v)?;
    let limit = max_results(req.max_results, 100, 100)?;
    let status = req.status.as_deref().unwrap_or("ACTIVE");
    let keys = Keys::new(ctx);
    let prefix = format!("{}{}", keys.taskdefs(), req.family_prefix.as_deref().unwrap_or(""));
    // Walk revisions in key order, folding each family into "has an ACTIVE revision".
    let mut families = vec![];
    let mut current: Option<(String, bool)> = None;
    let mut after = crate::paging::after_key(req.next_token.as_deref(), &prefix)?;
    let mut next = None;
    'walk: loop {
        let (page, more) = ctx.db.range::<TaskDefinition>(&prefix, after.clone(), 512, false).await?;
        for td in page {
            let active = td.doc.status == "ACTIVE";
            match &mut current {
                Some((family, any_active)) if *family == td.doc.family => *any_active |= active,
                _ => {
                    if let Some((family, any_active)) = current.take()
                        && matches(status, any_active)
                    {
                        families.push(family);
                    }
                    if families.len() == limit {
                        // Resume after every revision of the last family returned.
                        next = families
                            .last()
                            .map(|f: &String| crate::paging::token_for(&format!("{}\u{10FFFF}", keys.family(f))));
                        break 'walk;
                    }
                    current = Some((td.doc.family.clone(), active));
                }
            }
            after = Some(td.key);
        }
        if !more {
            break;
        }
    }
    if next.is_none()
        && let Some((family, any_active)) = current
        && matches(status, any_active)
    {
        families.push(family);
    }
    Ok(with_token(json!({ "families": families }), next))
}

fn matches(status: &str, active: bool) -> bool {
    match status {
        "ACTIVE" => active,
        "INACTIVE" => !active,
        _ => true,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeregisterRequest {
    task_definition: String,
}

pub async fn deregister(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DeregisterRequest = input(v)?;
    let has_revision = req.task_definition.starts_with("arn:") || req.task_definition.contains(':');
    if !has_revision {
        return Err(Error::invalid("taskDefinition", "A revision is required: use family:revision or the full ARN."));
    }
    let td = ctx
        .db
        .update(|| async {
            let td = require(ctx, &req.task_definition, "taskDefinition").await?;
            if td.doc.status != "ACTIVE" {
                return Ok((None, td.doc));
            }
            let mut doc = td.doc.clone();
            doc.status = "INACTIVE".into();
            doc.deregistered_at = Some(wharf_types::now());
            Ok((Some(cas_put(&td.key, td.rev, &doc)?), doc))
        })
        .await?;
    output(json!({ "taskDefinition": td }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteRequest {
    task_definitions: Vec<String>,
}

pub async fn delete(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DeleteRequest = input(v)?;
    if req.task_definitions.is_empty() || req.task_definitions.len() > 10 {
        return Err(Error::invalid("taskDefinitions", "Specify between 1 and 10 task definitions."));
    }
    let (mut deleted, mut failures) = (vec![], vec![]);
    for reference in &req.task_definitions {
        if !(reference.starts_with("arn:") || reference.contains(':')) {
            failures.push(Failure {
                arn: Some(reference.clone()),
                reason:
                    "The specified task definition identifier is invalid. Specify a valid name or ARN and try again."
                        .into(),
                detail: None,
            });
            continue;
        }
        let outcome = ctx
            .db
            .update(|| async {
                let Some(td) = resolve(ctx, reference, "taskDefinitions").await? else {
                    return Ok((None, Err("The specified task definition does not exist. Specify a valid account, family, revision and try again.")));
                };
                if td.doc.status == "ACTIVE" {
                    return Ok((None, Err("The specified task definition is still in ACTIVE status. Please deregister the target and try again.")));
                }
                let mut doc = td.doc.clone();
                doc.status = "DELETE_IN_PROGRESS".into();
                let txn = Txn {
                    compares: vec![Compare::ModRevision(td.key.clone(), td.rev)],
                    ops: vec![Op::put(&td.key, encode(&doc)?)],
                };
                Ok((Some(txn), Ok(doc)))
            })
            .await?;
        match outcome {
            Ok(doc) => deleted.push(doc),
            Err(reason) => failures.push(Failure { arn: Some(reference.clone()), reason: reason.into(), detail: None }),
        }
    }
    output(json!({ "taskDefinitions": deleted, "failures": failures }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fargate_sizes() {
        assert!(fargate_memory_ok(256, 512));
        assert!(!fargate_memory_ok(256, 4096));
        assert!(fargate_memory_ok(1024, 3072));
        assert!(!fargate_memory_ok(1024, 9216));
        assert!(fargate_memory_ok(8192, 20480));
        assert!(!fargate_memory_ok(8192, 17408));
        assert!(!fargate_memory_ok(300, 1024));
    }

    #[test]
    fn task_size_strings() {
        assert_eq!(parse_cpu("1 vCPU"), Some(1024));
        assert_eq!(parse_cpu(".25 vcpu"), Some(256));
        assert_eq!(parse_cpu("512"), Some(512));
        assert_eq!(parse_cpu("lots"), None);
        assert_eq!(parse_memory("2 GB"), Some(2048));
        assert_eq!(parse_memory("512"), Some(512));
        assert_eq!(parse_memory("-1"), None);
    }
}
