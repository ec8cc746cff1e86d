//! `RegisterScalableTarget`, `DescribeScalableTargets`, `DeregisterScalableTarget` and
//! `DescribeScalingActivities`.

use super::{Resource, bad_token, page_size};
use crate::{Ctx, input};
use serde::Deserialize;
use serde_json::{Value, json};
use wharf_core::autoscaling::{
    Cause, ScalableTarget, ScalingActivity, ScalingKeys, ScalingPolicy, ScheduledAction, SuspendedState, no_target,
    set_capacity,
};
use wharf_core::db::{Versioned, cas_put};
use wharf_store::{Compare, Op, Txn};
use wharf_types::{Error, Result};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct RegisterInput {
    service_namespace: String,
    resource_id: String,
    scalable_dimension: String,
    min_capacity: Option<i64>,
    max_capacity: Option<i64>,
    #[serde(rename = "RoleARN")]
    role_arn: Option<String>,
    suspended_state: Option<SuspendedStateInput>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SuspendedStateInput {
    dynamic_scaling_in_suspended: Option<bool>,
    dynamic_scaling_out_suspended: Option<bool>,
    scheduled_scaling_suspended: Option<bool>,
}

pub async fn register(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: RegisterInput = input(v)?;
    let r = Resource::new(req.service_namespace, req.resource_id, req.scalable_dimension)?;
    let (cluster, service) = r.cluster_and_service();
    let svc_key = wharf_core::keys::Keys::new(ctx).service(cluster, service);
    let active = ctx
        .db
        .get::<wharf_types::ecs::Service>(&svc_key)
        .await?
        .is_some_and(|s| s.doc.status == wharf_types::ecs::ServiceStatus::Active);
    if !active {
        return Err(Error::invalid("ResourceId", format!("ECS service doesn't exist: {}", r.resource_id)));
    }
    let key = ScalingKeys::new(ctx).target(&r.namespace, &r.resource_id, &r.dimension);
    let target = ctx
        .db
        .update(|| async {
            let current = ctx.db.get::<ScalableTarget>(&key).await?;
            let (rev, mut t) = match current {
                Some(c) => (c.rev, c.doc),
                None => {
                    if req.min_capacity.is_none() || req.max_capacity.is_none() {
                        return Err(Error::invalid(
                            "MinCapacity",
                            "MinCapacity and MaxCapacity are required to register a new scalable target.",
                        ));
                    }
                    let t = ScalableTarget {
                        service_namespace: r.namespace.clone(),
                        resource_id: r.resource_id.clone(),
                        scalable_dimension: r.dimension.clone(),
                        min_capacity: 0,
                        max_capacity: 0,
                        role_arn: format!(
                            "arn:aws:iam::{}:role/aws-service-role/ecs.application-autoscaling.amazonaws.com/AWSServiceRoleForApplicationAutoScaling_ECSService",
                            ctx.scope.account
                        ),
                        creation_time: wharf_types::now(),
                        suspended_state: SuspendedState::default(),
                        scalable_target_arn: format!(
                            "arn:aws:application-autoscaling:{}:{}:scalable-target/0ec5{}",
                            ctx.scope.region,
                            ctx.scope.account,
                            wharf_types::hex_id(28)
                        ),
                        cooldowns: Default::default(),
                    };
                    (0, t)
                }
            };
            t.min_capacity = req.min_capacity.unwrap_or(t.min_capacity);
            t.max_capacity = req.max_capacity.unwrap_or(t.max_capacity);
            if t.min_capacity > t.max_capacity {
                return Err(Error::invalid("MaxCapacity", "Maximum capacity cannot be less than minimum capacity"));
            }
            if let Some(role) = &req.role_arn {
                t.role_arn = role.clone();
            }
            if let Some(s) = &req.suspended_state {
                let st = &mut t.suspended_state;
                st.dynamic_scaling_in_suspended = s.dynamic_scaling_in_suspended.unwrap_or(st.dynamic_scaling_in_suspended);
                st.dynamic_scaling_out_suspended =
                    s.dynamic_scaling_out_suspended.unwrap_or(st.dynamic_scaling_out_suspended);
                st.scheduled_scaling_suspended = s.scheduled_scaling_suspended.unwrap_or(st.scheduled_scaling_suspended);
            }
            Ok((Some(cas_put(&key, rev, &t)?), t))
        })
        .await?;
    clamp_into_bounds(ctx, &target).await?;
    Ok(json!({"ScalableTargetARN": target.scalable_target_arn}))
}

/// Moves the service into the target's new bounds, as registering with a minimum above (or a
/// maximum below) the current desired count does in AWS.
pub(super) async fn clamp_into_bounds(ctx: &Ctx, t: &ScalableTarget) -> Result<()> {
    let now = wharf_core::logs::now_ms();
    let (min, max) = (t.min_capacity, t.max_capacity);
    set_capacity(ctx, t, Cause::MinimumCapacity(min), now, |c| (c < min).then_some(min)).await?;
    set_capacity(ctx, t, Cause::MaximumCapacity(max), now, |c| (c > max).then_some(max)).await?;
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeInput {
    service_namespace: String,
    resource_ids: Option<Vec<String>>,
    scalable_dimension: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

pub async fn describe(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DescribeInput = input(v)?;
    let (found, token) = super::describe_page(
        ctx,
        "target",
        &req.service_namespace,
        req.max_results,
        req.next_token.as_deref(),
        |t: &ScalableTarget| {
            req.resource_ids.as_ref().is_none_or(|ids| ids.contains(&t.resource_id))
                && req.scalable_dimension.as_ref().is_none_or(|d| *d == t.scalable_dimension)
        },
    )
    .await?;
    Ok(json!({"ScalableTargets": found, "NextToken": token}))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ResourceInput {
    service_namespace: String,
    resource_id: String,
    scalable_dimension: String,
}

impl ResourceInput {
    pub(super) fn resource(self) -> Result<Resource> {
        Resource::new(self.service_namespace, self.resource_id, self.scalable_dimension)
    }
}

pub async fn deregister(ctx: &Ctx, v: Value) -> Result<Value> {
    let r = input::<ResourceInput>(v)?.resource()?;
    let keys = ScalingKeys::new(ctx);
    let key = keys.target(&r.namespace, &r.resource_id, &r.dimension);
    let policies: Vec<Versioned<ScalingPolicy>> =
        ctx.db.list(&keys.children("policy", &r.namespace, &r.resource_id, &r.dimension)).await?;
    let scheduled: Vec<Versioned<ScheduledAction>> =
        ctx.db.list(&keys.children("scheduled", &r.namespace, &r.resource_id, &r.dimension)).await?;
    let Some(t) = ctx.db.get::<ScalableTarget>(&key).await? else {
        return Err(no_target(&r.resource_id, &r.dimension, &r.namespace));
    };
    let mut txn = Txn { compares: vec![Compare::ModRevision(key.clone(), t.rev)], ops: vec![Op::delete(&key)] };
    txn.ops.extend(policies.iter().map(|p| Op::delete(&p.key)));
    txn.ops.extend(scheduled.iter().map(|s| Op::delete(&s.key)));
    if !ctx.db.commit(txn).await? {
        return Err(Error::Conflict("The scalable target changed during the request; try again.".into()));
    }
    for p in &policies {
        super::policies::delete_owned_alarms(ctx, &p.doc).await?;
    }
    Ok(json!({}))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ActivitiesInput {
    service_namespace: String,
    resource_id: Option<String>,
    scalable_dimension: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

pub async fn activities(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: ActivitiesInput = input(v)?;
    super::check_namespace(&req.service_namespace)?;
    let limit = page_size(req.max_results)?;
    let keys = ScalingKeys::new(ctx);
    let prefix = match (&req.resource_id, &req.scalable_dimension) {
        (Some(id), Some(dim)) => keys.children("activity", &req.service_namespace, id, dim),
        _ => keys.all("activity", &req.service_namespace),
    };
    let mut all: Vec<ScalingActivity> =
        ctx.db.list::<ScalingActivity>(&prefix).await?.into_iter().map(|v| v.doc).collect();
    all.retain(|a| {
        req.resource_id.as_ref().is_none_or(|r| *r == a.resource_id)
            && req.scalable_dimension.as_ref().is_none_or(|d| *d == a.scalable_dimension)
    });
    // Newest first across targets (one target's keys already are).
    all.sort_by(|a, b| b.start_time.total_cmp(&a.start_time));
    let skip = match req.next_token.as_deref() {
        None => 0,
        Some(t) => t.parse::<usize>().map_err(|_| bad_token())?,
    };
    let page: Vec<&ScalingActivity> = all.iter().skip(skip).take(limit).collect();
    let token = (skip + page.len() < all.len()).then(|| (skip + page.len()).to_string());
    Ok(json!({"ScalingActivities": page, "NextToken": token}))
}
