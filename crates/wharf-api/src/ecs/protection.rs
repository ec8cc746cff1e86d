//! Task scale-in protection: UpdateTaskProtection and GetTaskProtection. A protected task of
//! a service is not chosen when the service scales in or a deployment replaces it, until
//! its protection expires or is turned off (the scheduler reads it; see
//! `wharf_core::tasks::set_protection`). Tasks are named by ARN or id; the ones that cannot
//! be answered are `failures[]`, as ECS reports them.

use super::{active_cluster, input, output, split_ref};
use crate::Ctx;
use serde::Deserialize;
use serde_json::{Value, json};
use wharf_core::tasks::{protection, set_protection};
use wharf_types::{Error, Result};

/// Protection lasts 2 hours unless `expiresInMinutes` says otherwise (1 minute to 48 hours).
const DEFAULT_MINUTES: i64 = 120;
const MAX_MINUTES: i64 = 2880;
/// UpdateTaskProtection takes up to 10 tasks, GetTaskProtection up to 100.
const MAX_UPDATE: usize = 10;
const MAX_GET: usize = 100;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UpdateRequest {
    cluster: Option<String>,
    tasks: Vec<String>,
    protection_enabled: bool,
    expires_in_minutes: Option<i64>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetRequest {
    cluster: Option<String>,
    #[serde(default)]
    tasks: Vec<String>,
}

pub async fn update(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: UpdateRequest = input(v)?;
    if req.tasks.is_empty() || req.tasks.len() > MAX_UPDATE {
        return Err(Error::invalid("tasks", format!("Specify between 1 and {MAX_UPDATE} tasks.")));
    }
    let minutes = req.expires_in_minutes.unwrap_or(DEFAULT_MINUTES);
    if !(1..=MAX_MINUTES).contains(&minutes) {
        return Err(Error::invalid(
            "expiresInMinutes",
            format!("expiresInMinutes must be between 1 and {MAX_MINUTES} minutes."),
        ));
    }
    let cluster = active_cluster(ctx, req.cluster.as_deref()).await?;
    let now = wharf_types::now();
    let until = req.protection_enabled.then_some(now + minutes as f64 * 60.0);
    let (mut protected, mut failures) = (vec![], vec![]);
    for r in &req.tasks {
        let (arn_cluster, id) = split_ref(ctx, r, "task", "tasks")?;
        let cname = arn_cluster.unwrap_or_else(|| cluster.doc.cluster_name.clone());
        match set_protection(ctx, &cname, id, until, now).await? {
            Ok(p) => protected.push(p),
            Err(f) => failures.push(f),
        }
    }
    output(json!({ "protectedTasks": protected, "failures": failures }))
}

pub async fn get(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: GetRequest = input(v)?;
    if req.tasks.len() > MAX_GET {
        return Err(Error::invalid("tasks", format!("Specify at most {MAX_GET} tasks.")));
    }
    let cluster = active_cluster(ctx, req.cluster.as_deref()).await?;
    let now = wharf_types::now();
    let (mut protected, mut failures) = (vec![], vec![]);
    for r in &req.tasks {
        let (arn_cluster, id) = split_ref(ctx, r, "task", "tasks")?;
        let cname = arn_cluster.unwrap_or_else(|| cluster.doc.cluster_name.clone());
        match protection(ctx, &cname, id, now).await? {
            Ok(p) => protected.push(p),
            Err(f) => failures.push(f),
        }
    }
    output(json!({ "protectedTasks": protected, "failures": failures }))
}
