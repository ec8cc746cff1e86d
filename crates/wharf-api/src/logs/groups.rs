//! Log groups: create, delete, describe, retention, deletion protection and tags.

use super::store::{Group, GroupListing, NewGroup};
use super::{check_group_name, group_arn, group_identifier, input, now_ms};
use crate::Ctx;
use crate::paging::{after_key, token_for, with_token};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use wharf_types::{Error, Result};

/// The retention periods CloudWatch Logs accepts, in days.
pub const RETENTION_DAYS: &[i64] =
    &[1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653];

const MAX_TAGS: usize = 50;
const TOKEN_PREFIX: &str = "logs/groups/";

fn check_tags(tags: &BTreeMap<String, String>) -> Result<()> {
    if let Some(k) = tags.keys().find(|k| k.starts_with("aws:")) {
        return Err(Error::invalid("tags", format!("Tag keys beginning with 'aws:' are reserved: {k}")));
    }
    Ok(())
}

fn check_tag_count(tags: &BTreeMap<String, String>) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(Error::invalid("tags", format!("A resource can have no more than {MAX_TAGS} tags.")));
    }
    Ok(())
}

/// A group as `DescribeLogGroups` shows it.
fn render(ctx: &Ctx, g: &Group) -> Value {
    let arn = group_arn(ctx, &g.name);
    let mut v = json!({
        "logGroupName": g.name,
        "creationTime": g.creation_time,
        "metricFilterCount": 0,
        "arn": format!("{arn}:*"),
        "storedBytes": g.stored_bytes,
        "logGroupClass": g.class,
        "logGroupArn": arn,
    });
    if let Some(obj) = v.as_object_mut() {
        if let Some(days) = g.retention_days {
            obj.insert("retentionInDays".into(), json!(days));
        }
        if let Some(k) = &g.kms_key_id {
            obj.insert("kmsKeyId".into(), json!(k));
        }
        if g.deletion_protection {
            obj.insert("deletionProtectionEnabled".into(), json!(true));
        }
    }
    v
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateRequest {
    log_group_name: String,
    kms_key_id: Option<String>,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    log_group_class: Option<String>,
    #[serde(default)]
    deletion_protection_enabled: bool,
}

pub async fn create(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: CreateRequest = input(v)?;
    check_group_name("logGroupName", &req.log_group_name)?;
    if req.log_group_name.starts_with("aws/") {
        return Err(Error::invalid(
            "logGroupName",
            "Invalid log group name. Log group names cannot start with 'aws/'.",
        ));
    }
    check_tags(&req.tags)?;
    let group = NewGroup {
        name: req.log_group_name,
        class: req.log_group_class.unwrap_or_else(|| "STANDARD".into()),
        kms_key_id: req.kms_key_id,
        deletion_protection: req.deletion_protection_enabled,
        tags: req.tags,
    };
    ctx.logs.create_group(&ctx.scope, group, now_ms()).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NameRequest {
    log_group_name: String,
}

pub async fn delete(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: NameRequest = input(v)?;
    check_group_name("logGroupName", &req.log_group_name)?;
    ctx.logs
        .delete_group(&ctx.scope, &req.log_group_name, |g| {
            if g.deletion_protection {
                return Err(Error::client(
                    "The log group cannot be deleted because deletion protection is enabled. Disable it with PutLogGroupDeletionProtection first.",
                ));
            }
            Ok(())
        })
        .await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeRequest {
    log_group_name_prefix: Option<String>,
    log_group_name_pattern: Option<String>,
    next_token: Option<String>,
    limit: Option<i64>,
    log_group_class: Option<String>,
    log_group_identifiers: Option<Vec<String>>,
}

pub async fn describe(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DescribeRequest = input(v)?;
    if req.log_group_name_prefix.is_some() && req.log_group_name_pattern.is_some() {
        return Err(Error::invalid(
            "logGroupNamePattern",
            "LogGroupNamePrefix and LogGroupNamePattern are mutually exclusive parameters.",
        ));
    }
    if req.log_group_identifiers.is_some()
        && (req.log_group_name_prefix.is_some() || req.log_group_name_pattern.is_some())
    {
        return Err(Error::invalid(
            "logGroupIdentifiers",
            "LogGroupIdentifiers cannot be combined with LogGroupNamePrefix or LogGroupNamePattern.",
        ));
    }
    if let Some(p) = &req.log_group_name_prefix {
        check_group_name("logGroupNamePrefix", p)?;
    }
    if let Some(p) = &req.log_group_name_pattern
        && !p.chars().all(super::is_group_name_char)
    {
        return Err(super::pattern_error("logGroupNamePattern", p, r"[\.\-_/#A-Za-z0-9]*"));
    }
    let names = match &req.log_group_identifiers {
        Some(ids) => {
            Some(ids.iter().map(|id| group_identifier(ctx, id, "logGroupIdentifiers")).collect::<Result<Vec<_>>>()?)
        }
        None => None,
    };
    let classes = req.log_group_class.map(|c| match c.as_str() {
        // Either of the cheaper classes lists both.
        "INFREQUENT_ACCESS" | "ESSENTIALS" => vec!["INFREQUENT_ACCESS".to_string(), "ESSENTIALS".to_string()],
        _ => vec![c],
    });
    let after = after_key(req.next_token.as_deref(), TOKEN_PREFIX)?.map(|k| k[TOKEN_PREFIX.len()..].to_string());
    let limit = req.limit.unwrap_or(50).clamp(1, 50) as usize;
    let brief = req.log_group_name_pattern.is_some();
    let query = GroupListing {
        prefix: req.log_group_name_prefix,
        pattern: req.log_group_name_pattern.filter(|p| !p.is_empty()),
        names,
        classes,
        after,
        limit,
    };
    let (groups, more) = ctx.logs.list_groups(&ctx.scope, query).await?;
    let next = more.then(|| groups.last().map(|g| token_for(&format!("{TOKEN_PREFIX}{}", g.name)))).flatten();
    let rendered: Vec<Value> = groups
        .iter()
        .map(|g| {
            let full = render(ctx, g);
            if !brief {
                return full;
            }
            // With a name pattern, AWS answers only the name, the creation time and the ARN.
            let keep = ["logGroupName", "creationTime", "arn"];
            Value::Object(
                full.as_object()
                    .map(|o| o.iter().filter(|(k, _)| keep.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())))
                    .into_iter()
                    .flatten()
                    .collect::<Map<_, _>>(),
            )
        })
        .collect();
    Ok(with_token(json!({ "logGroups": rendered }), next))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RetentionRequest {
    log_group_name: String,
    retention_in_days: i64,
}

pub async fn put_retention(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: RetentionRequest = input(v)?;
    check_group_name("logGroupName", &req.log_group_name)?;
    let days = req.retention_in_days;
    if !RETENTION_DAYS.contains(&days) {
        let allowed = RETENTION_DAYS.iter().map(i64::to_string).collect::<Vec<_>>().join(", ");
        return Err(Error::invalid(
            "retentionInDays",
            format!(
                "1 validation error detected: Value '{days}' at 'retentionInDays' failed to satisfy constraint: Member must satisfy enum value set: [{allowed}]"
            ),
        ));
    }
    ctx.logs
        .update_group(&ctx.scope, &req.log_group_name, move |g| {
            g.retention_days = Some(days);
            Ok(())
        })
        .await?;
    Ok(json!({}))
}

pub async fn delete_retention(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: NameRequest = input(v)?;
    check_group_name("logGroupName", &req.log_group_name)?;
    ctx.logs
        .update_group(&ctx.scope, &req.log_group_name, |g| {
            g.retention_days = None;
            Ok(())
        })
        .await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProtectionRequest {
    log_group_identifier: String,
    deletion_protection_enabled: bool,
}

pub async fn put_deletion_protection(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: ProtectionRequest = input(v)?;
    let name = group_identifier(ctx, &req.log_group_identifier, "logGroupIdentifier")?;
    let enabled = req.deletion_protection_enabled;
    ctx.logs
        .update_group(&ctx.scope, &name, move |g| {
            g.deletion_protection = enabled;
            Ok(())
        })
        .await?;
    Ok(json!({}))
}

/// The log group a tagging ARN names (with or without the trailing `:*`).
fn tagged_group(ctx: &Ctx, arn: &str) -> Result<String> {
    if !arn.starts_with("arn:") {
        return Err(Error::invalid("resourceArn", format!("The ARN '{arn}' in resourceArn is not valid.")));
    }
    group_identifier(ctx, arn, "resourceArn")
}

async fn change_tags(ctx: &Ctx, group: &str, add: BTreeMap<String, String>, remove: Vec<String>) -> Result<Value> {
    check_tags(&add)?;
    ctx.logs
        .update_group(&ctx.scope, group, move |g| {
            g.tags.extend(add);
            for k in &remove {
                g.tags.remove(k);
            }
            check_tag_count(&g.tags)
        })
        .await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TagResourceRequest {
    resource_arn: String,
    #[serde(default)]
    tags: BTreeMap<String, String>,
    #[serde(default)]
    tag_keys: Vec<String>,
}

pub async fn tag_resource(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: TagResourceRequest = input(v)?;
    change_tags(ctx, &tagged_group(ctx, &req.resource_arn)?, req.tags, vec![]).await
}

pub async fn untag_resource(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: TagResourceRequest = input(v)?;
    change_tags(ctx, &tagged_group(ctx, &req.resource_arn)?, BTreeMap::new(), req.tag_keys).await
}

pub async fn list_tags_for_resource(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: TagResourceRequest = input(v)?;
    let group = ctx.logs.group(&ctx.scope, &tagged_group(ctx, &req.resource_arn)?).await?;
    Ok(json!({ "tags": group.tags }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TagLogGroupRequest {
    log_group_name: String,
    #[serde(default)]
    tags: Value,
}

pub async fn tag_log_group(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: TagLogGroupRequest = input(v)?;
    check_group_name("logGroupName", &req.log_group_name)?;
    let tags: BTreeMap<String, String> = input(req.tags)?;
    change_tags(ctx, &req.log_group_name, tags, vec![]).await
}

pub async fn untag_log_group(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: TagLogGroupRequest = input(v)?;
    check_group_name("logGroupName", &req.log_group_name)?;
    let keys: Vec<String> = input(req.tags)?;
    change_tags(ctx, &req.log_group_name, BTreeMap::new(), keys).await
}

pub async fn list_tags_log_group(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: NameRequest = input(v)?;
    check_group_name("logGroupName", &req.log_group_name)?;
    let group = ctx.logs.group(&ctx.scope, &req.log_group_name).await?;
    Ok(json!({ "tags": group.tags }))
}
