//! Repositories: create, describe, delete, tag mutability, scanning configuration,
//! repository policies, resource tags, and the registry authorization token.

use super::{
    check_registry_id, check_repository_name, head, input, load_repository, repo_key, repository_arn,
    repository_not_found,
};
use crate::Ctx;
use crate::db::cas_put;
use crate::paging::{max_results, scan, with_token};
use serde::Deserialize;
use serde_json::{Value, json};
use wharf_registry::{Image, Repository, keys};
use wharf_store::{Op, Txn};
use wharf_types::{Error, InUse, Invalid, Limit, Resource, Result};

const MAX_TAGS: usize = 50;

/// `GetAuthorizationToken`: one token for the caller's registry, valid 12 hours.
pub async fn get_authorization_token(ctx: &Ctx, v: Value) -> Result<Value> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Req {
        registry_ids: Option<Vec<String>>,
    }
    let req: Req = input(v)?;
    // The token speaks for the caller's account only (the one registry Wharf holds for it).
    if let Some(id) = req.registry_ids.iter().flatten().find(|id| **id != ctx.scope.account) {
        return Err(Error::invalid(
            "registryIds",
            format!(
                "Invalid parameter at 'registryIds' failed to satisfy constraint: 'registry '{id}' is not the caller's registry ({})'",
                ctx.scope.account
            ),
        ));
    }
    let (token, expires_at) = ctx.registry.mint_token(&ctx.scope.account, &ctx.scope.region);
    Ok(json!({"authorizationData": [{
        "authorizationToken": token,
        "expiresAt": expires_at,
        "proxyEndpoint": ctx.registry().endpoint(),
    }]}))
}

/// ECR tags are `{Key, Value}`.
fn check_tags(tags: &[Value], existing: usize) -> Result<()> {
    for t in tags {
        let key = t.get("Key").and_then(Value::as_str).unwrap_or_default();
        if key.is_empty() || key.len() > 128 {
            return Err(Error::invalid_input(Invalid::Tag, "Tag keys must be 1 to 128 characters long."));
        }
        if key.to_ascii_lowercase().starts_with("aws:") {
            return Err(Error::invalid_input(
                Invalid::Tag,
                format!("Tag key '{key}' uses the reserved prefix 'aws:'."),
            ));
        }
        if t.get("Value").and_then(Value::as_str).is_some_and(|v| v.len() > 256) {
            return Err(Error::invalid_input(Invalid::Tag, "Tag values must be at most 256 characters long."));
        }
    }
    if existing > MAX_TAGS {
        return Err(Error::limit_exceeded(Limit::Tags, format!("A resource can have at most {MAX_TAGS} tags.")));
    }
    Ok(())
}

/// Adds `new` to `tags`, replacing values of keys already present.
fn merge_tags(tags: &mut Vec<Value>, new: &[Value]) {
    for t in new {
        let key = t.get("Key").cloned();
        let value = json!({"Key": key, "Value": t.get("Value").and_then(Value::as_str).unwrap_or_default()});
        match tags.iter_mut().find(|x| x.get("Key") == t.get("Key")) {
            Some(slot) => *slot = value,
            None => tags.push(value),
        }
    }
}

/// Checks the tag mutability mode against its exclusion filters.
fn check_mutability(mode: &str, filters: &[Value]) -> Result<()> {
    let with_exclusion = mode.ends_with("_WITH_EXCLUSION");
    if with_exclusion && filters.is_empty() {
        return Err(Error::invalid(
            "imageTagMutabilityExclusionFilters",
            format!(
                "Invalid parameter at 'imageTagMutabilityExclusionFilters' failed to satisfy constraint: 'must be specified when imageTagMutability is {mode}'"
            ),
        ));
    }
    if !with_exclusion && !filters.is_empty() {
        return Err(Error::invalid(
            "imageTagMutabilityExclusionFilters",
            format!(
                "Invalid parameter at 'imageTagMutabilityExclusionFilters' failed to satisfy constraint: 'can only be specified when imageTagMutability is MUTABLE_WITH_EXCLUSION or IMMUTABLE_WITH_EXCLUSION, not {mode}'"
            ),
        ));
    }
    for f in filters {
        let filter = f.get("filter").and_then(Value::as_str).unwrap_or_default();
        let ok = !filter.is_empty()
            && filter.len() <= 128
            && filter.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'*' | b'-'));
        if !ok {
            return Err(Error::invalid(
                "imageTagMutabilityExclusionFilters.filter",
                format!(
                    "Invalid parameter at 'imageTagMutabilityExclusionFilters.filter' failed to satisfy constraint: 'must satisfy regular expression '^[0-9a-zA-Z._*-]{{1,128}}$'' (got '{filter}')"
                ),
            ));
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CreateRequest {
    registry_id: Option<String>,
    repository_name: String,
    #[serde(default)]
    tags: Vec<Value>,
    image_tag_mutability: Option<String>,
    #[serde(default)]
    image_tag_mutability_exclusion_filters: Vec<Value>,
    image_scanning_configuration: Option<Value>,
    encryption_configuration: Option<Value>,
}

pub async fn create(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: CreateRequest = input(v)?;
    check_registry_id(ctx, req.registry_id.as_deref())?;
    check_repository_name(&req.repository_name)?;
    let mode = req.image_tag_mutability.unwrap_or_else(|| "MUTABLE".into());
    check_mutability(&mode, &req.image_tag_mutability_exclusion_filters)?;
    let mut tags = Vec::new();
    merge_tags(&mut tags, &req.tags);
    check_tags(&req.tags, tags.len())?;
    let encryption = match req.encryption_configuration {
        None => json!({"encryptionType": "AES256"}),
        Some(e) => {
            let kind = e.get("encryptionType").and_then(Value::as_str).unwrap_or_default();
            if kind == "AES256" && e.get("kmsKey").is_some() {
                return Err(Error::invalid(
                    "encryptionConfiguration",
                    "Invalid parameter at 'encryptionConfiguration' failed to satisfy constraint: 'kmsKey can only be specified when encryptionType is KMS or KMS_DSSE'",
                ));
            }
            e
        }
    };
    let name = req.repository_name;
    let repo = Repository {
        repository_arn: repository_arn(ctx, &name),
        registry_id: ctx.scope.account.clone(),
        repository_name: name.clone(),
        repository_uri: ctx.registry.repository_uri(&name),
        created_at: wharf_types::now(),
        image_tag_mutability: mode,
        image_tag_mutability_exclusion_filters: req.image_tag_mutability_exclusion_filters,
        image_scanning_configuration: req.image_scanning_configuration.unwrap_or_else(|| json!({"scanOnPush": false})),
        encryption_configuration: encryption,
        tags,
        ..Default::default()
    };
    if !ctx.db.commit(cas_put(&repo_key(ctx, &name), 0, &repo)?).await? {
        return Err(Error::already_exists(
            Resource::Repository,
            format!("The repository with name '{name}' already exists in the registry with id '{}'", ctx.scope.account),
        ));
    }
    Ok(json!({ "repository": repo }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeRequest {
    registry_id: Option<String>,
    repository_names: Option<Vec<String>>,
    next_token: Option<String>,
    max_results: Option<i64>,
}

pub async fn describe(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DescribeRequest = input(v)?;
    check_registry_id(ctx, req.registry_id.as_deref())?;
    if let Some(names) = req.repository_names {
        if req.next_token.is_some() || req.max_results.is_some() {
            return Err(Error::invalid(
                "maxResults",
                "Invalid parameter at 'maxResults' failed to satisfy constraint: 'maxResults and nextToken cannot be used with repositoryNames'",
            ));
        }
        let mut out = Vec::with_capacity(names.len());
        for name in &names {
            out.push(load_repository(ctx, None, name).await?.doc);
        }
        return Ok(json!({ "repositories": out }));
    }
    let limit = max_results(req.max_results, 100, 1000)?;
    let prefix = keys::repositories(&ctx.scope.account, &ctx.scope.region);
    let (repos, next) =
        scan::<Repository, Repository>(&ctx.db, &prefix, req.next_token.as_deref(), limit, false, |r| Some(r.clone()))
            .await?;
    Ok(with_token(json!({ "repositories": repos }), next))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DeleteRequest {
    registry_id: Option<String>,
    repository_name: String,
    #[serde(default)]
    force: bool,
}

pub async fn delete(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DeleteRequest = input(v)?;
    let name = &req.repository_name;
    load_repository(ctx, req.registry_id.as_deref(), name).await?;
    let repo = super::storage::delete_repository(ctx, name, req.force).await.map_err(|e| match e {
        Error::InUse { reason: InUse::RepositoryContainsImages, .. } => Error::in_use(
            InUse::RepositoryContainsImages,
            format!(
                "The repository with name '{name}' in registry with id '{}' cannot be deleted because it still contains images",
                ctx.scope.account
            ),
        ),
        Error::NotFound { resource: Resource::Repository, .. } => repository_not_found(ctx, name),
        other => other,
    })?;
    // The last preview and evaluation are the repository's too (best effort: stale ones are
    // only informational).
    let preview = Txn {
        compares: vec![],
        ops: vec![Op::delete(super::preview_key(ctx, name)), Op::delete(super::lifecycle::evaluated_key_of(ctx, name))],
    };
    ctx.db.commit(preview).await?;
    Ok(json!({ "repository": repo }))
}

/// Read-modify-write of one repository document.
async fn modify<R>(
    ctx: &Ctx,
    registry_id: Option<&str>,
    name: &str,
    change: impl Fn(&mut Repository) -> Result<R>,
) -> Result<(Repository, R)> {
    let change = &change;
    ctx.db
        .update(|| async move {
            let mut repo = load_repository(ctx, registry_id, name).await?;
            let out = change(&mut repo.doc)?;
            Ok((Some(cas_put(&repo.key, repo.rev, &repo.doc)?), (repo.doc, out)))
        })
        .await
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MutabilityRequest {
    registry_id: Option<String>,
    repository_name: String,
    image_tag_mutability: String,
    #[serde(default)]
    image_tag_mutability_exclusion_filters: Vec<Value>,
}

pub async fn put_image_tag_mutability(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: MutabilityRequest = input(v)?;
    check_mutability(&req.image_tag_mutability, &req.image_tag_mutability_exclusion_filters)?;
    let (repo, ()) = modify(ctx, req.registry_id.as_deref(), &req.repository_name, |r| {
        r.image_tag_mutability = req.image_tag_mutability.clone();
        r.image_tag_mutability_exclusion_filters = req.image_tag_mutability_exclusion_filters.clone();
        Ok(())
    })
    .await?;
    let mut out = head(ctx, &repo.repository_name);
    out.insert("imageTagMutability".into(), json!(repo.image_tag_mutability));
    if !repo.image_tag_mutability_exclusion_filters.is_empty() {
        out.insert("imageTagMutabilityExclusionFilters".into(), json!(repo.image_tag_mutability_exclusion_filters));
    }
    Ok(Value::Object(out))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ScanningRequest {
    registry_id: Option<String>,
    repository_name: String,
    image_scanning_configuration: Value,
}

pub async fn put_image_scanning_configuration(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: ScanningRequest = input(v)?;
    let (repo, ()) = modify(ctx, req.registry_id.as_deref(), &req.repository_name, |r| {
        r.image_scanning_configuration = req.image_scanning_configuration.clone();
        Ok(())
    })
    .await?;
    let mut out = head(ctx, &repo.repository_name);
    out.insert("imageScanningConfiguration".into(), repo.image_scanning_configuration);
    Ok(Value::Object(out))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PolicyRequest {
    registry_id: Option<String>,
    repository_name: String,
    policy_text: Option<String>,
}

/// A repository policy must be an IAM policy document: a JSON object with a `Statement`.
fn check_repository_policy(text: &str) -> Result<()> {
    let bad = |why: &str| {
        Error::invalid(
            "policyText",
            format!(
                "Invalid parameter at 'PolicyText' failed to satisfy constraint: 'Invalid repository policy provided: {why}'"
            ),
        )
    };
    let doc: Value = serde_json::from_str(text).map_err(|e| bad(&format!("not valid JSON ({e})")))?;
    let Some(obj) = doc.as_object() else { return Err(bad("the policy must be a JSON object")) };
    match obj.get("Statement") {
        Some(Value::Array(s)) if !s.is_empty() => {
            for st in s {
                let effect = st.get("Effect").and_then(Value::as_str);
                if !matches!(effect, Some("Allow" | "Deny")) {
                    return Err(bad("each statement needs an Effect of Allow or Deny"));
                }
                if st.get("Action").is_none() && st.get("NotAction").is_none() {
                    return Err(bad("each statement needs an Action"));
                }
            }
            Ok(())
        }
        Some(Value::Object(_)) => Ok(()),
        _ => Err(bad("the policy must contain a Statement")),
    }
}

pub async fn set_policy(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: PolicyRequest = input(v)?;
    let text = req.policy_text.unwrap_or_default();
    check_repository_policy(&text)?;
    let (repo, ()) = modify(ctx, req.registry_id.as_deref(), &req.repository_name, |r| {
        r.policy = Some(text.clone());
        Ok(())
    })
    .await?;
    let mut out = head(ctx, &repo.repository_name);
    out.insert("policyText".into(), json!(text));
    Ok(Value::Object(out))
}

fn policy_not_found(ctx: &Ctx, name: &str) -> Error {
    Error::not_found(
        Resource::RepositoryPolicy,
        format!(
            "Repository policy does not exist for the repository with name '{name}' in the registry with id '{}'",
            ctx.scope.account
        ),
    )
}

pub async fn get_policy(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: PolicyRequest = input(v)?;
    let repo = load_repository(ctx, req.registry_id.as_deref(), &req.repository_name).await?.doc;
    let text = repo.policy.ok_or_else(|| policy_not_found(ctx, &req.repository_name))?;
    let mut out = head(ctx, &req.repository_name);
    out.insert("policyText".into(), json!(text));
    Ok(Value::Object(out))
}

pub async fn delete_policy(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: PolicyRequest = input(v)?;
    let (_, text) = modify(ctx, req.registry_id.as_deref(), &req.repository_name, |r| {
        r.policy.take().ok_or_else(|| policy_not_found(ctx, &req.repository_name))
    })
    .await?;
    let mut out = head(ctx, &req.repository_name);
    out.insert("policyText".into(), json!(text));
    Ok(Value::Object(out))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TagRequest {
    resource_arn: String,
    #[serde(default)]
    tags: Vec<Value>,
    #[serde(default)]
    tag_keys: Vec<String>,
}

/// The repository name an ECR ARN of the caller's scope names.
fn repository_of_arn(ctx: &Ctx, arn: &str) -> Result<String> {
    let prefix = format!("arn:aws:ecr:{}:{}:repository/", ctx.scope.region, ctx.scope.account);
    match arn.strip_prefix(&prefix) {
        Some(name) if !name.is_empty() => {
            check_repository_name(name)?;
            Ok(name.to_string())
        }
        _ => Err(Error::invalid(
            "resourceArn",
            format!("Invalid parameter at 'resourceArn' failed to satisfy constraint: 'Invalid ARN' (got '{arn}')"),
        )),
    }
}

pub async fn tag_resource(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: TagRequest = input(v)?;
    let name = repository_of_arn(ctx, &req.resource_arn)?;
    modify(ctx, None, &name, |r| {
        let mut tags = r.tags.clone();
        merge_tags(&mut tags, &req.tags);
        check_tags(&req.tags, tags.len())?;
        r.tags = tags;
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub async fn untag_resource(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: TagRequest = input(v)?;
    let name = repository_of_arn(ctx, &req.resource_arn)?;
    if let Some(k) = req.tag_keys.iter().find(|k| k.to_ascii_lowercase().starts_with("aws:")) {
        return Err(Error::invalid_input(Invalid::Tag, format!("Tag key '{k}' uses the reserved prefix 'aws:'.")));
    }
    modify(ctx, None, &name, |r| {
        r.tags.retain(|t| !t.get("Key").and_then(Value::as_str).is_some_and(|k| req.tag_keys.iter().any(|x| x == k)));
        Ok(())
    })
    .await?;
    Ok(json!({}))
}

pub async fn list_tags_for_resource(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: TagRequest = input(v)?;
    let name = repository_of_arn(ctx, &req.resource_arn)?;
    let repo =
        ctx.db.get::<Repository>(&repo_key(ctx, &name)).await?.ok_or_else(|| repository_not_found(ctx, &name))?;
    Ok(json!({ "tags": repo.doc.tags }))
}

/// Images of a repository, for handlers that need all of them.
pub(super) async fn all_images(ctx: &Ctx, name: &str) -> Result<Vec<crate::db::Versioned<Image>>> {
    ctx.db.list::<Image>(&keys::images(&ctx.scope.account, &ctx.scope.region, name)).await
}
