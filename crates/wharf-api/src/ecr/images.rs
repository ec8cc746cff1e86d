//! Images: list, describe, get manifests, delete, and put a manifest under a tag.
//!
//! Images and tags are the registry's store documents; an image's `imageTags` lists exactly
//! the tags whose `TagRef` names it, and every write here keeps that in one transaction.

use super::{head, input, load_repository, storage};
use crate::Ctx;
use crate::db::Versioned;
use crate::paging::{after_key, max_results, scan, token_for, with_token};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use wharf_registry::{Image, Repository, TagRef, keys};

use wharf_types::{Error, Invalid, Resource, Result};

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct ImageId {
    image_digest: Option<String>,
    image_tag: Option<String>,
}

impl ImageId {
    fn to_json(&self) -> Value {
        let mut m = serde_json::Map::new();
        if let Some(d) = &self.image_digest {
            m.insert("imageDigest".into(), json!(d));
        }
        if let Some(t) = &self.image_tag {
            m.insert("imageTag".into(), json!(t));
        }
        Value::Object(m)
    }
}

/// Why an image id did not resolve: an `ImageFailureCode` and its reason.
struct Failure(&'static str, String);

fn failure_json(id: &ImageId, f: &Failure) -> Value {
    json!({"imageId": id.to_json(), "failureCode": f.0, "failureReason": f.1})
}

/// `sha256:<64 hex>` / `sha512:<128 hex>` (the digests Wharf stores).
pub(super) fn digest_is_valid(d: &str) -> bool {
    let hex_len = |h: &str, n: usize| h.len() == n && h.bytes().all(|b| b.is_ascii_hexdigit());
    match d.split_once(':') {
        Some(("sha256", h)) => hex_len(h, 64),
        Some(("sha512", h)) => hex_len(h, 128),
        _ => false,
    }
}

/// Finds the image an `ImageIdentifier` names in repository `repo`.
async fn resolve(ctx: &Ctx, repo: &str, id: &ImageId) -> Result<std::result::Result<Versioned<Image>, Failure>> {
    let (account, region) = (&ctx.scope.account, &ctx.scope.region);
    let not_found = || Failure("ImageNotFound", "Requested image not found".into());
    let digest = match (&id.image_digest, &id.image_tag) {
        (None, None) => {
            let why = "Invalid request parameters: both tag and digest cannot be null";
            return Ok(Err(Failure("MissingDigestAndTag", why.into())));
        }
        (Some(d), _) if !digest_is_valid(d) => {
            let why = format!(
                "Invalid request parameters: image digest should satisfy the regex '[a-zA-Z0-9-_+.]+:[a-fA-F0-9]+' (got '{d}')"
            );
            return Ok(Err(Failure("InvalidImageDigest", why)));
        }
        (digest, Some(tag)) => match ctx.db.get::<TagRef>(&keys::tag(account, region, repo, tag)).await? {
            None => return Ok(Err(not_found())),
            Some(t) => {
                if digest.as_ref().is_some_and(|d| *d != t.doc.image_digest) {
                    let why = format!("Invalid request parameters: given tag '{tag}' does not match the given digest");
                    return Ok(Err(Failure("ImageTagDoesNotMatchDigest", why)));
                }
                t.doc.image_digest
            }
        },
        (Some(d), None) => d.clone(),
    };
    Ok(ctx.db.get::<Image>(&keys::image(account, region, repo, &digest)).await?.ok_or_else(not_found))
}

/// How DescribeImages shows an image.
fn detail(ctx: &Ctx, image: &Image) -> Value {
    let mut v = serde_json::to_value(image).unwrap_or_else(|_| json!({}));
    if let Some(obj) = v.as_object_mut() {
        obj.insert("registryId".into(), json!(ctx.scope.account));
        obj.remove("references");
        obj.remove("subject");
        if image.image_tags.is_empty() {
            obj.remove("imageTags");
        }
    }
    v
}

fn has_tags(i: &Image) -> bool {
    !i.image_tags.is_empty()
}

fn tag_filter(filter: &Option<Value>) -> Result<Option<bool>> {
    match filter.as_ref().and_then(|f| f.get("tagStatus")).and_then(Value::as_str) {
        None | Some("ANY") => Ok(None),
        Some("TAGGED") => Ok(Some(true)),
        Some("UNTAGGED") => Ok(Some(false)),
        Some(other) => {
            Err(Error::invalid("filter.tagStatus", format!("Invalid parameter at 'filter.tagStatus': '{other}'")))
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListRequest {
    registry_id: Option<String>,
    repository_name: String,
    next_token: Option<String>,
    max_results: Option<i64>,
    filter: Option<Value>,
    image_ids: Option<Vec<ImageId>>,
}

/// The `imageIds` ListImages shows for one image: one per tag, or the digest alone.
fn ids_of(i: &Image) -> Vec<Value> {
    if i.image_tags.is_empty() {
        return vec![json!({"imageDigest": i.image_digest})];
    }
    i.image_tags.iter().map(|t| json!({"imageDigest": i.image_digest, "imageTag": t})).collect()
}

/// ListImages pages by image ids (an image with three tags is three of `maxResults`), so a
/// token names an image key and how many of its ids were already returned: `<key>\n<n>`.
pub async fn list(ctx: &Ctx, v: Value) -> Result<Value> {
    const CHUNK: usize = 256;
    let req: ListRequest = input(v)?;
    load_repository(ctx, req.registry_id.as_deref(), &req.repository_name).await?;
    let tagged = tag_filter(&req.filter)?;
    let limit = max_results(req.max_results, 100, 1000)?;
    let prefix = keys::images(&ctx.scope.account, &ctx.scope.region, &req.repository_name);
    let bad_token =
        || Error::invalid("nextToken", "Invalid parameter at 'nextToken': The specified nextToken is not valid.");
    let resume = match after_key(req.next_token.as_deref(), &prefix).map_err(|_| bad_token())? {
        None => None,
        Some(t) => {
            let (key, n) = t.split_once('\n').ok_or_else(bad_token)?;
            Some((key.to_string(), n.parse::<usize>().map_err(|_| bad_token())?))
        }
    };
    let wanted = |i: &Image| tagged.is_none_or(|t| t == has_tags(i));
    let mut ids: Vec<Value> = Vec::new();
    // Adds `image`'s ids from the `skip`th; the token to resume with if the page fills first.
    let mut take = |key: &str, image: &Image, skip: usize| -> Option<String> {
        for (n, id) in ids_of(image).into_iter().enumerate().skip(skip) {
            if ids.len() == limit {
                return Some(token_for(&format!("{key}\n{n}")));
            }
            ids.push(id);
        }
        None
    };
    let mut after = None;
    if let Some((key, skip)) = resume {
        if let Some(image) = ctx.db.get::<Image>(&key).await?
            && wanted(&image.doc)
            && let Some(next) = take(&key, &image.doc, skip)
        {
            return Ok(json!({ "imageIds": ids, "nextToken": next }));
        }
        after = Some(key);
    }
    loop {
        let (page, more) = ctx.db.range::<Image>(&prefix, after.clone(), CHUNK, false).await?;
        for image in &page {
            if wanted(&image.doc)
                && let Some(next) = take(&image.key, &image.doc, 0)
            {
                return Ok(json!({ "imageIds": ids, "nextToken": next }));
            }
            after = Some(image.key.clone());
        }
        if !more {
            return Ok(json!({ "imageIds": ids }));
        }
    }
}

pub async fn describe(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: ListRequest = input(v)?;
    let name = &req.repository_name;
    load_repository(ctx, req.registry_id.as_deref(), name).await?;
    let tagged = tag_filter(&req.filter)?;
    if let Some(ids) = &req.image_ids {
        if req.next_token.is_some() || req.max_results.is_some() {
            return Err(Error::invalid(
                "maxResults",
                "Invalid parameter at 'maxResults' failed to satisfy constraint: 'maxResults and nextToken cannot be used with imageIds'",
            ));
        }
        let mut out: Vec<Value> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for id in ids {
            match resolve(ctx, name, id).await? {
                Ok(image) => {
                    if seen.insert(image.doc.image_digest.clone()) {
                        out.push(detail(ctx, &image.doc));
                    }
                }
                Err(Failure("ImageNotFound", _)) => {
                    return Err(Error::not_found(
                        Resource::Image,
                        format!(
                            "The image with imageId {} does not exist within the repository with name '{name}' in the registry with id '{}'",
                            id.to_json(),
                            ctx.scope.account
                        ),
                    ));
                }
                Err(Failure(_, why)) => return Err(Error::invalid("imageIds", why)),
            }
        }
        return Ok(json!({ "imageDetails": out }));
    }
    let limit = max_results(req.max_results, 100, 1000)?;
    let prefix = keys::images(&ctx.scope.account, &ctx.scope.region, name);
    let (details, next) = scan::<Image, Value>(&ctx.db, &prefix, req.next_token.as_deref(), limit, false, |i| {
        tagged.is_none_or(|t| t == has_tags(i)).then(|| detail(ctx, i))
    })
    .await?;
    Ok(with_token(json!({ "imageDetails": details }), next))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct BatchRequest {
    registry_id: Option<String>,
    repository_name: String,
    image_ids: Vec<ImageId>,
    accepted_media_types: Option<Vec<String>>,
}

pub async fn batch_get(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: BatchRequest = input(v)?;
    let name = &req.repository_name;
    load_repository(ctx, req.registry_id.as_deref(), name).await?;
    let (mut images, mut failures) = (Vec::new(), Vec::new());
    for id in &req.image_ids {
        let image = match resolve(ctx, name, id).await? {
            Ok(i) => i.doc,
            Err(f) => {
                failures.push(failure_json(id, &f));
                continue;
            }
        };
        if let Some(accepted) = &req.accepted_media_types
            && !accepted.contains(&image.image_manifest_media_type)
        {
            let why = format!(
                "Requested image's manifest media type {} is not in the accepted media types",
                image.image_manifest_media_type
            );
            failures.push(failure_json(id, &Failure("UnsupportedImageType", why)));
            continue;
        }
        let Some(manifest) = storage::manifest(ctx, name, &image.image_digest).await? else {
            failures.push(failure_json(id, &Failure("ImageNotFound", "Requested image not found".into())));
            continue;
        };
        let manifest = String::from_utf8(manifest.to_vec())
            .map_err(|_| Error::Internal(format!("manifest {} is not UTF-8", image.image_digest)))?;
        images.push(json!({
            "registryId": ctx.scope.account,
            "repositoryName": name,
            "imageId": {"imageDigest": image.image_digest, "imageTag": id.image_tag},
            "imageManifest": manifest,
            "imageManifestMediaType": image.image_manifest_media_type,
        }));
    }
    Ok(json!({ "images": images, "failures": failures }))
}

/// Is `digest` referenced by another image (an index) of the repository?
async fn referenced_by_index(ctx: &Ctx, repo: &str, digest: &str) -> Result<bool> {
    let all = super::repositories::all_images(ctx, repo).await?;
    Ok(all.iter().any(|i| i.doc.image_digest != digest && i.doc.references.iter().any(|r| r == digest)))
}

pub async fn batch_delete(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: BatchRequest = input(v)?;
    let name = &req.repository_name;
    load_repository(ctx, req.registry_id.as_deref(), name).await?;
    let (mut deleted, mut failures) = (Vec::new(), Vec::new());
    for id in &req.image_ids {
        let image = match resolve(ctx, name, id).await? {
            Ok(i) => i.doc,
            Err(f) => {
                failures.push(failure_json(id, &f));
                continue;
            }
        };
        let digest = image.image_digest.clone();
        let last_tag = image.image_tags.len() <= 1;
        if (id.image_tag.is_none() || last_tag) && referenced_by_index(ctx, name, &digest).await? {
            let why = "Requested image is referenced by an image index".to_string();
            failures.push(failure_json(id, &Failure("ImageReferencedByManifestList", why)));
            continue;
        }
        let outcome = match &id.image_tag {
            // By tag: that tag goes; the image too when it was its last.
            Some(tag) => {
                storage::untag(ctx, name, tag).await.map(|_| vec![json!({"imageDigest": digest, "imageTag": tag})])
            }
            None => storage::delete_image(ctx, name, &digest).await.map(|gone| {
                if gone.image_tags.is_empty() {
                    vec![json!({"imageDigest": digest})]
                } else {
                    gone.image_tags.iter().map(|t| json!({"imageDigest": digest, "imageTag": t})).collect()
                }
            }),
        };
        match outcome {
            Ok(ids) => deleted.extend(ids),
            // Deleted by someone else between the lookup and the delete.
            Err(Error::NotFound { resource: Resource::Image, .. }) => {
                failures.push(failure_json(id, &Failure("ImageNotFound", "Requested image not found".into())));
            }
            Err(e) => return Err(e),
        }
    }
    Ok(json!({ "imageIds": deleted, "failures": failures }))
}

/// The digest of manifest `bytes`, in the algorithm of `expected` (sha256 by default).
fn digest_of(bytes: &[u8], expected: Option<&str>) -> String {
    use sha2::Digest;
    match expected.and_then(|e| e.split_once(':')).map(|(alg, _)| alg) {
        Some("sha512") => format!("sha512:{}", hex::encode(sha2::Sha512::digest(bytes))),
        _ => format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes))),
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutRequest {
    registry_id: Option<String>,
    repository_name: String,
    image_manifest: String,
    image_manifest_media_type: Option<String>,
    image_tag: Option<String>,
    image_digest: Option<String>,
}

/// The media type a manifest declares (`mediaType`), if any.
fn declared_media_type(manifest: &str) -> Result<Option<String>> {
    let doc: Value = serde_json::from_str(manifest).map_err(|e| {
        Error::invalid(
            "imageManifest",
            format!("Invalid parameter at 'imageManifest' failed to satisfy constraint: 'Invalid JSON syntax: {e}'"),
        )
    })?;
    if !doc.is_object() {
        return Err(Error::invalid(
            "imageManifest",
            "Invalid parameter at 'imageManifest' failed to satisfy constraint: 'must be a JSON object'",
        ));
    }
    Ok(doc.get("mediaType").and_then(Value::as_str).map(str::to_string))
}

pub async fn put(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: PutRequest = input(v)?;
    let name = &req.repository_name;
    let repo: Repository = load_repository(ctx, req.registry_id.as_deref(), name).await?.doc;
    let declared = declared_media_type(&req.image_manifest)?;
    let media_type = match (&req.image_manifest_media_type, declared) {
        (Some(given), Some(declared)) if *given != declared => {
            return Err(Error::invalid(
                "imageManifestMediaType",
                format!(
                    "Invalid parameter at 'imageManifestMediaType' failed to satisfy constraint: 'the manifest's mediaType is {declared}, not {given}'"
                ),
            ));
        }
        (Some(given), _) => given.clone(),
        (None, Some(declared)) => declared,
        (None, None) => {
            return Err(Error::invalid(
                "imageManifestMediaType",
                "Invalid parameter at 'imageManifestMediaType' failed to satisfy constraint: 'the manifest declares no mediaType; give imageManifestMediaType'",
            ));
        }
    };
    let bytes = req.image_manifest.as_bytes();
    let digest = digest_of(bytes, req.image_digest.as_deref());
    if let Some(expected) = &req.image_digest
        && *expected != digest
    {
        return Err(Error::invalid_input(
            Invalid::ImageDigest,
            format!(
                "Invalid parameter at 'imageDigest' failed to satisfy constraint: 'the manifest's digest is {digest}, not {expected}'"
            ),
        ));
    }
    let (account, region) = (&ctx.scope.account, &ctx.scope.region);
    // ECR refuses a PutImage that changes nothing.
    if let Some(existing) = ctx.db.get::<Image>(&keys::image(account, region, name, &digest)).await?
        && req.image_tag.as_ref().is_none_or(|t| existing.doc.image_tags.contains(t))
    {
        let tag = req.image_tag.as_deref().map(|t| format!(" and tag '{t}'")).unwrap_or_default();
        return Err(Error::already_exists(
            Resource::Image,
            format!(
                "Image with digest '{digest}'{tag} already exists in the repository with name '{name}' in the registry with id '{account}'"
            ),
        ));
    }
    if let Some(tag) = &req.image_tag
        && !repo.tag_is_mutable(tag)
        && let Some(current) = ctx.db.get::<TagRef>(&keys::tag(account, region, name, tag)).await?
        && current.doc.image_digest != digest
    {
        return Err(tag_already_exists(name, tag));
    }
    let image =
        storage::put_manifest(ctx, name, bytes::Bytes::copy_from_slice(bytes), &media_type, req.image_tag.as_deref())
            .await?;
    let mut out = head(ctx, name);
    let mut id = BTreeMap::new();
    id.insert("imageDigest", json!(image.image_digest));
    if let Some(t) = &req.image_tag {
        id.insert("imageTag", json!(t));
    }
    out.insert(
        "image".into(),
        json!({
            "registryId": ctx.scope.account,
            "repositoryName": name,
            "imageId": id,
            "imageManifest": req.image_manifest,
            "imageManifestMediaType": media_type,
        }),
    );
    Ok(Value::Object(out))
}

pub(super) fn tag_already_exists(repo: &str, tag: &str) -> Error {
    Error::already_exists(
        Resource::ImageTag,
        format!(
            "The image tag '{tag}' already exists in the '{repo}' repository and cannot be overwritten because the tag is immutable."
        ),
    )
}
