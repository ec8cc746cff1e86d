//! `PutScheduledAction`, `DescribeScheduledActions` and `DeleteScheduledAction`; the
//! `scheduled-scaling` controller runs them when they fall due.

use super::targets::ResourceInput;
use super::{Resource, delete_doc, describe_page};
use crate::{Ctx, input};
use serde::Deserialize;
use serde_json::{Value, json};
use wharf_core::autoscaling::{ScalableTarget, ScalingKeys, ScheduledAction, TargetAction, no_target};
use wharf_core::db::cas_put;
use wharf_core::schedule::{Schedule, zone_offset_ms};
use wharf_types::{Error, Result};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutInput {
    scheduled_action_name: String,
    schedule: Option<String>,
    timezone: Option<String>,
    start_time: Option<f64>,
    end_time: Option<f64>,
    scalable_target_action: Option<TargetAction>,
    #[serde(flatten)]
    resource: ResourceInput,
}

pub async fn put(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: PutInput = input(v)?;
    let r: Resource = req.resource.resource()?;
    let keys = ScalingKeys::new(ctx);
    if ctx.db.get::<ScalableTarget>(&keys.target(&r.namespace, &r.resource_id, &r.dimension)).await?.is_none() {
        return Err(no_target(&r.resource_id, &r.dimension, &r.namespace));
    }
    let key = keys.scheduled(&r.namespace, &r.resource_id, &r.dimension, &req.scheduled_action_name);
    let existing = ctx.db.get::<ScheduledAction>(&key).await?;
    let schedule = match (req.schedule, &existing) {
        (Some(s), _) => s,
        (None, Some(e)) => e.doc.schedule.clone(),
        (None, None) => return Err(Error::invalid("Schedule", "Schedule is required for a new scheduled action.")),
    };
    Schedule::parse(&schedule)
        .map_err(|why| Error::invalid("Schedule", format!("Invalid schedule {schedule}: {why}")))?;
    zone_offset_ms(req.timezone.as_deref()).map_err(|why| Error::invalid("Timezone", why))?;
    if let (Some(s), Some(e)) = (req.start_time, req.end_time)
        && s >= e
    {
        return Err(Error::invalid("EndTime", "EndTime must be after StartTime."));
    }
    let action = req.scalable_target_action.or_else(|| existing.as_ref().map(|e| e.doc.scalable_target_action.clone()));
    let action = action.unwrap_or(TargetAction { min_capacity: None, max_capacity: None });
    if let (Some(min), Some(max)) = (action.min_capacity, action.max_capacity)
        && min > max
    {
        return Err(Error::invalid("ScalableTargetAction", "Maximum capacity cannot be less than minimum capacity"));
    }
    let doc = ScheduledAction {
        scheduled_action_arn: existing.as_ref().map_or_else(
            || {
                format!(
                    "arn:aws:autoscaling:{}:{}:scheduledAction:{}:resource/{}/{}:scheduledActionName/{}",
                    ctx.scope.region,
                    ctx.scope.account,
                    wharf_types::uuid(),
                    r.namespace,
                    r.resource_id,
                    req.scheduled_action_name
                )
            },
            |e| e.doc.scheduled_action_arn.clone(),
        ),
        scheduled_action_name: req.scheduled_action_name,
        service_namespace: r.namespace.clone(),
        schedule,
        timezone: req.timezone,
        resource_id: r.resource_id.clone(),
        scalable_dimension: r.dimension.clone(),
        start_time: req.start_time,
        end_time: req.end_time,
        scalable_target_action: action,
        creation_time: existing.as_ref().map_or_else(wharf_types::now, |e| e.doc.creation_time),
        // A changed schedule starts afresh from now.
        last_run: None,
    };
    if !ctx.db.commit(cas_put(&key, existing.map_or(0, |e| e.rev), &doc)?).await? {
        return Err(Error::Conflict("The scheduled action changed during the request; try again.".into()));
    }
    Ok(json!({}))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeInput {
    service_namespace: String,
    scheduled_action_names: Option<Vec<String>>,
    resource_id: Option<String>,
    scalable_dimension: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

pub async fn describe(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DescribeInput = input(v)?;
    let (found, token) = describe_page(
        ctx,
        "scheduled",
        &req.service_namespace,
        req.max_results,
        req.next_token.as_deref(),
        |a: &ScheduledAction| {
            req.scheduled_action_names.as_ref().is_none_or(|n| n.contains(&a.scheduled_action_name))
                && req.resource_id.as_ref().is_none_or(|r| *r == a.resource_id)
                && req.scalable_dimension.as_ref().is_none_or(|d| *d == a.scalable_dimension)
        },
    )
    .await?;
    Ok(json!({"ScheduledActions": found, "NextToken": token}))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteInput {
    scheduled_action_name: String,
    #[serde(flatten)]
    resource: ResourceInput,
}

pub async fn delete(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DeleteInput = input(v)?;
    let r = req.resource.resource()?;
    let key = ScalingKeys::new(ctx).scheduled(&r.namespace, &r.resource_id, &r.dimension, &req.scheduled_action_name);
    let missing = Error::not_found(
        wharf_types::Resource::ScalingObject,
        format!(
            "No scheduled action found for service namespace: {}, resource ID: {}, scalable dimension: {}, scheduled action name: {}",
            r.namespace, r.resource_id, r.dimension, req.scheduled_action_name
        ),
    );
    delete_doc::<ScheduledAction>(ctx, &key, missing, "scheduled action").await?;
    Ok(json!({}))
}
