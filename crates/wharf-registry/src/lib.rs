//! Wharf's image registry: the storage behind the ECR API and the OCI Distribution v2
//! endpoint (`/v2/`) that `docker push`/`pull`, skopeo, podman and agents talk to.
//!
//! Metadata (repositories, images, tags, upload sessions) lives in the store under
//! `/ecr/<kind>/<account>/<region>/…`; content lives in a content-addressed blob store on
//! `object_store` (local filesystem by default). Repositories are per account: the account
//! comes from the caller's SigV4 identity on the ECR API and from the authorization token on
//! the registry endpoint.
//!
//! # The storage API (for the ECR API handlers; `account`/`region` from the caller's scope)
//!
//! Repositories: [`Registry::create_repository`], [`Registry::get_repository`],
//! [`Registry::list_repositories`], [`Registry::update_repository`] (CAS closure: tag
//! mutability, policies, tags), [`Registry::delete_repository`] (`force` removes its images).
//!
//! Images: [`Registry::list_images`], [`Registry::get_image`] (by [`ImageRef`] digest or tag),
//! [`Registry::get_manifest`] (image + exact manifest bytes), [`Registry::put_manifest`]
//! (PutImage; the same path as `PUT /v2/…/manifests/…`), [`Registry::delete_image`] (by
//! digest, with its tags), [`Registry::untag_image`] (by tag; `delete_untagged` for
//! BatchDeleteImage), [`Registry::record_pull`], [`Registry::list_tags`],
//! [`Registry::referrers`].
//!
//! Blobs and layer uploads: [`Registry::blob_size`] (BatchCheckLayerAvailability),
//! [`Registry::read_blob`] (`GET`), [`Registry::download_url`] (GetDownloadUrlForLayer: a
//! pre-signed URL valid for an hour), [`Registry::delete_blob`],
//! [`Registry::mount_blob`], [`Registry::start_upload`] (InitiateLayerUpload),
//! [`Registry::upload_part`] (UploadLayerPart: bytes at `partFirstByte`),
//! [`Registry::append_upload`] (streaming), [`Registry::upload_offset`],
//! [`Registry::complete_upload`] (CompleteLayerUpload: digest verified),
//! [`Registry::cancel_upload`].
//!
//! Housekeeping: [`Registry::collect_garbage`], [`Registry::expire_uploads`],
//! [`Registry::maintain`] (the background task the server runs).
//!
//! Errors are [`RegistryError`]; map them to ECR's exceptions at the API edge.
//!
//! Module ownership while the crate is being built: `lifecycle.rs` (lifecycle policy
//! evaluation, by the ECR API's engineer); everything else (storage, blobs, uploads, images,
//! tags, GC, tokens, the distribution endpoint) by the registry's engineer.

#![forbid(unsafe_code)]

pub mod auth;
pub mod blobs;
pub mod distribution;
pub mod lifecycle;
mod storage;

pub use storage::{
    BlobLink, DOCKER_MANIFEST, DOCKER_MANIFEST_LIST, GC_GRACE, GcReport, ImageRef, OCI_INDEX, OCI_MANIFEST,
    RegistryError, UPLOAD_TTL, UploadSession, valid_tag,
};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use wharf_store::SqliteStore;

/// The registry: cheap to clone, shared by the ECR API handlers and the `/v2/` endpoint.
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

struct Inner {
    store: SqliteStore,
    root: PathBuf,
    host: String,
    /// Whether the port is served over TLS (the scheme of `proxyEndpoint`).
    tls: bool,
    tokens: auth::TokenKey,
    blobs: blobs::BlobStore,
    sessions: storage::Sessions,
    gc_wake: tokio::sync::Notify,
    /// Keeps an `ephemeral` registry's directory alive (and removes it on drop).
    _scratch: Option<tempfile::TempDir>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("root", &self.inner.root).field("host", &self.inner.host).finish()
    }
}

impl Registry {
    /// Opens (creating) the registry under `root` (blobs, upload sessions, the token key).
    /// `host` is the `host:port` clients push to: the prefix of every `repositoryUri`.
    pub fn open(root: &Path, store: SqliteStore, host: impl Into<String>) -> std::io::Result<Registry> {
        std::fs::create_dir_all(root)?;
        let tokens = auth::TokenKey::load_or_create(&root.join("token.key"))?;
        let blobs = blobs::BlobStore::open(&root.join("blobs"))?;
        let inner = Inner {
            store,
            root: root.to_path_buf(),
            host: host.into(),
            tls: false,
            tokens,
            blobs,
            sessions: Default::default(),
            gc_wake: tokio::sync::Notify::new(),
            _scratch: None,
        };
        Ok(Registry { inner: Arc::new(inner) })
    }

    /// A registry in a temporary directory removed when the last clone drops (tests, tools).
    pub fn ephemeral(store: SqliteStore) -> std::io::Result<Registry> {
        let dir = tempfile::tempdir()?;
        let registry = Registry::open(dir.path(), store, "127.0.0.1:0")?;
        let Ok(mut inner) = Arc::try_unwrap(registry.inner) else { unreachable!("just created") };
        inner._scratch = Some(dir);
        Ok(Registry { inner: Arc::new(inner) })
    }

    pub fn store(&self) -> &SqliteStore {
        &self.inner.store
    }

    pub fn root(&self) -> &Path {
        &self.inner.root
    }

    pub(crate) fn blobs(&self) -> &blobs::BlobStore {
        &self.inner.blobs
    }

    pub(crate) fn sessions(&self) -> &storage::Sessions {
        &self.inner.sessions
    }

    /// Asks the background task for a GC pass soon (after deletes).
    pub(crate) fn wake_gc(&self) {
        self.inner.gc_wake.notify_one();
    }

    /// The registry's background housekeeping until `shutdown`: at start and then every ten
    /// minutes (and soon after deletes) expires idle upload sessions and collects unreferenced
    /// blobs older than `grace`.
    pub async fn maintain(&self, grace: std::time::Duration, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            match self.expire_uploads(UPLOAD_TTL).await {
                Ok(n) if n > 0 => tracing::info!(expired = n, "registry: expired upload sessions"),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "registry: expiring uploads failed"),
            }
            match self.collect_garbage(grace).await {
                Ok(r) if r.blobs_deleted > 0 || r.links_deleted > 0 => {
                    tracing::info!(
                        blobs = r.blobs_deleted,
                        bytes = r.bytes_freed,
                        links = r.links_deleted,
                        "registry: GC"
                    )
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "registry: GC failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(600)) => {}
                _ = self.inner.gc_wake.notified() => {
                    // Let a burst of deletes settle into one pass (a shutdown does not wait).
                    tokio::select! {
                        _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => {}
                        _ = shutdown.changed() => return,
                    }
                }
                _ = shutdown.changed() => return,
            }
        }
    }

    /// `host:port` of the registry endpoint (what `repositoryUri` starts with).
    pub fn host(&self) -> &str {
        &self.inner.host
    }

    /// Marks the registry as served over TLS (before it is shared).
    pub fn with_tls(mut self, tls: bool) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.tls = tls;
        }
        self
    }

    /// `http(s)://host:port`: ECR's `proxyEndpoint`.
    pub fn endpoint(&self) -> String {
        format!("{}://{}", if self.inner.tls { "https" } else { "http" }, self.inner.host)
    }

    /// `repositoryUri` of repository `name`.
    pub fn repository_uri(&self, name: &str) -> String {
        format!("{}/{name}", self.inner.host)
    }

    /// A `GetAuthorizationToken` token for `account`/`region` valid for 12 hours: base64 of
    /// `AWS:<password>`, and when it expires (epoch seconds).
    pub fn mint_token(&self, account: &str, region: &str) -> (String, u64) {
        self.inner.tokens.mint(account, region, auth::now_secs() + auth::TOKEN_TTL_SECS)
    }

    /// A pre-signed URL to download blob `digest` of `repo` without credentials for the next
    /// hour (ECR's GetDownloadUrlForLayer; S3 pre-signed URLs in AWS).
    pub fn download_url(&self, account: &str, region: &str, repo: &str, digest: &str) -> String {
        let expires = auth::now_secs() + 3600;
        let path = format!("/v2/{repo}/blobs/{digest}");
        let signature = self.inner.tokens.sign(&presign_claim(account, region, &path, expires));
        format!(
            "http://{}{path}?X-Wharf-Account={account}&X-Wharf-Region={region}&X-Wharf-Expires={expires}&X-Wharf-Signature={signature}",
            self.inner.host
        )
    }

    /// The account and region a pre-signed URL for `path` was made for, if genuine and unexpired.
    pub(crate) fn verify_presigned(
        &self,
        path: &str,
        query: &std::collections::HashMap<String, String>,
    ) -> Option<auth::TokenScope> {
        let account = query.get("X-Wharf-Account")?;
        let region = query.get("X-Wharf-Region")?;
        let expires: u64 = query.get("X-Wharf-Expires")?.parse().ok()?;
        let signature = query.get("X-Wharf-Signature")?;
        let genuine = self.inner.tokens.check_signature(&presign_claim(account, region, path, expires), signature);
        (genuine && expires > auth::now_secs()).then(|| auth::TokenScope {
            account: account.clone(),
            region: region.clone(),
            expires_at: expires,
        })
    }

    /// The account and region a registry password (the part after `AWS:`) was minted for,
    /// if it is genuine and unexpired.
    pub fn verify_password(&self, password: &str) -> Option<auth::TokenScope> {
        self.inner.tokens.verify(password, auth::now_secs())
    }
}

fn presign_claim(account: &str, region: &str, path: &str, expires: u64) -> String {
    format!("{account}|{region}|{path}|{expires}")
}

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use wharf_types::Timestamp;

/// Store keys, kind first. Repository names may contain `/`, never `#`, so `#` separates a
/// repository from what is inside it and a prefix never matches a longer repository name.
pub mod keys {
    pub fn repository(account: &str, region: &str, name: &str) -> String {
        format!("/ecr/repo/{account}/{region}/{name}")
    }
    pub fn repositories(account: &str, region: &str) -> String {
        format!("/ecr/repo/{account}/{region}/")
    }
    pub fn image(account: &str, region: &str, repo: &str, digest: &str) -> String {
        format!("/ecr/image/{account}/{region}/{repo}#{digest}")
    }
    pub fn images(account: &str, region: &str, repo: &str) -> String {
        format!("/ecr/image/{account}/{region}/{repo}#")
    }
    pub fn tag(account: &str, region: &str, repo: &str, tag: &str) -> String {
        format!("/ecr/tag/{account}/{region}/{repo}#{tag}")
    }
    pub fn tags(account: &str, region: &str, repo: &str) -> String {
        format!("/ecr/tag/{account}/{region}/{repo}#")
    }
    /// A repository's link to a blob (it was pushed or mounted into the repository).
    pub fn blob(account: &str, region: &str, repo: &str, digest: &str) -> String {
        format!("/ecr/blob/{account}/{region}/{repo}#{digest}")
    }
    pub fn blobs(account: &str, region: &str, repo: &str) -> String {
        format!("/ecr/blob/{account}/{region}/{repo}#")
    }
    /// An upload session in progress.
    pub fn upload(account: &str, region: &str, repo: &str, id: &str) -> String {
        format!("/ecr/upload/{account}/{region}/{repo}#{id}")
    }
    pub fn uploads(account: &str, region: &str, repo: &str) -> String {
        format!("/ecr/upload/{account}/{region}/{repo}#")
    }
}

/// A repository as ECR describes it (camelCase, ECR's field names).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Repository {
    pub repository_arn: String,
    pub registry_id: String,
    pub repository_name: String,
    /// `host:port/name`: what `docker push` and task definitions name.
    pub repository_uri: String,
    pub created_at: Timestamp,
    /// `MUTABLE` | `IMMUTABLE` | `MUTABLE_WITH_EXCLUSION` | `IMMUTABLE_WITH_EXCLUSION`
    pub image_tag_mutability: String,
    /// `[{filterType: WILDCARD, filter: "release-*"}]` for the `*_WITH_EXCLUSION` modes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_tag_mutability_exclusion_filters: Vec<Value>,
    #[serde(default)]
    pub image_scanning_configuration: Value,
    #[serde(default)]
    pub encryption_configuration: Value,
    /// Not on the wire (the model has no such members, so outputs drop them): kept here so one
    /// document holds the repository.
    #[serde(default)]
    pub policy: Option<String>,
    #[serde(default)]
    pub lifecycle_policy: Option<String>,
    #[serde(default)]
    pub lifecycle_policy_updated_at: Option<Timestamp>,
    #[serde(default)]
    pub tags: Vec<Value>,
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Repository {
    /// May `tag`, already on another image, be moved? (`ImageTagAlreadyExistsException` if not.)
    pub fn tag_is_mutable(&self, tag: &str) -> bool {
        let excluded = self
            .image_tag_mutability_exclusion_filters
            .iter()
            .any(|f| f.get("filter").and_then(Value::as_str).is_some_and(|pattern| wildcard_match(pattern, tag)));
        match self.image_tag_mutability.as_str() {
            "IMMUTABLE" => false,
            "IMMUTABLE_WITH_EXCLUSION" => excluded,
            "MUTABLE_WITH_EXCLUSION" => !excluded,
            _ => true,
        }
    }
}

/// `*` matches any run of characters (ECR's WILDCARD filters and lifecycle tagPatternList).
pub fn wildcard_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

/// What a tag key holds: the digest it points at. Invariant kept in one transaction: an
/// image's `image_tags` lists exactly the tags whose `TagRef` names its digest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TagRef {
    pub image_digest: String,
}

/// One image (a manifest or an index) in a repository.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Image {
    pub repository_name: String,
    /// `sha256:…` (or `sha512:…`) of the manifest bytes.
    pub image_digest: String,
    pub image_manifest_media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_media_type: Option<String>,
    /// ECR's `imageSizeInBytes`: the sum of the compressed layer sizes.
    pub image_size_in_bytes: u64,
    pub image_pushed_at: Timestamp,
    #[serde(default)]
    pub image_tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_recorded_pull_time: Option<Timestamp>,
    /// Not on the wire (dropped by the output shape): every blob and child manifest this manifest references (for GC and
    /// cross-checks), and the manifest it refers to (`subject`, for the referrers API).
    #[serde(default)]
    pub references: Vec<String>,
    #[serde(default)]
    pub subject: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("release-*", "release-1"));
        assert!(wildcard_match("*", ""));
        assert!(wildcard_match("a*b*c", "aXXbYYc"));
        assert!(!wildcard_match("a*b*c", "aXXcYYb"));
        assert!(!wildcard_match("prod", "prod1"));
        assert!(!wildcard_match("ab*ba", "aba"));
    }

    #[test]
    fn tag_mutability_modes() {
        let mut repo = Repository { image_tag_mutability: "IMMUTABLE".into(), ..Default::default() };
        assert!(!repo.tag_is_mutable("v1"));
        repo.image_tag_mutability = "IMMUTABLE_WITH_EXCLUSION".into();
        repo.image_tag_mutability_exclusion_filters =
            vec![serde_json::json!({"filterType": "WILDCARD", "filter": "latest"})];
        assert!(repo.tag_is_mutable("latest"));
        assert!(!repo.tag_is_mutable("v1"));
        repo.image_tag_mutability = "MUTABLE_WITH_EXCLUSION".into();
        assert!(!repo.tag_is_mutable("latest"));
        assert!(repo.tag_is_mutable("v1"));
    }
}
