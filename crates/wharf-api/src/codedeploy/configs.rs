//! Deployment configurations: how fast production traffic moves. The predefined ECS ones are
//! built in; custom ones (`CreateDeploymentConfig` with a `trafficRoutingConfig`) are stored.

use super::check_name;
use crate::{Ctx, input};
use serde::Deserialize;
use serde_json::{Value, json};
use wharf_core::codedeploy::CdKeys;
use wharf_store::{Compare, Op, Txn};
use wharf_types::{Error, InUse, Resource, Result};

/// The predefined ECS configurations: name and traffic routing.
fn predefined() -> Vec<(&'static str, Value)> {
    let linear = |minutes: i64| json!({"type": "TimeBasedLinear", "timeBasedLinear": {"linearPercentage": 10, "linearInterval": minutes}});
    let canary = |minutes: i64| json!({"type": "TimeBasedCanary", "timeBasedCanary": {"canaryPercentage": 10, "canaryInterval": minutes}});
    vec![
        ("CodeDeployDefault.ECSAllAtOnce", json!({"type": "AllAtOnce"})),
        ("CodeDeployDefault.ECSLinear10PercentEvery1Minutes", linear(1)),
        ("CodeDeployDefault.ECSLinear10PercentEvery3Minutes", linear(3)),
        ("CodeDeployDefault.ECSCanary10Percent5Minutes", canary(5)),
        ("CodeDeployDefault.ECSCanary10Percent15Minutes", canary(15)),
    ]
}

/// The default of ECS deployment groups.
pub const DEFAULT: &str = "CodeDeployDefault.ECSAllAtOnce";

/// A configuration's id: a UUID, the same for a name every time (predefined ones have no
/// stored document to keep one in).
fn config_id(name: &str) -> String {
    use sha2::Digest;
    let h = hex::encode(sha2::Sha256::digest(name.as_bytes()));
    format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32])
}

fn info(name: &str, routing: &Value, created: f64) -> Value {
    json!({
        "deploymentConfigId": config_id(name),
        "deploymentConfigName": name,
        "createTime": created,
        "computePlatform": "ECS",
        "trafficRoutingConfig": routing,
    })
}

/// The configuration `name` (`deploymentConfigInfo`), predefined or custom.
pub async fn find(ctx: &Ctx, name: &str) -> Result<Value> {
    check_name("deploymentConfigName", name)?;
    if let Some((n, routing)) = predefined().into_iter().find(|(n, _)| *n == name) {
        return Ok(info(n, &routing, 0.0));
    }
    if name.starts_with("CodeDeployDefault.") {
        return Err(Error::invalid(
            "deploymentConfigName",
            format!("{name} is not a deployment configuration of the ECS compute platform."),
        ));
    }
    let doc = ctx.db.get::<Value>(&CdKeys::new(ctx).config(name)).await?;
    doc.map(|d| d.doc).ok_or_else(|| {
        Error::not_found(Resource::DeploymentConfig, format!("No deployment configuration found for name: {name}"))
    })
}

/// Green's share of production after each step, and the minutes until the next step.
pub fn steps(config: &Value) -> Vec<(f64, f64)> {
    let routing = &config["trafficRoutingConfig"];
    let num = |v: &Value| v.as_f64().unwrap_or(0.0);
    match routing["type"].as_str() {
        Some("TimeBasedCanary") => {
            let c = &routing["timeBasedCanary"];
            vec![(num(&c["canaryPercentage"]), num(&c["canaryInterval"])), (100.0, 0.0)]
        }
        Some("TimeBasedLinear") => {
            let c = &routing["timeBasedLinear"];
            let (step, interval) = (num(&c["linearPercentage"]).max(1.0), num(&c["linearInterval"]));
            let mut out = vec![];
            let mut w = 0.0;
            while w < 100.0 - 1e-9 {
                w = f64::min(w + step, 100.0);
                out.push((w, interval));
            }
            out
        }
        _ => vec![(100.0, 0.0)],
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateRequest {
    deployment_config_name: String,
    minimum_healthy_hosts: Option<Value>,
    traffic_routing_config: Option<Value>,
    compute_platform: Option<String>,
    zonal_config: Option<Value>,
}

/// A `trafficRoutingConfig` of an ECS configuration, checked as CodeDeploy does.
fn check_routing(routing: &Value) -> Result<()> {
    let bad = |m: &str| Err(Error::invalid("trafficRoutingConfig", m.to_string()));
    let int = |v: &Value| v.as_i64();
    match routing["type"].as_str() {
        Some("AllAtOnce") => Ok(()),
        Some("TimeBasedCanary") => {
            let c = &routing["timeBasedCanary"];
            match (int(&c["canaryPercentage"]), int(&c["canaryInterval"])) {
                (Some(p), Some(i)) if (1..=99).contains(&p) && (1..=2880).contains(&i) => Ok(()),
                _ => bad(
                    "timeBasedCanary needs canaryPercentage between 1 and 99 and canaryInterval between 1 and 2880 minutes.",
                ),
            }
        }
        Some("TimeBasedLinear") => {
            let c = &routing["timeBasedLinear"];
            match (int(&c["linearPercentage"]), int(&c["linearInterval"])) {
                (Some(p), Some(i)) if (1..=99).contains(&p) && (1..=2880).contains(&i) => Ok(()),
                _ => bad(
                    "timeBasedLinear needs linearPercentage between 1 and 99 and linearInterval between 1 and 2880 minutes.",
                ),
            }
        }
        _ => bad("trafficRoutingConfig.type must be AllAtOnce, TimeBasedCanary or TimeBasedLinear."),
    }
}

pub async fn create(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: CreateRequest = input(v)?;
    let name = req.deployment_config_name;
    check_name("deploymentConfigName", &name)?;
    if req.compute_platform.as_deref() != Some("ECS") {
        return Err(Error::invalid(
            "computePlatform",
            "Wharf serves CodeDeploy for ECS only: computePlatform must be ECS.",
        ));
    }
    if req.minimum_healthy_hosts.is_some() || req.zonal_config.is_some() {
        return Err(Error::invalid(
            "minimumHealthyHosts",
            "minimumHealthyHosts and zonalConfig apply to the EC2/On-premises compute platform, not ECS.",
        ));
    }
    let Some(routing) = req.traffic_routing_config else {
        return Err(Error::invalid(
            "trafficRoutingConfig",
            "An ECS deployment configuration needs a trafficRoutingConfig.",
        ));
    };
    check_routing(&routing)?;
    if name.starts_with("CodeDeployDefault.") {
        return Err(Error::invalid(
            "deploymentConfigName",
            "The CodeDeployDefault. prefix is reserved for predefined configurations.",
        ));
    }
    let key = CdKeys::new(ctx).config(&name);
    let doc = info(&name, &routing, wharf_types::now());
    let txn = Txn {
        compares: vec![Compare::ModRevision(key.clone(), 0)],
        ops: vec![Op::put(&key, crate::db::encode(&doc)?)],
    };
    if !ctx.db.commit(txn).await? {
        return Err(Error::already_exists(
            Resource::DeploymentConfig,
            format!("A deployment configuration named {name} already exists."),
        ));
    }
    Ok(json!({ "deploymentConfigId": doc["deploymentConfigId"] }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NameRequest {
    deployment_config_name: String,
}

pub async fn get(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: NameRequest = input(v)?;
    Ok(json!({ "deploymentConfigInfo": find(ctx, &req.deployment_config_name).await? }))
}

pub async fn list(ctx: &Ctx, v: Value) -> Result<Value> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct ListRequest {
        next_token: Option<String>,
    }
    let req: ListRequest = input(v)?;
    if req.next_token.is_some() {
        return Err(Error::invalid("nextToken", "The next token is not valid."));
    }
    let mut names: Vec<String> = predefined().into_iter().map(|(n, _)| n.to_string()).collect();
    for c in ctx.db.list::<Value>(&CdKeys::new(ctx).configs()).await? {
        names.push(super::text(&c.doc, "deploymentConfigName").to_string());
    }
    Ok(json!({ "deploymentConfigsList": names }))
}

pub async fn delete(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: NameRequest = input(v)?;
    let name = req.deployment_config_name;
    if predefined().iter().any(|(n, _)| *n == name) || name.starts_with("CodeDeployDefault.") {
        return Err(Error::invalid("deploymentConfigName", "A predefined deployment configuration cannot be deleted."));
    }
    let keys = CdKeys::new(ctx);
    let Some(current) = ctx.db.get::<Value>(&keys.config(&name)).await? else { return Ok(json!({})) };
    for app in ctx.db.list::<Value>(&keys.applications()).await? {
        let app_name = super::text(&app.doc, "applicationName");
        for g in ctx.db.list::<Value>(&keys.groups(app_name)).await? {
            if super::text(&g.doc, "deploymentConfigName") == name {
                return Err(Error::in_use(
                    InUse::DeploymentConfig,
                    format!(
                        "The deployment configuration {name} is used by deployment group {}.",
                        super::text(&g.doc, "deploymentGroupName")
                    ),
                ));
            }
        }
    }
    let txn = Txn {
        compares: vec![Compare::ModRevision(current.key.clone(), current.rev)],
        ops: vec![Op::Delete { key: current.key }],
    };
    ctx.db.commit(txn).await?;
    Ok(json!({}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing(name: &str) -> Value {
        let (_, r) = predefined().into_iter().find(|(n, _)| *n == name).unwrap();
        info(name, &r, 0.0)
    }

    #[test]
    fn predefined_configs_become_the_engines_steps() {
        assert_eq!(steps(&routing("CodeDeployDefault.ECSAllAtOnce")), vec![(100.0, 0.0)]);
        assert_eq!(steps(&routing("CodeDeployDefault.ECSCanary10Percent15Minutes")), vec![(10.0, 15.0), (100.0, 0.0)]);
        let linear = steps(&routing("CodeDeployDefault.ECSLinear10PercentEvery3Minutes"));
        assert_eq!(linear.len(), 10);
        assert_eq!(linear[0], (10.0, 3.0));
        assert_eq!(linear[9].0, 100.0);
        // 30 % steps end at 100, not 120.
        let custom = info(
            "c",
            &json!({"type": "TimeBasedLinear", "timeBasedLinear": {"linearPercentage": 30, "linearInterval": 2}}),
            0.0,
        );
        assert_eq!(steps(&custom).iter().map(|s| s.0).collect::<Vec<_>>(), vec![30.0, 60.0, 90.0, 100.0]);
    }

    #[test]
    fn routing_configs_are_checked() {
        assert!(check_routing(&json!({"type": "AllAtOnce"})).is_ok());
        assert!(
            check_routing(
                &json!({"type": "TimeBasedCanary", "timeBasedCanary": {"canaryPercentage": 10, "canaryInterval": 5}})
            )
            .is_ok()
        );
        for bad in [
            json!({"type": "TimeBasedCanary", "timeBasedCanary": {"canaryPercentage": 100, "canaryInterval": 5}}),
            json!({"type": "TimeBasedLinear", "timeBasedLinear": {"linearPercentage": 10, "linearInterval": 0}}),
            json!({"type": "TimeBasedLinear"}),
            json!({"type": "Sometimes"}),
        ] {
            assert!(matches!(check_routing(&bad), Err(Error::InvalidParameter { .. })), "{bad}");
        }
        assert_eq!(config_id("x"), config_id("x"));
        assert_ne!(config_id("x"), config_id("y"));
    }
}
