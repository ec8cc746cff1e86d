//! The seam between the ECR API and the registry's content storage (`wharf_registry`):
//! manifests, blobs and upload sessions. Everything the API needs from content storage goes
//! through these functions, so the handlers never see how content is laid out.

use crate::Ctx;
use sha2::{Digest, Sha256, Sha512};
use wharf_registry::{Image, Repository};
use wharf_types::{Error, Result};

fn pending(what: &str) -> Error {
    Error::Internal(format!("{what}: the registry's content storage is not available in this build"))
}

/// The digest of manifest `bytes`, in the algorithm of `expected` (sha256 by default).
pub(super) fn digest_of(bytes: &[u8], expected: Option<&str>) -> Result<String> {
    Ok(match expected.and_then(|e| e.split_once(':')).map(|(alg, _)| alg) {
        Some("sha512") => format!("sha512:{}", hex::encode(Sha512::digest(bytes))),
        _ => format!("sha256:{}", hex::encode(Sha256::digest(bytes))),
    })
}

/// The bytes of manifest `digest` in `repo`, if stored.
pub(super) async fn manifest(_ctx: &Ctx, _repo: &str, _digest: &str) -> Result<Option<Vec<u8>>> {
    Err(pending("BatchGetImage"))
}

/// Stores a manifest (after the registry checks it and the blobs it names) and tags it.
pub(super) async fn put_manifest(
    _ctx: &Ctx,
    _repo: &Repository,
    _bytes: &[u8],
    _media_type: &str,
    _digest: &str,
    _tag: Option<&str>,
) -> Result<Image> {
    Err(pending("PutImage"))
}

/// The size of blob `digest` if `repo` can use it.
pub(super) async fn blob_size(_ctx: &Ctx, _repo: &str, _digest: &str) -> Result<Option<u64>> {
    Err(pending("layer lookup"))
}

pub(super) async fn start_upload(_ctx: &Ctx, _repo: &str) -> Result<String> {
    Err(pending("InitiateLayerUpload"))
}

/// Appends a part at `first_byte`; the last byte received so far.
pub(super) async fn upload_part(
    _ctx: &Ctx,
    _repo: &str,
    _upload: &str,
    _first_byte: u64,
    _bytes: &[u8],
) -> Result<u64> {
    Err(pending("UploadLayerPart"))
}

pub(super) async fn complete_upload(_ctx: &Ctx, _repo: &str, _upload: &str, _digest: &str) -> Result<String> {
    Err(pending("CompleteLayerUpload"))
}

/// A URL on Wharf's endpoint from which the layer can be fetched.
pub(super) fn download_url(ctx: &Ctx, repo: &str, digest: &str) -> String {
    format!("http://{}/v2/{repo}/blobs/{digest}", ctx.registry.host())
}
