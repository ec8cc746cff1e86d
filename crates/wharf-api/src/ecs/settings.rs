//! Account settings: per-principal and account-default opt-ins (`containerInsights`, ARN
//! formats, ...). Stored, returned and validated; later features read them.

use super::{Keys, input, output};
use crate::Ctx;
use crate::db::cas_put;
use serde::Deserialize;
use serde_json::{Value, json};
use wharf_store::{Compare, Op, Txn};
use wharf_types::ecs::Setting;
use wharf_types::{Error, Result};

/// Setting names ECS knows, with their allowed values and the default AWS reports.
const SETTINGS: &[(&str, &[&str], &str)] = &[
    ("serviceLongArnFormat", &["enabled", "disabled"], "enabled"),
    ("taskLongArnFormat", &["enabled", "disabled"], "enabled"),
    ("containerInstanceLongArnFormat", &["enabled", "disabled"], "enabled"),
    ("awsvpcTrunking", &["enabled", "disabled"], "disabled"),
    ("containerInsights", &["enabled", "disabled", "enhanced"], "disabled"),
    ("dualStackIPv6", &["enabled", "disabled"], "disabled"),
    ("fargateFIPSMode", &["enabled", "disabled"], "disabled"),
    ("tagResourceAuthorization", &["on", "off"], "on"),
    ("fargateTaskRetirementWaitPeriod", &["0", "7", "14"], "7"),
    ("guardDutyActivate", &["on", "off"], "off"),
    ("defaultLogDriverMode", &["blocking", "non-blocking"], "non-blocking"),
];

fn check(name: &str, value: &str) -> Result<()> {
    match SETTINGS.iter().find(|(n, _, _)| *n == name) {
        Some((_, allowed, _)) if allowed.contains(&value) => Ok(()),
        Some((_, allowed, _)) => Err(Error::invalid(
            "value",
            format!("Invalid value '{value}' for setting {name}: use one of {}.", allowed.join(", ")),
        )),
        None => Err(Error::invalid("name", format!("Unknown account setting name '{name}'."))),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutRequest {
    name: String,
    value: Option<String>,
    principal_arn: Option<String>,
}

/// The principal a setting applies to; the account root by default. `default` is the
/// account-wide default's slot.
fn principal(ctx: &Ctx, given: Option<&str>) -> Result<String> {
    match given {
        None => Ok(ctx.principal_arn()),
        Some(p) if p.starts_with(&format!("arn:aws:iam::{}:", ctx.scope.account)) => Ok(p.to_string()),
        Some(p) => {
            Err(Error::invalid("principalArn", format!("The principalArn '{p}' is not a principal of this account.")))
        }
    }
}

async fn write(ctx: &Ctx, slot: &str, principal_arn: String, name: &str, value: &str, kind: &str) -> Result<Value> {
    check(name, value)?;
    let key = Keys::new(ctx).setting(slot, name);
    let setting = Setting { name: name.into(), value: value.into(), principal_arn, kind: kind.into() };
    ctx.db
        .update(|| async {
            let rev = ctx.db.get::<Setting>(&key).await?.map_or(0, |s| s.rev);
            Ok((Some(cas_put(&key, rev, &setting)?), ()))
        })
        .await?;
    output(json!({ "setting": setting }))
}

pub async fn put(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: PutRequest = input(v)?;
    let p = principal(ctx, req.principal_arn.as_deref())?;
    write(ctx, &p, p.clone(), &req.name, req.value.as_deref().unwrap_or_default(), "user").await
}

pub async fn put_default(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: PutRequest = input(v)?;
    write(ctx, "default", ctx.principal_arn(), &req.name, req.value.as_deref().unwrap_or_default(), "user").await
}

pub async fn delete(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: PutRequest = input(v)?;
    let p = principal(ctx, req.principal_arn.as_deref())?;
    if !SETTINGS.iter().any(|(n, _, _)| *n == req.name) {
        return Err(Error::invalid("name", format!("Unknown account setting name '{}'.", req.name)));
    }
    let key = Keys::new(ctx).setting(&p, &req.name);
    let deleted = ctx
        .db
        .update(|| async {
            let Some(s) = ctx.db.get::<Setting>(&key).await? else {
                return Err(Error::invalid("name", format!("The account setting {} is not set for {p}.", req.name)));
            };
            let txn = Txn { compares: vec![Compare::ModRevision(key.clone(), s.rev)], ops: vec![Op::delete(&key)] };
            Ok((Some(txn), s.doc))
        })
        .await?;
    output(json!({ "setting": deleted }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListRequest {
    name: Option<String>,
    value: Option<String>,
    principal_arn: Option<String>,
    #[serde(default)]
    effective_settings: bool,
    next_token: Option<String>,
    max_results: Option<i64>,
}

pub async fn list(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: ListRequest = input(v)?;
    if req.value.is_some() && req.name.is_none() {
        return Err(Error::invalid("value", "value requires name."));
    }
    let limit = crate::paging::max_results(req.max_results, 10, 10)?;
    let p = principal(ctx, req.principal_arn.as_deref())?;
    let keys = Keys::new(ctx);
    let explicit = ctx.db.list::<Setting>(&keys.settings()).await?;
    let pick =
        |slot: &str, name: &str| explicit.iter().find(|s| s.key == keys.setting(slot, name)).map(|s| s.doc.clone());
    let mut settings: Vec<Setting> = SETTINGS
        .iter()
        .filter(|(n, _, _)| req.name.as_deref().is_none_or(|x| x == *n))
        .filter_map(|(name, _, default)| {
            let own = pick(&p, name);
            if !req.effective_settings {
                return own;
            }
            own.or_else(|| pick("default", name)).or_else(|| {
                Some(Setting {
                    name: name.to_string(),
                    value: default.to_string(),
                    principal_arn: ctx.principal_arn(),
                    kind: "aws_managed".into(),
                })
            })
        })
        .filter(|s| req.value.as_deref().is_none_or(|v| s.value == v))
        .collect();
    let start = match &req.next_token {
        Some(t) => {
            t.parse::<usize>().map_err(|_| Error::invalid("nextToken", "The specified nextToken is not valid."))?
        }
        None => 0,
    };
    let total = settings.len();
    settings = settings.into_iter().skip(start).take(limit).collect();
    let mut out = json!({ "settings": settings });
    if start + limit < total {
        out["nextToken"] = json!((start + limit).to_string());
    }
    Ok(out)
}
