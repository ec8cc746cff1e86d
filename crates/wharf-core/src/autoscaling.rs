//! Application Auto Scaling for ECS services: scalable targets, scaling policies, scheduled
//! actions and scaling activities (documents shaped as the wire shows them), and what a
//! policy does when an alarm invokes it — the one place a service's desired count is changed
//! by something other than the user.
//!
//! Documents live at `/autoscaling/<kind>/<account>/<region>/<namespace>/<resource id>|<dimension>`
//! then `/<name>` for policies and scheduled actions, `/<inverted time>` for activities (so a
//! listing is newest first). Cooldown bookkeeping is the target's (`wharfCooldowns`), typed.

use crate::Scoped;
use crate::db::{Versioned, cas_put};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use wharf_store::{Op, Txn};
use wharf_types::{Error, Resource, Result};

/// The one scalable dimension of ECS.
pub const ECS_DESIRED_COUNT: &str = "ecs:service:DesiredCount";

/// Activities kept per scalable target (older ones are deleted as new ones are written).
const ACTIVITIES_KEPT: usize = 100;

/// Store keys of Application Auto Scaling documents in one scope.
#[derive(Debug, Clone)]
pub struct ScalingKeys {
    scope: String,
}

impl ScalingKeys {
    pub fn new(s: &Scoped) -> Self {
        ScalingKeys { scope: format!("{}/{}", s.scope.account, s.scope.region) }
    }
    /// `kind` documents of `namespace` (all of them: `namespace` empty).
    pub fn all(&self, kind: &str, namespace: &str) -> String {
        if namespace.is_empty() {
            format!("/autoscaling/{kind}/{}/", self.scope)
        } else {
            format!("/autoscaling/{kind}/{}/{namespace}/", self.scope)
        }
    }
    fn of(&self, kind: &str, namespace: &str, resource: &str, dimension: &str) -> String {
        format!("{}{resource}|{dimension}", self.all(kind, namespace))
    }
    pub fn target(&self, namespace: &str, resource: &str, dimension: &str) -> String {
        self.of("target", namespace, resource, dimension)
    }
    /// A target's policies (or scheduled actions, activities): `…|<dimension>/`.
    pub fn children(&self, kind: &str, namespace: &str, resource: &str, dimension: &str) -> String {
        format!("{}/", self.of(kind, namespace, resource, dimension))
    }
    pub fn policy(&self, namespace: &str, resource: &str, dimension: &str, name: &str) -> String {
        format!("{}{name}", self.children("policy", namespace, resource, dimension))
    }
    pub fn scheduled(&self, namespace: &str, resource: &str, dimension: &str, name: &str) -> String {
        format!("{}{name}", self.children("scheduled", namespace, resource, dimension))
    }
}

/// Every scope's documents of `kind` (controllers).
pub fn all_of_kind(kind: &str) -> String {
    format!("/autoscaling/{kind}/")
}

/// The scope of a key under [`all_of_kind`].
pub fn scope_of_key(key: &str) -> Option<wharf_types::Scope> {
    let mut parts = key.strip_prefix("/autoscaling/")?.splitn(4, '/');
    let _kind = parts.next()?;
    Some(wharf_types::Scope::new(parts.next()?, parts.next()?))
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct SuspendedState {
    #[serde(default)]
    pub dynamic_scaling_in_suspended: bool,
    #[serde(default)]
    pub dynamic_scaling_out_suspended: bool,
    #[serde(default)]
    pub scheduled_scaling_suspended: bool,
}

/// When the target last scaled, for cooldowns (milliseconds; the capacity a scale-out set).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cooldowns {
    pub last_scale_out: Option<i64>,
    pub last_scale_out_to: Option<i64>,
    pub last_scale_in: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScalableTarget {
    pub service_namespace: String,
    pub resource_id: String,
    pub scalable_dimension: String,
    pub min_capacity: i64,
    pub max_capacity: i64,
    #[serde(rename = "RoleARN")]
    pub role_arn: String,
    pub creation_time: f64,
    pub suspended_state: SuspendedState,
    #[serde(rename = "ScalableTargetARN")]
    pub scalable_target_arn: String,
    #[serde(rename = "wharfCooldowns", default)]
    pub cooldowns: Cooldowns,
}

impl ScalableTarget {
    /// The ECS service a `service/<cluster>/<name>` resource id names.
    pub fn service(&self) -> Option<(&str, &str)> {
        let rest = self.resource_id.strip_prefix("service/")?;
        rest.split_once('/')
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PredefinedMetric {
    pub predefined_metric_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_label: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct MetricDimension {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CustomizedMetric {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dimensions: Vec<MetricDimension>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statistic: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Value>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TargetTracking {
    pub target_value: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub predefined_metric_specification: Option<PredefinedMetric>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customized_metric_specification: Option<CustomizedMetric>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_out_cooldown: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_in_cooldown: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_scale_in: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StepAdjustment {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_interval_lower_bound: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_interval_upper_bound: Option<f64>,
    pub scaling_adjustment: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct StepScaling {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adjustment_type: Option<String>,
    #[serde(default)]
    pub step_adjustments: Vec<StepAdjustment>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_adjustment_magnitude: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cooldown: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric_aggregation_type: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyAlarm {
    pub alarm_name: String,
    #[serde(rename = "AlarmARN")]
    pub alarm_arn: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScalingPolicy {
    #[serde(rename = "PolicyARN")]
    pub policy_arn: String,
    pub policy_name: String,
    pub service_namespace: String,
    pub resource_id: String,
    pub scalable_dimension: String,
    pub policy_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_scaling_policy_configuration: Option<StepScaling>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_tracking_scaling_policy_configuration: Option<TargetTracking>,
    #[serde(default)]
    pub alarms: Vec<PolicyAlarm>,
    pub creation_time: f64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TargetAction {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_capacity: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_capacity: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScheduledAction {
    pub scheduled_action_name: String,
    #[serde(rename = "ScheduledActionARN")]
    pub scheduled_action_arn: String,
    pub service_namespace: String,
    pub schedule: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
    pub resource_id: String,
    pub scalable_dimension: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_time: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end_time: Option<f64>,
    pub scalable_target_action: TargetAction,
    pub creation_time: f64,
    /// The last time (ms) the action ran, so it runs once per due time.
    #[serde(rename = "wharfLastRun", default, skip_serializing_if = "Option::is_none")]
    pub last_run: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ScalingActivity {
    pub activity_id: String,
    pub service_namespace: String,
    pub resource_id: String,
    pub scalable_dimension: String,
    pub description: String,
    pub cause: String,
    pub start_time: f64,
    pub end_time: f64,
    pub status_code: String,
    pub status_message: String,
}

/// Why a scaling action happens, for the activity's cause.
#[derive(Debug, Clone)]
pub enum Cause {
    /// `monitor alarm <name> in state ALARM triggered policy <name>`.
    Alarm {
        alarm: String,
        state: &'static str,
        policy: String,
    },
    /// Registering or scheduling set new bounds the current capacity is outside of.
    MinimumCapacity(i64),
    MaximumCapacity(i64),
    /// `scheduled action name <name> was triggered`.
    Scheduled(String),
}

impl Cause {
    pub fn text(&self) -> String {
        match self {
            Cause::Alarm { alarm, state, policy } => {
                format!("monitor alarm {alarm} in state {state} triggered policy {policy}")
            }
            Cause::MinimumCapacity(n) => format!("minimum capacity was set to {n}"),
            Cause::MaximumCapacity(n) => format!("maximum capacity was set to {n}"),
            Cause::Scheduled(name) => format!("scheduled action name {name} was triggered"),
        }
    }
}

/// Sets the service of `target` to `to(current)` (clamped into the target's bounds) and
/// records the activity. Returns the new capacity when it changed.
pub async fn set_capacity(
    s: &Scoped,
    target: &ScalableTarget,
    cause: Cause,
    now_ms: i64,
    to: impl Fn(i64) -> Option<i64>,
) -> Result<Option<i64>> {
    let Some((cluster, service)) = target.service() else { return Ok(None) };
    let (min, max) = (target.min_capacity, target.max_capacity);
    let changed =
        crate::deployments::scale(s, cluster, service, |current| to(current).map(|n| n.clamp(min, max))).await?;
    let Some((_, after)) = changed else { return Ok(None) };
    record_activity(
        s,
        target,
        format!("Setting desired count to {after}."),
        cause.text(),
        format!("Successfully set desired count to {after}. Change successfully fulfilled by ecs."),
        now_ms,
    )
    .await?;
    Ok(Some(after))
}

/// Writes an activity of `target`, dropping the oldest beyond [`ACTIVITIES_KEPT`].
pub async fn record_activity(
    s: &Scoped,
    target: &ScalableTarget,
    description: String,
    cause: String,
    message: String,
    now_ms: i64,
) -> Result<()> {
    let keys = ScalingKeys::new(s);
    let prefix = keys.children("activity", &target.service_namespace, &target.resource_id, &target.scalable_dimension);
    let id = wharf_types::uuid();
    let t = now_ms as f64 / 1000.0;
    let activity = ScalingActivity {
        activity_id: id.clone(),
        service_namespace: target.service_namespace.clone(),
        resource_id: target.resource_id.clone(),
        scalable_dimension: target.scalable_dimension.clone(),
        description,
        cause,
        start_time: t,
        end_time: t,
        status_code: "Successful".into(),
        status_message: message,
    };
    let key = format!("{prefix}{:019}-{id}", i64::MAX - now_ms);
    let mut txn = Txn { compares: vec![], ops: vec![Op::put(&key, crate::db::encode(&activity)?)] };
    let old = s.db.keys(&prefix, ACTIVITIES_KEPT + 16).await?;
    for k in old.iter().skip(ACTIVITIES_KEPT.saturating_sub(1)) {
        txn.ops.push(Op::delete(k));
    }
    s.db.commit(txn).await?;
    Ok(())
}

/// The scalable target `policy` belongs to.
pub async fn target_of(s: &Scoped, p: &ScalingPolicy) -> Result<Option<Versioned<ScalableTarget>>> {
    s.db.get(&ScalingKeys::new(s).target(&p.service_namespace, &p.resource_id, &p.scalable_dimension)).await
}

/// Finds a policy by its ARN (`…:scalingPolicy:<id>:resource/<ns>/<resource id>:policyName/<name>`).
pub async fn policy_by_arn(s: &Scoped, arn: &str) -> Result<Option<ScalingPolicy>> {
    let Some((_, rest)) = arn.split_once(":resource/") else { return Ok(None) };
    let Some((resource, name)) = rest.rsplit_once(":policyName/") else { return Ok(None) };
    let Some((namespace, resource_id)) = resource.split_once('/') else { return Ok(None) };
    let prefix = ScalingKeys::new(s).all("policy", namespace);
    let candidates: Vec<Versioned<ScalingPolicy>> = s.db.list(&prefix).await?;
    Ok(candidates
        .into_iter()
        .map(|v| v.doc)
        .find(|p| p.resource_id == resource_id && p.policy_name == name && p.policy_arn == arn))
}

/// What an alarm's invocation of a policy decides: the new capacity, or why nothing happens.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// Scale out (`true`) or in to this capacity.
    Scale { to: i64, out: bool },
    /// Nothing to do (within cooldown, suspended, at the bound, no step matches).
    Hold,
}

/// Decides what `policy`, invoked by an alarm whose breach direction is `upper` (greater-than
/// alarms scale out), with the alarm's `threshold` and latest datapoint `value`, does to a
/// target now at `current` capacity. `minute_ms` is the length of a metrics minute, which
/// scales cooldowns for `--metrics-period`. Pure: the tests pin every rule.
#[allow(clippy::too_many_arguments)]
pub fn decide(
    policy: &ScalingPolicy,
    target: &ScalableTarget,
    upper: bool,
    threshold: f64,
    value: f64,
    current: i64,
    now_ms: i64,
    minute_ms: i64,
) -> Decision {
    let secs = |s: i64| s * minute_ms / 60;
    let cd = &target.cooldowns;
    let suspended = &target.suspended_state;
    let since = |t: Option<i64>| t.map_or(i64::MAX, |t| now_ms - t);
    let wanted = if let Some(tt) = &policy.target_tracking_scaling_policy_configuration {
        let out_cooldown = secs(tt.scale_out_cooldown.unwrap_or(300));
        let in_cooldown = secs(tt.scale_in_cooldown.unwrap_or(300));
        if tt.target_value <= 0.0 {
            return Decision::Hold;
        }
        let proportional = ((current.max(1) as f64) * value / tt.target_value).ceil() as i64;
        if upper {
            // Scale-outs during the cooldown only go further than the last one did.
            let in_cd = since(cd.last_scale_out) < out_cooldown;
            if in_cd && proportional <= cd.last_scale_out_to.unwrap_or(0) {
                return Decision::Hold;
            }
            proportional.max(current + 1)
        } else {
            if tt.disable_scale_in == Some(true)
                || since(cd.last_scale_in) < in_cooldown
                || since(cd.last_scale_out) < out_cooldown
            {
                return Decision::Hold;
            }
            // Only as far in as the load allows: a step that would overshoot the target waits.
            if proportional >= current {
                return Decision::Hold;
            }
            proportional
        }
    } else if let Some(step) = &policy.step_scaling_policy_configuration {
        let cooldown = secs(step.cooldown.unwrap_or(0));
        let last = cd.last_scale_out.max(cd.last_scale_in);
        if since(last) < cooldown {
            return Decision::Hold;
        }
        let delta = value - threshold;
        let Some(adj) = step.step_adjustments.iter().find(|s| {
            s.metric_interval_lower_bound.is_none_or(|l| delta >= l)
                && s.metric_interval_upper_bound.is_none_or(|u| delta < u)
        }) else {
            return Decision::Hold;
        };
        let n = adj.scaling_adjustment;
        match step.adjustment_type.as_deref().unwrap_or("ChangeInCapacity") {
            "ExactCapacity" => n,
            "PercentChangeInCapacity" => {
                let change = (current as f64 * n as f64 / 100.0).trunc() as i64;
                let min_mag = step.min_adjustment_magnitude.unwrap_or(1).max(1);
                let change = if change.abs() < min_mag { min_mag * n.signum() } else { change };
                current + change
            }
            _ => current + n,
        }
    } else {
        return Decision::Hold;
    };
    let to = wanted.clamp(target.min_capacity, target.max_capacity);
    if to == current {
        return Decision::Hold;
    }
    let out = to > current;
    if (out && suspended.dynamic_scaling_out_suspended) || (!out && suspended.dynamic_scaling_in_suspended) {
        return Decision::Hold;
    }
    Decision::Scale { to, out }
}

/// Runs the policy at `policy_arn` for alarm `alarm` (breach direction `upper`, `threshold`,
/// latest datapoint `value`): decides, sets the capacity, notes the cooldown. Returns the new
/// capacity when it changed.
#[allow(clippy::too_many_arguments)]
pub async fn invoke(
    s: &Scoped,
    policy_arn: &str,
    alarm: &str,
    upper: bool,
    threshold: f64,
    value: f64,
    now_ms: i64,
    minute_ms: i64,
) -> Result<Option<i64>> {
    let Some(policy) = policy_by_arn(s, policy_arn).await? else { return Ok(None) };
    let Some(target) = target_of(s, &policy).await? else { return Ok(None) };
    let Some((cluster, service)) = target.doc.service() else { return Ok(None) };
    let svc_key = crate::keys::Keys::new(s).service(cluster, service);
    let Some(svc) = s.db.get::<wharf_types::ecs::Service>(&svc_key).await? else { return Ok(None) };
    let current = svc.doc.desired_count;
    let Decision::Scale { to, out } = decide(&policy, &target.doc, upper, threshold, value, current, now_ms, minute_ms)
    else {
        return Ok(None);
    };
    let cause = Cause::Alarm { alarm: alarm.to_string(), state: "ALARM", policy: policy.policy_name.clone() };
    let Some(after) = set_capacity(s, &target.doc, cause, now_ms, |_| Some(to)).await? else { return Ok(None) };
    let mut t = target.doc.clone();
    if out {
        t.cooldowns.last_scale_out = Some(now_ms);
        t.cooldowns.last_scale_out_to = Some(after);
    } else {
        t.cooldowns.last_scale_in = Some(now_ms);
    }
    // A lost race (the target re-registered meanwhile) only loses a cooldown mark.
    s.db.commit(cas_put(&target.key, target.rev, &t)?).await?;
    Ok(Some(after))
}

/// The error for a scalable target that is not registered.
pub fn no_target(resource_id: &str, dimension: &str, namespace: &str) -> Error {
    Error::not_found(
        Resource::ScalingObject,
        format!(
            "No scalable target registered for service namespace: {namespace}, resource ID: {resource_id}, scalable dimension: {dimension}"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(min: i64, max: i64) -> ScalableTarget {
        ScalableTarget {
            service_namespace: "ecs".into(),
            resource_id: "service/default/web".into(),
            scalable_dimension: ECS_DESIRED_COUNT.into(),
            min_capacity: min,
            max_capacity: max,
            role_arn: String::new(),
            creation_time: 0.0,
            suspended_state: SuspendedState::default(),
            scalable_target_arn: String::new(),
            cooldowns: Cooldowns::default(),
        }
    }

    fn tracking(target_value: f64) -> ScalingPolicy {
        ScalingPolicy {
            policy_arn: "arn".into(),
            policy_name: "cpu70".into(),
            service_namespace: "ecs".into(),
            resource_id: "service/default/web".into(),
            scalable_dimension: ECS_DESIRED_COUNT.into(),
            policy_type: "TargetTrackingScaling".into(),
            step_scaling_policy_configuration: None,
            target_tracking_scaling_policy_configuration: Some(TargetTracking {
                target_value,
                predefined_metric_specification: None,
                customized_metric_specification: None,
                scale_out_cooldown: Some(60),
                scale_in_cooldown: Some(60),
                disable_scale_in: None,
            }),
            alarms: vec![],
            creation_time: 0.0,
        }
    }

    const MIN: i64 = 60_000;

    #[test]
    fn target_tracking_is_proportional_within_bounds() {
        let p = tracking(70.0);
        // 1 task at 100 % against 70 %: ceil(1 × 100 / 70) = 2.
        assert_eq!(decide(&p, &target(1, 4), true, 70.0, 100.0, 1, 0, MIN), Decision::Scale { to: 2, out: true });
        // 2 tasks at 200 % of target: 4, and never above max.
        assert_eq!(decide(&p, &target(1, 3), true, 70.0, 140.0, 2, 0, MIN), Decision::Scale { to: 3, out: true });
        // Scale in: 4 tasks at 10 % → ceil(4 × 10 / 70) = 1, never below min.
        assert_eq!(decide(&p, &target(2, 4), false, 63.0, 10.0, 4, 0, MIN), Decision::Scale { to: 2, out: false });
        assert_eq!(decide(&p, &target(1, 4), false, 63.0, 10.0, 1, 0, MIN), Decision::Hold);
    }

    #[test]
    fn cooldowns_scale_with_the_metrics_minute() {
        let p = tracking(70.0);
        let mut t = target(1, 10);
        t.cooldowns.last_scale_out = Some(1_000);
        t.cooldowns.last_scale_out_to = Some(2);
        // Within the 60 s scale-out cooldown: only a larger scale-out goes.
        assert_eq!(decide(&p, &t, true, 70.0, 100.0, 2, 30_000, MIN), Decision::Scale { to: 3, out: true });
        assert_eq!(decide(&p, &t, true, 70.0, 71.0, 1, 30_000, MIN), Decision::Hold);
        // Scale-in waits for the scale-out cooldown too.
        assert_eq!(decide(&p, &t, false, 63.0, 10.0, 2, 30_000, MIN), Decision::Hold);
        assert_eq!(decide(&p, &t, false, 63.0, 10.0, 2, 62_000, MIN), Decision::Scale { to: 1, out: false });
        // A 6 s metrics minute makes the 60 s cooldown 6 s.
        assert_eq!(decide(&p, &t, false, 63.0, 10.0, 2, 8_000, 6_000), Decision::Scale { to: 1, out: false });
        t.suspended_state.dynamic_scaling_in_suspended = true;
        assert_eq!(decide(&p, &t, false, 63.0, 10.0, 2, 62_000, MIN), Decision::Hold);
    }

    #[test]
    fn step_scaling_picks_the_step_of_the_breach() {
        let mut p = tracking(0.0);
        p.target_tracking_scaling_policy_configuration = None;
        let step = |lo: Option<f64>, hi: Option<f64>, n| StepAdjustment {
            metric_interval_lower_bound: lo,
            metric_interval_upper_bound: hi,
            scaling_adjustment: n,
        };
        p.step_scaling_policy_configuration = Some(StepScaling {
            adjustment_type: Some("ChangeInCapacity".into()),
            step_adjustments: vec![step(Some(0.0), Some(10.0), 1), step(Some(10.0), None, 3)],
            min_adjustment_magnitude: None,
            cooldown: Some(60),
            metric_aggregation_type: Some("Average".into()),
        });
        assert_eq!(decide(&p, &target(1, 10), true, 50.0, 55.0, 2, 0, MIN), Decision::Scale { to: 3, out: true });
        assert_eq!(decide(&p, &target(1, 10), true, 50.0, 75.0, 2, 0, MIN), Decision::Scale { to: 5, out: true });
        if let Some(s) = p.step_scaling_policy_configuration.as_mut() {
            s.adjustment_type = Some("PercentChangeInCapacity".into());
            s.step_adjustments = vec![step(Some(0.0), None, 50)];
        }
        assert_eq!(decide(&p, &target(1, 10), true, 50.0, 75.0, 4, 0, MIN), Decision::Scale { to: 6, out: true });
        assert_eq!(decide(&p, &target(1, 10), true, 50.0, 75.0, 1, 0, MIN), Decision::Scale { to: 2, out: true });
    }
}
