//! A service's deployment configuration as ECS checks it: the ROLLING bounds, and for the
//! strategies that shift traffic (BLUE_GREEN, LINEAR, CANARY) their settings, lifecycle
//! hooks and each load balancer's `advancedConfiguration` (two target groups and the listener
//! rules the deployment re-weights). Every refusal is an `InvalidParameterException` naming
//! the field, before anything is written.

use crate::Ctx;
use serde_json::Value;
use wharf_core::traffic::{self, RuleDoc};
use wharf_types::ecs::{DeploymentCircuitBreaker, DeploymentConfiguration, DeploymentStrategy, LifecycleStage};
use wharf_types::{Error, Result};

const MAX_MINUTES: i64 = 1440;

/// Fills ECS's defaults into a deployment configuration and checks what can be checked
/// without the service's load balancers.
pub(super) fn deployment_configuration(
    given: Option<DeploymentConfiguration>,
    daemon: bool,
) -> Result<DeploymentConfiguration> {
    let mut dc = given.unwrap_or_default();
    let max = *dc.maximum_percent.get_or_insert(if daemon { 100 } else { 200 });
    let min = *dc.minimum_healthy_percent.get_or_insert(if daemon { 0 } else { 100 });
    let breaker =
        dc.deployment_circuit_breaker.get_or_insert(DeploymentCircuitBreaker { enable: false, rollback: false }).enable;
    let strategy = *dc.strategy.get_or_insert(DeploymentStrategy::Rolling);
    if let Some(a) = &dc.alarms
        && a.enable
        && a.alarm_names.is_empty()
    {
        return Err(Error::invalid(
            "deploymentConfiguration.alarms.alarmNames",
            "At least one alarm name is required when deployment alarms are enabled.",
        ));
    }
    if !(0..=100).contains(&min) {
        return Err(Error::invalid(
            "deploymentConfiguration.minimumHealthyPercent",
            format!("minimumHealthyPercent must be between 0 and 100 (got {min})."),
        ));
    }
    if !daemon && !(100..=2000).contains(&max) {
        return Err(Error::invalid(
            "deploymentConfiguration.maximumPercent",
            format!("maximumPercent must be between 100 and 2000 for the REPLICA scheduling strategy (got {max})."),
        ));
    }
    if daemon && max != 100 {
        return Err(Error::invalid(
            "deploymentConfiguration.maximumPercent",
            "The DAEMON scheduling strategy requires maximumPercent 100.",
        ));
    }
    check_strategy_settings(&dc, strategy, breaker, daemon)?;
    Ok(dc)
}

fn only_with(field: &str, strategies: &str) -> Error {
    Error::invalid(
        format!("deploymentConfiguration.{field}"),
        format!("{field} is only valid with the {strategies} deployment strategy."),
    )
}

fn check_minutes(field: &str, v: Option<i64>) -> Result<()> {
    match v {
        Some(m) if !(0..=MAX_MINUTES).contains(&m) => Err(Error::invalid(
            format!("deploymentConfiguration.{field}"),
            format!("{field} must be between 0 and {MAX_MINUTES} (got {m})."),
        )),
        _ => Ok(()),
    }
}

/// A percentage in `lo..=100` with at most one decimal.
fn check_percent(field: &str, v: Option<f64>, lo: f64) -> Result<()> {
    let Some(p) = v else { return Ok(()) };
    let tenths = p * 10.0;
    if !(lo..=100.0).contains(&p) || (tenths - tenths.round()).abs() > 1e-6 {
        return Err(Error::invalid(
            format!("deploymentConfiguration.{field}"),
            format!("{field} must be between {lo:.1} and 100.0 in steps of 0.1 (got {p})."),
        ));
    }
    Ok(())
}

fn check_strategy_settings(
    dc: &DeploymentConfiguration,
    s: DeploymentStrategy,
    breaker: bool,
    daemon: bool,
) -> Result<()> {
    use DeploymentStrategy::*;
    if s != Rolling {
        if daemon {
            return Err(Error::invalid(
                "deploymentConfiguration.strategy",
                format!(
                    "The {s} deployment strategy is not supported for services that use the DAEMON scheduling strategy."
                ),
            ));
        }
        if breaker {
            return Err(Error::invalid(
                "deploymentConfiguration.deploymentCircuitBreaker",
                "deploymentCircuitBreaker is only supported with the ROLLING deployment strategy.",
            ));
        }
    }
    if dc.bake_time_in_minutes.is_some() && s == Rolling {
        return Err(only_with("bakeTimeInMinutes", "BLUE_GREEN, LINEAR or CANARY"));
    }
    check_minutes("bakeTimeInMinutes", dc.bake_time_in_minutes)?;
    if let Some(l) = &dc.linear_configuration {
        if s != Linear {
            return Err(only_with("linearConfiguration", "LINEAR"));
        }
        check_percent("linearConfiguration.stepPercent", l.step_percent, 3.0)?;
        check_minutes("linearConfiguration.stepBakeTimeInMinutes", l.step_bake_time_in_minutes)?;
    }
    if let Some(c) = &dc.canary_configuration {
        if s != Canary {
            return Err(only_with("canaryConfiguration", "CANARY"));
        }
        check_percent("canaryConfiguration.canaryPercent", c.canary_percent, 0.1)?;
        check_minutes("canaryConfiguration.canaryBakeTimeInMinutes", c.canary_bake_time_in_minutes)?;
    }
    if !dc.hooks().is_empty() && s == Rolling {
        return Err(only_with("lifecycleHooks", "BLUE_GREEN, LINEAR or CANARY"));
    }
    for hook in dc.hooks() {
        match hook.target_type.as_deref() {
            Some("PAUSE") => {}
            Some("AWS_LAMBDA") => {
                return Err(Error::Unsupported(
                    "deploymentConfiguration.lifecycleHooks.targetType AWS_LAMBDA: Wharf runs no Lambda functions; use a PAUSE hook and ContinueServiceDeployment from your own check instead.".into(),
                ));
            }
            _ => {
                return Err(Error::invalid(
                    "deploymentConfiguration.lifecycleHooks.targetType",
                    "A lifecycle hook needs a targetType of PAUSE or AWS_LAMBDA.",
                ));
            }
        }
        if hook.lifecycle_stages.is_empty() {
            return Err(Error::invalid(
                "deploymentConfiguration.lifecycleHooks.lifecycleStages",
                "A lifecycle hook needs at least one entry in lifecycleStages.",
            ));
        }
        for stage in &hook.lifecycle_stages {
            if stage == LifecycleStage::TestTrafficShift.as_str()
                || stage == LifecycleStage::ProductionTrafficShift.as_str()
            {
                return Err(Error::invalid(
                    "deploymentConfiguration.lifecycleHooks.lifecycleStages",
                    format!(
                        "lifecycleStages: a PAUSE lifecycle hook cannot run at the {stage} stage (traffic shifts are not paused)."
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Checks the load balancers of a service deploying with `dc`: with a strategy that shifts
/// traffic each entry names its alternate target group and a forward-only production rule
/// (and maybe a test rule) that forwards to no other group; with ROLLING none does.
pub(super) async fn check_load_balancers(ctx: &Ctx, dc: &DeploymentConfiguration, lbs: &[Value]) -> Result<()> {
    let shifting = dc.shifts_traffic();
    for lb in lbs {
        let advanced = traffic::advanced(lb);
        if !shifting {
            if advanced.is_some() {
                return Err(Error::invalid(
                    "loadBalancers.advancedConfiguration",
                    "advancedConfiguration is only valid with the BLUE_GREEN, LINEAR or CANARY deployment strategy.",
                ));
            }
            continue;
        }
        let Some(advanced) = advanced else {
            return Err(Error::invalid(
                "loadBalancers.advancedConfiguration",
                format!(
                    "The {} deployment strategy requires advancedConfiguration (alternateTargetGroupArn, productionListenerRule, roleArn) for each load balancer.",
                    dc.strategy()
                ),
            ));
        };
        let field = |name: &str| advanced.get(name).and_then(Value::as_str);
        let primary = lb.get("targetGroupArn").and_then(Value::as_str).unwrap_or_default();
        let Some(alternate) = field("alternateTargetGroupArn") else {
            return Err(missing("alternateTargetGroupArn"));
        };
        let Some(production) = field("productionListenerRule") else {
            return Err(missing("productionListenerRule"));
        };
        if field("roleArn").is_none() {
            return Err(missing("roleArn"));
        }
        if alternate == primary {
            return Err(Error::invalid(
                "loadBalancers.advancedConfiguration.alternateTargetGroupArn",
                "alternateTargetGroupArn must differ from targetGroupArn.",
            ));
        }
        let (Some(a), Some(b)) = (
            wharf_core::targets::target_group(ctx, primary).await?,
            wharf_core::targets::target_group(ctx, alternate).await?,
        ) else {
            return Err(Error::invalid(
                "loadBalancers.advancedConfiguration.alternateTargetGroupArn",
                format!("alternateTargetGroupArn: the target group {alternate} does not exist."),
            ));
        };
        if a.target_type != b.target_type {
            return Err(Error::invalid(
                "loadBalancers.advancedConfiguration.alternateTargetGroupArn",
                format!(
                    "alternateTargetGroupArn: its target type ({}) differs from the target group's ({}).",
                    b.target_type, a.target_type
                ),
            ));
        }
        check_rule(ctx, "productionListenerRule", production, primary, alternate).await?;
        if let Some(test) = field("testListenerRule") {
            if test == production {
                return Err(Error::invalid(
                    "loadBalancers.advancedConfiguration.testListenerRule",
                    "testListenerRule must differ from productionListenerRule.",
                ));
            }
            check_rule(ctx, "testListenerRule", test, primary, alternate).await?;
        }
    }
    Ok(())
}

/// The load balancers of a service whose production traffic a shift left on known groups
/// (`live_target_groups`) must keep serving it. Still shifting: each entry's pair holds its
/// live group (the next green starts in the other). Back to ROLLING: new deployments
/// register in each entry's `targetGroupArn`, so that must be the live group; then the record
/// of which group is live is no longer needed.
pub(super) fn check_live_groups(svc: &mut wharf_types::ecs::Service) -> Result<()> {
    if svc.live_target_groups.is_empty() {
        return Ok(());
    }
    if svc.load_balancers.len() != svc.live_target_groups.len() {
        return Err(Error::invalid(
            "loadBalancers",
            "The load balancers of a service that shifted traffic keep their number: production traffic is on the groups of the last deployment.",
        ));
    }
    if svc.deployment_configuration.shifts_traffic() {
        for (lb, live) in svc.load_balancers.iter().zip(&svc.live_target_groups) {
            if traffic::target_group_pair(lb).is_none_or(|(a, b)| a != live && b != live) {
                return Err(Error::invalid(
                    "loadBalancers.targetGroupArn",
                    format!(
                        "Production traffic is on {live} since the last deployment: it must stay the targetGroupArn or alternateTargetGroupArn of its entry."
                    ),
                ));
            }
        }
        return Ok(());
    }
    for (lb, live) in svc.load_balancers.iter().zip(&svc.live_target_groups) {
        let group = lb.get("targetGroupArn").and_then(Value::as_str).unwrap_or_default();
        if group != live {
            return Err(Error::invalid(
                "loadBalancers.targetGroupArn",
                format!(
                    "Production traffic is on {live} since the last deployment; a ROLLING service must register its tasks there: give it as targetGroupArn."
                ),
            ));
        }
    }
    svc.live_target_groups.clear();
    Ok(())
}

fn missing(name: &str) -> Error {
    Error::invalid(
        format!("loadBalancers.advancedConfiguration.{name}"),
        format!("advancedConfiguration.{name} must be specified for a deployment strategy that shifts traffic."),
    )
}

/// A rule the deployment re-weights: it exists, only forwards, and only to the pair.
async fn check_rule(ctx: &Ctx, name: &str, arn: &str, primary: &str, alternate: &str) -> Result<()> {
    let field = format!("loadBalancers.advancedConfiguration.{name}");
    let Some(rule): Option<RuleDoc> = traffic::load_rule(ctx, arn).await? else {
        return Err(Error::invalid(field, format!("{name}: the listener rule {arn} does not exist.")));
    };
    if !rule.forwards_only() {
        return Err(Error::invalid(
            field,
            format!(
                "{name}: the listener rule {arn} must have a single forward action (no redirect or fixed-response)."
            ),
        ));
    }
    if let Some((other, _)) = rule.forwards().into_iter().find(|(tg, _)| tg != primary && tg != alternate) {
        return Err(Error::invalid(
            field,
            format!(
                "{name}: the listener rule {arn} forwards to {other}, which is neither the target group nor the alternate target group."
            ),
        ));
    }
    Ok(())
}
