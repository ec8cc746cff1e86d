//! Amazon ECR's API (JSON 1.1, `AmazonEC2ContainerRegistry_V20150921`) over the registry's
//! storage (`wharf-registry`): repositories, images, layer uploads, tag mutability,
//! lifecycle and repository policies, tags, and the authorization token `docker login` uses.
//!
//! Metadata documents (repositories, images, tags) are the registry's store documents
//! (`wharf_registry::keys`); content (manifests, layers, uploads) goes through the
//! `Registry`'s storage API. Errors use ECR's own codes (`RepositoryNotFoundException`, …),
//! never ECS's: ECR answers a bad parameter with `InvalidParameterException`.

mod images;
mod layers;
mod lifecycle;
mod repositories;
mod storage;

pub use lifecycle::preview_key;
pub use wharf_core::ecr::{candidates, delete_image_txn, expire};

use crate::db::Versioned;
use crate::{Ctx, input};
use serde_json::{Value, json};
use wharf_registry::{Repository, keys};
use wharf_types::{Error, Resource, Result};

operations! {
    "GetAuthorizationToken" => repositories::get_authorization_token,
    "CreateRepository" => repositories::create,
    "DescribeRepositories" => repositories::describe,
    "DeleteRepository" => repositories::delete,
    "PutImageTagMutability" => repositories::put_image_tag_mutability,
    "PutImageScanningConfiguration" => repositories::put_image_scanning_configuration,
    "SetRepositoryPolicy" => repositories::set_policy,
    "GetRepositoryPolicy" => repositories::get_policy,
    "DeleteRepositoryPolicy" => repositories::delete_policy,
    "TagResource" => repositories::tag_resource,
    "UntagResource" => repositories::untag_resource,
    "ListTagsForResource" => repositories::list_tags_for_resource,
    "ListImages" => images::list,
    "DescribeImages" => images::describe,
    "BatchGetImage" => images::batch_get,
    "BatchDeleteImage" => images::batch_delete,
    "PutImage" => images::put,
    "BatchCheckLayerAvailability" => layers::check_availability,
    "InitiateLayerUpload" => layers::initiate,
    "UploadLayerPart" => layers::upload_part,
    "CompleteLayerUpload" => layers::complete,
    "GetDownloadUrlForLayer" => layers::download_url,
    "PutLifecyclePolicy" => lifecycle::put,
    "GetLifecyclePolicy" => lifecycle::get,
    "DeleteLifecyclePolicy" => lifecycle::delete,
    "StartLifecyclePolicyPreview" => lifecycle::start_preview,
    "GetLifecyclePolicyPreview" => lifecycle::get_preview,
}

fn repository_not_found(ctx: &Ctx, name: &str) -> Error {
    Error::not_found(
        Resource::Repository,
        format!("The repository with name '{name}' does not exist in the registry with id '{}'", ctx.scope.account),
    )
}

/// Checks an optional `registryId`: Wharf holds one registry per account, the caller's.
fn check_registry_id(ctx: &Ctx, registry_id: Option<&str>) -> Result<()> {
    match registry_id {
        Some(id) if !(id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit())) => Err(Error::invalid(
            "registryId",
            format!(
                "Invalid parameter at 'registryId' failed to satisfy constraint: 'must satisfy regular expression '[0-9]{{12}}'' (got '{id}')"
            ),
        )),
        Some(id) if id != ctx.scope.account => Err(Error::not_found(
            Resource::Repository,
            format!("The registry with id '{id}' is not accessible with the caller's credentials"),
        )),
        _ => Ok(()),
    }
}

/// One path component of a repository name: `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    let alnum = |x: u8| x.is_ascii_lowercase() || x.is_ascii_digit();
    let (Some(&first), Some(&last)) = (b.first(), b.last()) else { return false };
    if !alnum(first) || !alnum(last) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if alnum(b[i]) {
            i += 1;
            continue;
        }
        // A separator run: `.`, `_`, `__` or one or more `-`, always followed by alnum.
        let start = i;
        while i < b.len() && !alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        let ok = matches!(sep, "." | "_" | "__") || (!sep.is_empty() && sep.bytes().all(|x| x == b'-'));
        if !ok {
            return false;
        }
    }
    true
}

/// ECR's repository name rule (lengths are the model's).
fn check_repository_name(name: &str) -> Result<()> {
    if name.split('/').all(valid_component) {
        return Ok(());
    }
    Err(Error::invalid(
        "repositoryName",
        format!(
            "Invalid parameter at 'repositoryName' failed to satisfy constraint: 'must satisfy regular expression '(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*'' (got '{name}')"
        ),
    ))
}

fn repository_arn(ctx: &Ctx, name: &str) -> String {
    format!("arn:aws:ecr:{}:{}:repository/{name}", ctx.scope.region, ctx.scope.account)
}

fn repo_key(ctx: &Ctx, name: &str) -> String {
    keys::repository(&ctx.scope.account, &ctx.scope.region, name)
}

/// The repository `name` (after checking `registryId` and the name), or ECR's not-found.
async fn load_repository(ctx: &Ctx, registry_id: Option<&str>, name: &str) -> Result<Versioned<Repository>> {
    check_registry_id(ctx, registry_id)?;
    check_repository_name(name)?;
    ctx.db.get::<Repository>(&repo_key(ctx, name)).await?.ok_or_else(|| repository_not_found(ctx, name))
}

/// `registryId` + `repositoryName`, the head of most ECR outputs.
fn head(ctx: &Ctx, name: &str) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("registryId".into(), json!(ctx.scope.account));
    m.insert("repositoryName".into(), json!(name));
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_follow_ecr() {
        for ok in ["ab", "my-app", "team/app", "a.b_c__d---e", "x/y/z0", "a1"] {
            assert!(check_repository_name(ok).is_ok(), "{ok}");
        }
        for bad in ["Ab", "-ab", "ab-", "a..b", "a___b", "a/", "/a", "a//b", "a b", "a_-b", "a:b"] {
            assert!(check_repository_name(bad).is_err(), "{bad}");
        }
    }
}
