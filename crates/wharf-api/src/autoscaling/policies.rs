//! `PutScalingPolicy`, `DescribeScalingPolicies` and `DeleteScalingPolicy`. A target tracking
//! policy creates its alarm pair as AWS does — high: 3 of 3 one-minute periods above the
//! target; low: 15 of 15 below 90 % of it (none with `DisableScaleIn`) — named
//! `TargetTracking-<resource id>-AlarmHigh|AlarmLow-<uuid>`, and deletes them with itself.

use super::targets::ResourceInput;
use super::{Resource, delete_doc, describe_page};
use crate::{Ctx, input};
use serde::Deserialize;
use serde_json::{Value, json};
use wharf_core::alarms::{self, AlarmDimension, AlarmKeys, AlarmState, Comparison, INITIAL_REASON, MetricAlarm};
use wharf_core::autoscaling::{
    PolicyAlarm, ScalableTarget, ScalingKeys, ScalingPolicy, StepScaling, TargetTracking, no_target,
};
use wharf_core::db::cas_put;
use wharf_types::{Error, Result};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutInput {
    policy_name: String,
    service_namespace: String,
    resource_id: String,
    scalable_dimension: String,
    policy_type: Option<String>,
    step_scaling_policy_configuration: Option<StepScaling>,
    target_tracking_scaling_policy_configuration: Option<TargetTracking>,
    predictive_scaling_policy_configuration: Option<Value>,
}

/// The metric a target tracking policy tracks: (namespace, name, dimensions, statistic,
/// period in seconds).
type Tracked = (String, String, Vec<AlarmDimension>, String, i64);

fn dim(name: &str, value: &str) -> AlarmDimension {
    AlarmDimension { name: name.into(), value: value.into() }
}

fn tracked_metric(r: &Resource, tt: &TargetTracking) -> Result<Tracked> {
    let (cluster, service) = r.cluster_and_service();
    let ecs_dims = vec![dim("ClusterName", cluster), dim("ServiceName", service)];
    match (&tt.predefined_metric_specification, &tt.customized_metric_specification) {
        (Some(p), None) => {
            let field = "TargetTrackingScalingPolicyConfiguration.PredefinedMetricSpecification";
            let ecs =
                |name: &str, period| Ok(("AWS/ECS".into(), name.into(), ecs_dims.clone(), "Average".into(), period));
            match p.predefined_metric_type.as_str() {
                "ECSServiceAverageCPUUtilization" => ecs("CPUUtilization", 60),
                "ECSServiceAverageMemoryUtilization" => ecs("MemoryUtilization", 60),
                "ECSServiceAverageCPUUtilizationHighResolution" => ecs("CPUUtilization", 10),
                "ECSServiceAverageMemoryUtilizationHighResolution" => ecs("MemoryUtilization", 10),
                "ALBRequestCountPerTarget" => {
                    let label = p.resource_label.as_deref().unwrap_or_default();
                    let tg = label
                        .split_once("/targetgroup/")
                        .filter(|(lb, tg)| lb.starts_with("app/") && lb.split('/').count() == 3 && tg.split('/').count() == 2)
                        .map(|(_, tg)| format!("targetgroup/{tg}"))
                        .ok_or_else(|| {
                            Error::invalid(
                                format!("{field}.ResourceLabel"),
                                format!(
                                    "The resource label for ALBRequestCountPerTarget must be app/<load-balancer-name>/<load-balancer-id>/targetgroup/<target-group-name>/<target-group-id> (it was {label:?})."
                                ),
                            )
                        })?;
                    Ok((
                        "AWS/ApplicationELB".into(),
                        "RequestCountPerTarget".into(),
                        vec![dim("TargetGroup", &tg)],
                        "Sum".into(),
                        60,
                    ))
                }
                other => Err(Error::invalid(
                    format!("{field}.PredefinedMetricType"),
                    format!("Unsupported predefined metric type {other} for service namespace ecs."),
                )),
            }
        }
        (None, Some(c)) => {
            let field = "TargetTrackingScalingPolicyConfiguration.CustomizedMetricSpecification";
            if c.metrics.is_some() {
                return Err(Error::Unsupported(format!(
                    "{field}.Metrics: metric math in a customized metric is not served by Wharf; name one metric."
                )));
            }
            let (Some(ns), Some(name), Some(stat)) = (&c.namespace, &c.metric_name, &c.statistic) else {
                return Err(Error::invalid(field, format!("{field} needs MetricName, Namespace and Statistic.")));
            };
            if !matches!(stat.as_str(), "Average" | "Minimum" | "Maximum" | "SampleCount" | "Sum") {
                return Err(Error::invalid(format!("{field}.Statistic"), format!("Unsupported statistic {stat}.")));
            }
            let dims = c.dimensions.iter().map(|d| dim(&d.name, &d.value)).collect();
            Ok((ns.clone(), name.clone(), dims, stat.clone(), 60))
        }
        _ => Err(Error::invalid(
            "TargetTrackingScalingPolicyConfiguration",
            "Exactly one of PredefinedMetricSpecification and CustomizedMetricSpecification must be specified.",
        )),
    }
}

fn check_step(step: &StepScaling) -> Result<()> {
    let field = "StepScalingPolicyConfiguration";
    if step.step_adjustments.is_empty() {
        return Err(Error::invalid(format!("{field}.StepAdjustments"), "StepAdjustments must not be empty."));
    }
    if !matches!(
        step.adjustment_type.as_deref(),
        Some("ChangeInCapacity" | "ExactCapacity" | "PercentChangeInCapacity")
    ) {
        return Err(Error::invalid(
            format!("{field}.AdjustmentType"),
            "AdjustmentType must be ChangeInCapacity, ExactCapacity or PercentChangeInCapacity.",
        ));
    }
    let mut bounds: Vec<(f64, f64)> = step
        .step_adjustments
        .iter()
        .map(|s| {
            (
                s.metric_interval_lower_bound.unwrap_or(f64::NEG_INFINITY),
                s.metric_interval_upper_bound.unwrap_or(f64::INFINITY),
            )
        })
        .collect();
    bounds.sort_by(|a, b| a.0.total_cmp(&b.0));
    if bounds.iter().any(|(lo, hi)| lo >= hi) || bounds.windows(2).any(|w| w[0].1 > w[1].0) {
        return Err(Error::invalid(
            format!("{field}.StepAdjustments"),
            "Step adjustments must not overlap, and each lower bound must be below its upper bound.",
        ));
    }
    Ok(())
}

pub async fn put(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: PutInput = input(v)?;
    let r = Resource::new(req.service_namespace, req.resource_id, req.scalable_dimension)?;
    let policy_type = req.policy_type.unwrap_or_else(|| "StepScaling".into());
    let keys = ScalingKeys::new(ctx);
    let target_key = keys.target(&r.namespace, &r.resource_id, &r.dimension);
    if ctx.db.get::<ScalableTarget>(&target_key).await?.is_none() {
        return Err(no_target(&r.resource_id, &r.dimension, &r.namespace));
    }
    let (step, tracking) = match policy_type.as_str() {
        "TargetTrackingScaling" => {
            let Some(tt) = req.target_tracking_scaling_policy_configuration else {
                return Err(Error::invalid(
                    "TargetTrackingScalingPolicyConfiguration",
                    "TargetTrackingScalingPolicyConfiguration is required for a TargetTrackingScaling policy.",
                ));
            };
            (None, Some(tt))
        }
        "StepScaling" => {
            let Some(step) = req.step_scaling_policy_configuration else {
                return Err(Error::invalid(
                    "StepScalingPolicyConfiguration",
                    "StepScalingPolicyConfiguration is required for a StepScaling policy.",
                ));
            };
            check_step(&step)?;
            (Some(step), None)
        }
        other => {
            let _ = req.predictive_scaling_policy_configuration;
            return Err(Error::invalid(
                "PolicyType",
                format!("Unsupported policy type {other} for service namespace ecs."),
            ));
        }
    };
    let key = keys.policy(&r.namespace, &r.resource_id, &r.dimension, &req.policy_name);
    let existing = ctx.db.get::<ScalingPolicy>(&key).await?;
    let policy_arn = match &existing {
        Some(p) => p.doc.policy_arn.clone(),
        None => format!(
            "arn:aws:autoscaling:{}:{}:scalingPolicy:{}:resource/{}/{}:policyName/{}",
            ctx.scope.region,
            ctx.scope.account,
            wharf_types::uuid(),
            r.namespace,
            r.resource_id,
            req.policy_name
        ),
    };
    let mut alarms_owned = Vec::new();
    if let Some(tt) = &tracking {
        let (namespace, metric, dims, statistic, period) = tracked_metric(&r, tt)?;
        let now = wharf_core::logs::now_ms();
        let mut pair = vec![("AlarmHigh", Comparison::GreaterThanThreshold, tt.target_value, 3)];
        if tt.disable_scale_in != Some(true) {
            pair.push(("AlarmLow", Comparison::LessThanThreshold, tt.target_value * 0.9, 15));
        }
        for (role, cmp, threshold, periods) in pair {
            let name = format!("TargetTracking-{}-{role}-{}", r.resource_id, wharf_types::uuid());
            let t = now as f64 / 1000.0;
            let alarm = MetricAlarm {
                alarm_arn: format!("arn:aws:cloudwatch:{}:{}:alarm:{name}", ctx.scope.region, ctx.scope.account),
                alarm_name: name.clone(),
                alarm_description: Some(format!(
                    "DO NOT EDIT OR DELETE. For TargetTrackingScaling policy {policy_arn}."
                )),
                alarm_configuration_updated_timestamp: t,
                actions_enabled: true,
                ok_actions: vec![],
                alarm_actions: vec![policy_arn.clone()],
                insufficient_data_actions: vec![],
                state_value: AlarmState::InsufficientData,
                state_reason: INITIAL_REASON.into(),
                state_reason_data: None,
                state_updated_timestamp: t,
                state_transitioned_timestamp: t,
                metric_name: metric.clone(),
                namespace: namespace.clone(),
                statistic: statistic.clone(),
                dimensions: dims.clone(),
                period,
                unit: None,
                evaluation_periods: periods,
                datapoints_to_alarm: Some(periods),
                threshold,
                comparison_operator: cmp,
                treat_missing_data: Default::default(),
                tags: vec![],
            };
            alarms_owned.push(PolicyAlarm { alarm_name: name, alarm_arn: alarm.alarm_arn.clone() });
            alarms::put(ctx, ctx.metrics(), alarm, now).await?;
        }
    }
    let policy = ScalingPolicy {
        policy_arn: policy_arn.clone(),
        policy_name: req.policy_name,
        service_namespace: r.namespace.clone(),
        resource_id: r.resource_id.clone(),
        scalable_dimension: r.dimension.clone(),
        policy_type,
        step_scaling_policy_configuration: step,
        target_tracking_scaling_policy_configuration: tracking,
        alarms: alarms_owned.clone(),
        creation_time: existing.as_ref().map_or_else(wharf_types::now, |p| p.doc.creation_time),
    };
    let committed = ctx.db.commit(cas_put(&key, existing.as_ref().map_or(0, |p| p.rev), &policy)?).await?;
    if !committed {
        // A concurrent put of the same policy won: its alarms stand, these go.
        delete_owned_alarms(ctx, &policy).await?;
        return Err(Error::Conflict("The scaling policy changed during the request; try again.".into()));
    }
    if let Some(old) = existing {
        delete_owned_alarms(ctx, &old.doc).await?;
    }
    Ok(json!({"PolicyARN": policy_arn, "Alarms": alarms_owned}))
}

/// Deletes the alarms a target tracking policy created (a step policy owns none: its alarms
/// are the user's).
pub(super) async fn delete_owned_alarms(ctx: &Ctx, p: &ScalingPolicy) -> Result<()> {
    if p.target_tracking_scaling_policy_configuration.is_none() {
        return Ok(());
    }
    let keys = AlarmKeys::new(ctx);
    let mut names = Vec::new();
    for a in &p.alarms {
        if ctx.db.get::<MetricAlarm>(&keys.alarm(&a.alarm_name)).await?.is_some() {
            names.push(a.alarm_name.clone());
        }
    }
    if names.is_empty() {
        return Ok(());
    }
    alarms::delete(ctx, ctx.metrics(), &names).await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeInput {
    service_namespace: String,
    policy_names: Option<Vec<String>>,
    resource_id: Option<String>,
    scalable_dimension: Option<String>,
    max_results: Option<i64>,
    next_token: Option<String>,
}

pub async fn describe(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DescribeInput = input(v)?;
    let (found, token) = describe_page(
        ctx,
        "policy",
        &req.service_namespace,
        req.max_results,
        req.next_token.as_deref(),
        |p: &ScalingPolicy| {
            req.policy_names.as_ref().is_none_or(|n| n.contains(&p.policy_name))
                && req.resource_id.as_ref().is_none_or(|r| *r == p.resource_id)
                && req.scalable_dimension.as_ref().is_none_or(|d| *d == p.scalable_dimension)
        },
    )
    .await?;
    Ok(json!({"ScalingPolicies": found, "NextToken": token}))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteInput {
    policy_name: String,
    #[serde(flatten)]
    resource: ResourceInput,
}

pub async fn delete(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DeleteInput = input(v)?;
    let r = req.resource.resource()?;
    let key = ScalingKeys::new(ctx).policy(&r.namespace, &r.resource_id, &r.dimension, &req.policy_name);
    let missing = Error::not_found(
        wharf_types::Resource::ScalingObject,
        format!(
            "No scaling policy found for service namespace: {}, resource ID: {}, scalable dimension: {}, policy name: {}",
            r.namespace, r.resource_id, r.dimension, req.policy_name
        ),
    );
    let p = delete_doc::<ScalingPolicy>(ctx, &key, missing, "scaling policy").await?;
    delete_owned_alarms(ctx, &p.doc).await?;
    Ok(json!({}))
}
