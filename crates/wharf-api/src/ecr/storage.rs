//! The seam between the ECR API and the registry's storage (`wharf_registry`): manifests,
//! blobs, upload sessions and the registry's own image deletes. Storage errors become ECR's
//! exceptions here, and only here.

use crate::Ctx;
use bytes::Bytes;
use wharf_registry::{Image, ImageRef, RegistryError};
use wharf_types::{Error, InUse, Invalid, Resource, Result};

/// What the failing operation was, when one storage error means different ECR exceptions.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    PutImage,
    CompleteLayerUpload,
    Other,
}

/// A storage error as ECR reports it: the domain error whose ECR code fits `op`. The
/// message is the storage error's own.
pub(super) fn ecr_error(e: RegistryError, op: Op) -> Error {
    let message = e.to_string();
    match (&e, op) {
        (RegistryError::RepositoryNotFound(_), _) => Error::not_found(Resource::Repository, message),
        (RegistryError::RepositoryAlreadyExists(_), _) => Error::already_exists(Resource::Repository, message),
        (RegistryError::RepositoryNotEmpty(_), _) => Error::in_use(InUse::RepositoryContainsImages, message),
        (RegistryError::ImageNotFound(_), _) => Error::not_found(Resource::Image, message),
        (RegistryError::TagImmutable { .. }, _) => Error::already_exists(Resource::ImageTag, message),
        (RegistryError::DigestMismatch { .. }, Op::PutImage) => Error::invalid_input(Invalid::ImageDigest, message),
        (RegistryError::DigestMismatch { .. } | RegistryError::DigestInvalid(_), Op::CompleteLayerUpload) => {
            Error::invalid_input(Invalid::Layer, message)
        }
        (RegistryError::TagInvalid(_), _) => Error::invalid("imageTag", message),
        (RegistryError::ManifestInvalid(_), _) => Error::invalid("imageManifest", message),
        (RegistryError::DigestInvalid(_) | RegistryError::DigestMismatch { .. }, _) => {
            Error::invalid("imageDigest", message)
        }
        (RegistryError::ManifestBlobUnknown(_) | RegistryError::BlobUnknown(_), _) => {
            Error::not_found(Resource::Layer, message)
        }
        (RegistryError::UploadUnknown(_), _) => Error::not_found(Resource::Upload, message),
        (RegistryError::UploadRange { .. }, _) => Error::invalid_input(Invalid::LayerPart, message),
        (RegistryError::UploadEmpty(_), _) => Error::invalid_input(Invalid::EmptyUpload, message),
        (RegistryError::Conflict(_), _) => Error::registry(e),
        (RegistryError::Store(_) | RegistryError::Io { .. } | RegistryError::BodyRead, _) => {
            // Log the cause chain once, here at the edge.
            tracing::error!(error = ?e, "registry storage failed");
            Error::registry(e)
        }
    }
}

fn scope(ctx: &Ctx) -> (&str, &str) {
    (&ctx.scope.account, &ctx.scope.region)
}

/// The bytes of manifest `digest` in `repo`, if stored. Reading a manifest is a pull
/// (`lastRecordedPullTime`), as ECR counts BatchGetImage.
pub(super) async fn manifest(ctx: &Ctx, repo: &str, digest: &str) -> Result<Option<Bytes>> {
    let (a, r) = scope(ctx);
    let found = ctx.registry.get_manifest(a, r, repo, &ImageRef::Digest(digest.to_string())).await;
    let Some((_, bytes)) = found.map_err(|e| ecr_error(e, Op::Other))? else { return Ok(None) };
    if let Err(e) = ctx.registry.record_pull(a, r, repo, digest).await {
        // Best effort: the pull itself succeeded.
        tracing::debug!(error = %e, "could not record a pull");
    }
    Ok(Some(bytes))
}

/// Stores a manifest (the registry checks it and the blobs it names) and tags it.
pub(super) async fn put_manifest(
    ctx: &Ctx,
    repo: &str,
    bytes: Bytes,
    media_type: &str,
    tag: Option<&str>,
) -> Result<Image> {
    let (a, r) = scope(ctx);
    ctx.registry.put_manifest(a, r, repo, tag, Some(media_type), bytes).await.map_err(|e| ecr_error(e, Op::PutImage))
}

/// Deletes image `digest` with all its tags.
pub(super) async fn delete_image(ctx: &Ctx, repo: &str, digest: &str) -> Result<Image> {
    let (a, r) = scope(ctx);
    ctx.registry.delete_image(a, r, repo, digest).await.map_err(|e| ecr_error(e, Op::Other))
}

/// Removes `tag`; the image goes too when it was its last tag (BatchDeleteImage by tag).
pub(super) async fn untag(ctx: &Ctx, repo: &str, tag: &str) -> Result<Image> {
    let (a, r) = scope(ctx);
    ctx.registry.untag_image(a, r, repo, tag, true).await.map_err(|e| ecr_error(e, Op::Other))
}

/// Deletes repository `name` (with `force`, its images, tags, blob links and uploads).
pub(super) async fn delete_repository(ctx: &Ctx, name: &str, force: bool) -> Result<wharf_registry::Repository> {
    let (a, r) = scope(ctx);
    ctx.registry.delete_repository(a, r, name, force).await.map_err(|e| ecr_error(e, Op::Other))
}

/// The size of blob `digest` if `repo` can use it.
pub(super) async fn blob_size(ctx: &Ctx, repo: &str, digest: &str) -> Result<Option<u64>> {
    let (a, r) = scope(ctx);
    ctx.registry.blob_size(a, r, repo, digest).await.map_err(|e| ecr_error(e, Op::Other))
}

pub(super) async fn start_upload(ctx: &Ctx, repo: &str) -> Result<String> {
    let (a, r) = scope(ctx);
    ctx.registry.start_upload(a, r, repo).await.map_err(|e| ecr_error(e, Op::Other))
}

/// Appends a part at `first_byte`; the last byte received so far.
pub(super) async fn upload_part(ctx: &Ctx, repo: &str, upload: &str, first_byte: u64, bytes: Vec<u8>) -> Result<u64> {
    let (a, r) = scope(ctx);
    let len = ctx
        .registry
        .upload_part(a, r, repo, upload, first_byte, Bytes::from(bytes))
        .await
        .map_err(|e| ecr_error(e, Op::Other))?;
    Ok(len.saturating_sub(1))
}

pub(super) async fn complete_upload(ctx: &Ctx, repo: &str, upload: &str, digest: &str) -> Result<String> {
    let (a, r) = scope(ctx);
    ctx.registry
        .complete_upload(a, r, repo, upload, digest)
        .await
        .map_err(|e| ecr_error(e, Op::CompleteLayerUpload))?;
    Ok(digest.to_string())
}

/// A URL on Wharf's endpoint from which the layer can be fetched without further
/// credentials, as ECR's pre-signed URLs can (the registry signs it; valid one hour).
pub(super) fn download_url(ctx: &Ctx, repo: &str, digest: &str) -> String {
    ctx.registry.download_url(&ctx.scope.account, &ctx.scope.region, repo, digest)
}
