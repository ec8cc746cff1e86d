//! Lifecycle policies through the API (put, get, delete, preview) and the expiry step the
//! lifecycle controller runs. Parsing and evaluation are `wharf_registry::lifecycle`'s.

use super::{head, input, load_repository};
use crate::Ctx;
use crate::db::cas_put;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use wharf_core::ecr::{Evaluated, candidates, evaluated_key};
use wharf_registry::Repository;
use wharf_registry::lifecycle::{Policy, evaluate};
use wharf_store::Op;
use wharf_types::{Error, Resource, Result};

/// Where a repository's last lifecycle policy preview is kept.
pub fn preview_key(ctx: &Ctx, repo: &str) -> String {
    format!("/ecr/lifecycle-preview/{}/{}/{repo}", ctx.scope.account, ctx.scope.region)
}

pub(super) fn evaluated_key_of(ctx: &Ctx, repo: &str) -> String {
    evaluated_key(&ctx.scope.account, &ctx.scope.region, repo)
}

/// When the policy now in place was last evaluated by the controller, if it has been.
async fn last_evaluated(ctx: &Ctx, repo: &Repository) -> Result<Option<f64>> {
    let key = evaluated_key(&ctx.scope.account, &ctx.scope.region, &repo.repository_name);
    let at = ctx.db.get::<Evaluated>(&key).await?.map(|e| e.doc.last_evaluated_at);
    // An evaluation of an earlier policy says nothing about this one.
    Ok(at.filter(|at| repo.lifecycle_policy_updated_at.is_none_or(|set| *at >= set)))
}

fn parse(text: &str) -> Result<Policy> {
    Policy::parse(text).map_err(|e| Error::invalid("lifecyclePolicyText", e.to_string()))
}

fn policy_not_found(ctx: &Ctx, name: &str) -> Error {
    Error::not_found(
        Resource::LifecyclePolicy,
        format!(
            "Lifecycle policy does not exist for the repository with name '{name}' in the registry with id '{}'",
            ctx.scope.account
        ),
    )
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyRequest {
    registry_id: Option<String>,
    repository_name: String,
    lifecycle_policy_text: Option<String>,
}

pub async fn put(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: PolicyRequest = input(v)?;
    let text = req.lifecycle_policy_text.unwrap_or_default();
    parse(&text)?;
    let name = &req.repository_name;
    ctx.db
        .update(|| async {
            let mut repo = load_repository(ctx, req.registry_id.as_deref(), name).await?;
            repo.doc.lifecycle_policy = Some(text.clone());
            repo.doc.lifecycle_policy_updated_at = Some(wharf_types::now());
            Ok((Some(cas_put(&repo.key, repo.rev, &repo.doc)?), ()))
        })
        .await?;
    let mut out = head(ctx, name);
    out.insert("lifecyclePolicyText".into(), json!(text));
    Ok(Value::Object(out))
}

pub async fn get(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: PolicyRequest = input(v)?;
    let name = &req.repository_name;
    let repo = load_repository(ctx, req.registry_id.as_deref(), name).await?.doc;
    let evaluated = last_evaluated(ctx, &repo).await?;
    let text = repo.lifecycle_policy.ok_or_else(|| policy_not_found(ctx, name))?;
    let mut out = head(ctx, name);
    out.insert("lifecyclePolicyText".into(), json!(text));
    if let Some(at) = evaluated {
        out.insert("lastEvaluatedAt".into(), json!(at));
    }
    Ok(Value::Object(out))
}

pub async fn delete(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: PolicyRequest = input(v)?;
    let name = &req.repository_name;
    let (text, at) = ctx
        .db
        .update(|| async {
            let mut repo = load_repository(ctx, req.registry_id.as_deref(), name).await?;
            let at = last_evaluated(ctx, &repo.doc).await?;
            let text = repo.doc.lifecycle_policy.take().ok_or_else(|| policy_not_found(ctx, name))?;
            repo.doc.lifecycle_policy_updated_at = None;
            Ok((Some(cas_put(&repo.key, repo.rev, &repo.doc)?), (text, at)))
        })
        .await?;
    let mut out = head(ctx, name);
    out.insert("lifecyclePolicyText".into(), json!(text));
    if let Some(at) = at {
        out.insert("lastEvaluatedAt".into(), json!(at));
    }
    Ok(Value::Object(out))
}

/// A stored preview: the policy it evaluated and what it would expire.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Preview {
    lifecycle_policy_text: String,
    results: Vec<Value>,
}

pub async fn start_preview(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: PolicyRequest = input(v)?;
    let name = &req.repository_name;
    let repo = load_repository(ctx, req.registry_id.as_deref(), name).await?.doc;
    let text = match req.lifecycle_policy_text.or(repo.lifecycle_policy) {
        Some(t) => t,
        None => return Err(policy_not_found(ctx, name)),
    };
    let policy = parse(&text)?;
    let images = super::repositories::all_images(ctx, name).await?;
    let expiries = evaluate(&policy, &candidates(&images), wharf_types::now());
    let results = expiries
        .iter()
        .filter_map(|e| {
            let image = images.iter().find(|i| i.doc.image_digest == e.digest)?;
            let mut r = json!({
                "imageDigest": e.digest,
                "imagePushedAt": image.doc.image_pushed_at,
                "action": {"type": "EXPIRE"},
                "appliedRulePriority": e.rule_priority,
            });
            if !image.doc.image_tags.is_empty() {
                r["imageTags"] = json!(image.doc.image_tags);
            }
            Some(r)
        })
        .collect();
    // Evaluation is immediate, so the stored preview is complete; ECR's answer to Start is
    // always IN_PROGRESS and GetLifecyclePolicyPreview reports COMPLETE.
    let preview = Preview { lifecycle_policy_text: text.clone(), results };
    ctx.db
        .commit(wharf_store::Txn {
            compares: vec![],
            ops: vec![Op::put(super::preview_key(ctx, name), crate::db::encode(&preview)?)],
        })
        .await?;
    let mut out = head(ctx, name);
    out.insert("lifecyclePolicyText".into(), json!(text));
    out.insert("status".into(), json!("IN_PROGRESS"));
    Ok(Value::Object(out))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetPreviewRequest {
    registry_id: Option<String>,
    repository_name: String,
    image_ids: Option<Vec<Value>>,
    next_token: Option<String>,
    max_results: Option<i64>,
    filter: Option<Value>,
}

pub async fn get_preview(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: GetPreviewRequest = input(v)?;
    let name = &req.repository_name;
    load_repository(ctx, req.registry_id.as_deref(), name).await?;
    let Some(preview) = ctx.db.get::<Preview>(&super::preview_key(ctx, name)).await? else {
        return Err(Error::not_found(
            Resource::LifecyclePolicyPreview,
            format!(
                "There is no dry run for the repository with name '{name}' in the registry with id '{}'",
                ctx.scope.account
            ),
        ));
    };
    let preview = preview.doc;
    let total = preview.results.len();
    let tagged = match req.filter.as_ref().and_then(|f| f.get("tagStatus")).and_then(Value::as_str) {
        Some("TAGGED") => Some(true),
        Some("UNTAGGED") => Some(false),
        _ => None,
    };
    let wanted = |r: &Value| {
        let has_tags = r.get("imageTags").is_some();
        let by_tag = tagged.is_none_or(|t| t == has_tags);
        let by_id = req.image_ids.as_ref().is_none_or(|ids| {
            ids.iter().any(|id| {
                id.get("imageDigest").is_some_and(|d| Some(d) == r.get("imageDigest"))
                    || id.get("imageTag").and_then(Value::as_str).is_some_and(|t| {
                        r.get("imageTags").and_then(Value::as_array).is_some_and(|ts| ts.iter().any(|x| x == t))
                    })
            })
        });
        by_tag && by_id
    };
    let selected: Vec<&Value> = preview.results.iter().filter(|r| wanted(r)).collect();
    let limit = crate::paging::max_results(req.max_results, 100, 100)?;
    let start = match &req.next_token {
        None => 0,
        Some(t) => t
            .strip_prefix("preview-")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n <= selected.len())
            .ok_or_else(|| {
                Error::invalid("nextToken", "Invalid parameter at 'nextToken': The specified nextToken is not valid.")
            })?,
    };
    let page: Vec<&Value> = selected.iter().skip(start).take(limit).copied().collect();
    let mut out = head(ctx, name);
    out.insert("lifecyclePolicyText".into(), json!(preview.lifecycle_policy_text));
    out.insert("status".into(), json!("COMPLETE"));
    out.insert("previewResults".into(), json!(page));
    out.insert("summary".into(), json!({"expiringImageTotalCount": total}));
    if start + limit < selected.len() {
        out.insert("nextToken".into(), json!(format!("preview-{}", start + limit)));
    }
    Ok(Value::Object(out))
}
