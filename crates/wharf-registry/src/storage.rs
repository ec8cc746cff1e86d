//! The registry's storage API: repositories, images, tags, blob links, upload sessions and
//! garbage collection, shared by the ECR API handlers and the `/v2/` endpoint so both take
//! the same code paths (a `PutImage` and a `PUT /v2/…/manifests/…` are one function).
//!
//! Every metadata change is one store transaction with compares on every document it read,
//! retried a few times on a conflicting concurrent write; content is written before the
//! metadata that makes it visible, so a crash between the two leaves only garbage for GC.

use crate::blobs::{self, Algorithm, BlobMeta, ByteStream, Digest, Hasher};
use crate::{Image, Registry, Repository, TagRef, keys};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use wharf_store::{Compare, Op, RangeRequest, Revision, Store, Txn};
use wharf_types::Timestamp;

/// How often a transaction is retried when a concurrent write changed what it read.
const TXN_ATTEMPTS: usize = 8;
/// Upload sessions untouched for this long are cancelled (their bytes deleted).
pub const UPLOAD_TTL: Duration = Duration::from_secs(60 * 60);
/// Unreferenced blobs younger than this are never collected (an in-flight push's layers).
pub const GC_GRACE: Duration = Duration::from_secs(10 * 60);

pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const OCI_EMPTY_CONFIG_TYPES: [&str; 2] =
    ["application/vnd.oci.image.config.v1+json", "application/vnd.docker.container.image.v1+json"];

/// What can go wrong in the registry's storage. The ECR API maps these to ECR's exception
/// names, the `/v2/` endpoint to the distribution spec's error codes.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("The repository with name '{0}' does not exist in the registry")]
    RepositoryNotFound(String),
    #[error("The repository with name '{0}' already exists in the registry")]
    RepositoryAlreadyExists(String),
    #[error("The repository with name '{0}' cannot be deleted because it still contains images")]
    RepositoryNotEmpty(String),
    #[error("The image {0} does not exist in the repository")]
    ImageNotFound(String),
    #[error("The image tag '{tag}' already exists on {current} and cannot be overwritten because the tag is immutable")]
    TagImmutable { tag: String, current: String },
    #[error("Invalid tag '{0}': a tag is [A-Za-z0-9_][A-Za-z0-9._-]{{0,127}}")]
    TagInvalid(String),
    #[error("Invalid manifest: {0}")]
    ManifestInvalid(String),
    #[error("The manifest references {0}, which does not exist in the repository")]
    ManifestBlobUnknown(String),
    #[error("'{0}' is not a valid sha256 or sha512 digest")]
    DigestInvalid(String),
    #[error("The uploaded content's digest {actual} does not match {expected}")]
    DigestMismatch { expected: String, actual: String },
    #[error("Blob {0} does not exist in the repository")]
    BlobUnknown(String),
    #[error("Upload {0} does not exist (finished, cancelled or expired)")]
    UploadUnknown(String),
    #[error("The upload has {offset} bytes; a part must start at byte {offset}, not {first}")]
    UploadRange { offset: u64, first: u64 },
    #[error("The upload of '{0}' is empty")]
    UploadEmpty(String),
    #[error("Another request changed '{0}' at the same time; retry")]
    Conflict(String),
    #[error("The store failed")]
    Store(#[source] wharf_store::StoreError),
    #[error("Blob storage I/O failed while {context}")]
    Io {
        context: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("The request body could not be read")]
    BodyRead,
}

impl From<wharf_store::StoreError> for RegistryError {
    fn from(e: wharf_store::StoreError) -> Self {
        RegistryError::Store(e)
    }
}

fn io(context: &'static str) -> impl FnOnce(std::io::Error) -> RegistryError {
    move |source| RegistryError::Io { context, source }
}

pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// An image named by digest or by tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    Digest(String),
    Tag(String),
}

impl ImageRef {
    /// A reference from a URL or API field: a digest if it contains `:`, else a tag.
    pub fn parse(reference: &str) -> ImageRef {
        if reference.contains(':') { ImageRef::Digest(reference.into()) } else { ImageRef::Tag(reference.into()) }
    }
}

impl std::fmt::Display for ImageRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ImageRef::Digest(d) => write!(f, "with digest '{d}'"),
            ImageRef::Tag(t) => write!(f, "with tag '{t}'"),
        }
    }
}

/// `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}` (the distribution spec's tag grammar, as ECR).
pub fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

/// A repository's claim on a blob: pushed into it, or mounted from another repository.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BlobLink {
    pub size: u64,
    pub created_at: Timestamp,
}

/// An upload in progress (its bytes are in `_uploads/<upload_id>` of the blob store).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UploadSession {
    pub upload_id: String,
    pub repository_name: String,
    pub started_at: Timestamp,
}

/// The in-memory side of an upload: how many bytes the file has and, while no restart or
/// failure interrupted it, the running sha256 of those bytes (saves re-reading at the end).
#[derive(Debug, Default)]
pub(crate) struct SessionState {
    offset: Option<u64>,
    sha256: Option<Hasher>,
}

pub(crate) type Sessions = std::sync::Mutex<HashMap<String, Arc<tokio::sync::Mutex<SessionState>>>>;

/// What a GC pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    pub links_deleted: usize,
    pub blobs_deleted: usize,
    pub bytes_freed: u64,
    pub uploads_expired: usize,
}

/// A manifest's references, as parsed on push.
#[derive(Debug, Default)]
struct Parsed {
    media_type: String,
    blobs: Vec<(String, u64)>,
    children: Vec<String>,
    subject: Option<String>,
    artifact_type: Option<String>,
}

fn descriptor(v: &Value, what: &str) -> Result<(String, u64)> {
    let digest = v
        .get("digest")
        .and_then(Value::as_str)
        .ok_or_else(|| RegistryError::ManifestInvalid(format!("{what} has no digest")))?;
    Digest::parse(digest)
        .ok_or_else(|| RegistryError::ManifestInvalid(format!("{what} digest '{digest}' is invalid")))?;
    let size = v
        .get("size")
        .and_then(Value::as_u64)
        .ok_or_else(|| RegistryError::ManifestInvalid(format!("{what} {digest} has no valid size")))?;
    Ok((digest.to_string(), size))
}

/// Parses and checks a manifest or index: its media type (from the body's `mediaType`, else
/// the Content-Type, else the shape) and every descriptor it holds.
fn parse_manifest(bytes: &[u8], content_type: Option<&str>) -> Result<Parsed> {
    let v: Value = serde_json::from_slice(bytes)
        .map_err(|e| RegistryError::ManifestInvalid(format!("the manifest is not JSON: {e}")))?;
    if !v.is_object() {
        return Err(RegistryError::ManifestInvalid("the manifest is not a JSON object".into()));
    }
    if v.get("schemaVersion").and_then(Value::as_u64) != Some(2) {
        return Err(RegistryError::ManifestInvalid("schemaVersion must be 2 (schema 1 is not supported)".into()));
    }
    let declared = v.get("mediaType").and_then(Value::as_str);
    let header = content_type
        .map(|c| c.split(';').next().unwrap_or_default().trim())
        .filter(|c| !c.is_empty() && *c != "application/json" && *c != "application/octet-stream");
    if let (Some(d), Some(h)) = (declared, header)
        && d != h
    {
        return Err(RegistryError::ManifestInvalid(format!("mediaType '{d}' does not match Content-Type '{h}'")));
    }
    let media_type = match declared.or(header) {
        Some(t) => t.to_string(),
        None if v.get("manifests").is_some() => OCI_INDEX.to_string(),
        None => OCI_MANIFEST.to_string(),
    };
    let mut parsed = Parsed { media_type: media_type.clone(), ..Default::default() };
    match media_type.as_str() {
        DOCKER_MANIFEST | OCI_MANIFEST => {
            let config = v.get("config").ok_or_else(|| RegistryError::ManifestInvalid("config is missing".into()))?;
            let config_desc = descriptor(config, "config")?;
            let config_type = config.get("mediaType").and_then(Value::as_str).unwrap_or_default();
            parsed.blobs.push(config_desc);
            let layers = v
                .get("layers")
                .and_then(Value::as_array)
                .ok_or_else(|| RegistryError::ManifestInvalid("layers is missing".into()))?;
            for layer in layers {
                let d = descriptor(layer, "layer")?;
                // Foreign layers (with `urls`) live elsewhere by design.
                if layer.get("urls").is_none() {
                    parsed.blobs.push(d);
                }
            }
            parsed.artifact_type = v
                .get("artifactType")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| (!OCI_EMPTY_CONFIG_TYPES.contains(&config_type)).then(|| config_type.to_string()));
        }
        DOCKER_MANIFEST_LIST | OCI_INDEX => {
            let manifests = v
                .get("manifests")
                .and_then(Value::as_array)
                .ok_or_else(|| RegistryError::ManifestInvalid("manifests is missing".into()))?;
            for m in manifests {
                parsed.children.push(descriptor(m, "manifest")?.0);
            }
            parsed.artifact_type = v.get("artifactType").and_then(Value::as_str).map(str::to_string);
        }
        other => return Err(RegistryError::ManifestInvalid(format!("unsupported media type '{other}'"))),
    }
    if let Some(subject) = v.get("subject") {
        parsed.subject = Some(descriptor(subject, "subject")?.0);
    }
    Ok(parsed)
}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| RegistryError::Io {
        context: "decoding a registry document",
        source: std::io::Error::other(format!("{key}: {e}")),
    })
}

fn encode<T: Serialize>(doc: &T) -> Bytes {
    // Registry documents are plain structs and maps: serialization cannot fail.
    Bytes::from(serde_json::to_vec(doc).unwrap_or_default())
}

impl Registry {
    async fn doc<T: DeserializeOwned>(&self, key: &str) -> Result<Option<(T, Revision)>> {
        match self.store().get(key).await? {
            Some(kv) => Ok(Some((decode(key, &kv.value)?, kv.mod_revision))),
            None => Ok(None),
        }
    }

    async fn docs<T: DeserializeOwned>(&self, prefix: &str) -> Result<Vec<(String, T, Revision)>> {
        let resp = self.store().range(RangeRequest { prefix: prefix.into(), ..Default::default() }).await?;
        resp.kvs.into_iter().map(|kv| Ok((kv.key.clone(), decode(&kv.key, &kv.value)?, kv.mod_revision))).collect()
    }

    async fn commit(&self, txn: Txn) -> Result<bool> {
        Ok(self.store().txn(txn).await?.succeeded)
    }

    async fn require_repository(&self, account: &str, region: &str, name: &str) -> Result<(Repository, Revision)> {
        self.doc(&keys::repository(account, region, name))
            .await?
            .ok_or_else(|| RegistryError::RepositoryNotFound(name.into()))
    }

    // ---------------------------------------------------------------- repositories

    /// Creates `repo` (keyed by its `repository_name`) if no repository has that name.
    /// Fills `repository_uri` when empty and `created_at` when zero.
    pub async fn create_repository(&self, account: &str, region: &str, mut repo: Repository) -> Result<Repository> {
        if repo.repository_uri.is_empty() {
            repo.repository_uri = self.repository_uri(&repo.repository_name);
        }
        if repo.created_at == 0.0 {
            repo.created_at = wharf_types::now();
        }
        let key = keys::repository(account, region, &repo.repository_name);
        let txn = Txn { compares: vec![Compare::ModRevision(key.clone(), 0)], ops: vec![Op::put(key, encode(&repo))] };
        if self.commit(txn).await? {
            Ok(repo)
        } else {
            Err(RegistryError::RepositoryAlreadyExists(repo.repository_name))
        }
    }

    /// The repository `name`, if it exists.
    pub async fn get_repository(&self, account: &str, region: &str, name: &str) -> Result<Option<Repository>> {
        Ok(self.doc(&keys::repository(account, region, name)).await?.map(|(r, _)| r))
    }

    /// Every repository of the account in the region, by name.
    pub async fn list_repositories(&self, account: &str, region: &str) -> Result<Vec<Repository>> {
        Ok(self.docs(&keys::repositories(account, region)).await?.into_iter().map(|(_, r, _)| r).collect())
    }

    /// Changes repository `name` with `change` under compare-and-swap (re-run on a conflict,
    /// so `change` must be a pure function of the document). Returns the stored result.
    pub async fn update_repository<F>(
        &self,
        account: &str,
        region: &str,
        name: &str,
        mut change: F,
    ) -> Result<Repository>
    where
        F: FnMut(&mut Repository) -> Result<()>,
    {
        let key = keys::repository(account, region, name);
        for _ in 0..TXN_ATTEMPTS {
            let (mut repo, rev) = self.require_repository(account, region, name).await?;
            change(&mut repo)?;
            let txn = Txn {
                compares: vec![Compare::ModRevision(key.clone(), rev)],
                ops: vec![Op::put(&*key, encode(&repo))],
            };
            if self.commit(txn).await? {
                return Ok(repo);
            }
        }
        Err(RegistryError::Conflict(name.into()))
    }

    /// Deletes repository `name`; with images in it only when `force` (then its images, tags,
    /// blob links and uploads go too; the blobs themselves are left to GC).
    pub async fn delete_repository(&self, account: &str, region: &str, name: &str, force: bool) -> Result<Repository> {
        let key = keys::repository(account, region, name);
        let prefixes = [
            keys::images(account, region, name),
            keys::tags(account, region, name),
            keys::blobs(account, region, name),
            keys::uploads(account, region, name),
        ];
        for _ in 0..TXN_ATTEMPTS {
            let (repo, rev) = self.require_repository(account, region, name).await?;
            let mut compares = vec![Compare::ModRevision(key.clone(), rev)];
            let mut ops = vec![Op::delete(&*key)];
            if !force {
                compares.push(Compare::PrefixEmpty(prefixes[0].clone()));
            }
            for prefix in &prefixes {
                let resp = self
                    .store()
                    .range(RangeRequest { prefix: prefix.clone(), keys_only: true, ..Default::default() })
                    .await?;
                for kv in resp.kvs {
                    compares.push(Compare::ModRevision(kv.key.clone(), kv.mod_revision));
                    ops.push(Op::delete(kv.key));
                }
            }
            if self.commit(Txn { compares, ops }).await? {
                // A push that committed between our read and our write could leave an image
                // behind: sweep what is left under the prefixes (the repository is gone now).
                for prefix in &prefixes {
                    let resp = self
                        .store()
                        .range(RangeRequest { prefix: prefix.clone(), keys_only: true, ..Default::default() })
                        .await?;
                    let ops = resp.kvs.into_iter().map(|kv| Op::delete(kv.key)).collect::<Vec<_>>();
                    if !ops.is_empty() {
                        self.commit(Txn { compares: vec![], ops }).await?;
                    }
                }
                self.wake_gc();
                return Ok(repo);
            }
            if !force && !self.images_of(account, region, name).await?.is_empty() {
                return Err(RegistryError::RepositoryNotEmpty(name.into()));
            }
        }
        Err(RegistryError::Conflict(name.into()))
    }

    async fn images_of(&self, account: &str, region: &str, repo: &str) -> Result<Vec<(String, Image, Revision)>> {
        self.docs(&keys::images(account, region, repo)).await
    }

    // ---------------------------------------------------------------- images

    /// Every image of repository `repo` (manifests and indexes, tagged or not).
    pub async fn list_images(&self, account: &str, region: &str, repo: &str) -> Result<Vec<Image>> {
        self.require_repository(account, region, repo).await?;
        Ok(self.images_of(account, region, repo).await?.into_iter().map(|(_, i, _)| i).collect())
    }

    async fn resolve(&self, account: &str, region: &str, repo: &str, r: &ImageRef) -> Result<Option<String>> {
        Ok(match r {
            ImageRef::Digest(d) => Some(d.clone()),
            ImageRef::Tag(t) => {
                self.doc::<TagRef>(&keys::tag(account, region, repo, t)).await?.map(|(t, _)| t.image_digest)
            }
        })
    }

    /// The image `r` names in `repo` (`RepositoryNotFound` if the repository does not exist).
    pub async fn get_image(&self, account: &str, region: &str, repo: &str, r: &ImageRef) -> Result<Option<Image>> {
        self.require_repository(account, region, repo).await?;
        let Some(digest) = self.resolve(account, region, repo, r).await? else { return Ok(None) };
        Ok(self.doc(&keys::image(account, region, repo, &digest)).await?.map(|(i, _)| i))
    }

    /// The image `r` names and its manifest bytes (exactly as pushed).
    pub async fn get_manifest(
        &self,
        account: &str,
        region: &str,
        repo: &str,
        r: &ImageRef,
    ) -> Result<Option<(Image, Bytes)>> {
        let Some(image) = self.get_image(account, region, repo, r).await? else { return Ok(None) };
        let digest = Digest::parse(&image.image_digest)
            .ok_or_else(|| RegistryError::DigestInvalid(image.image_digest.clone()))?;
        match self.blobs().read_small(&digest).await {
            Some(bytes) => Ok(Some((image, bytes))),
            None => Err(RegistryError::Io {
                context: "reading a manifest",
                source: std::io::Error::new(std::io::ErrorKind::NotFound, format!("manifest {digest} is missing")),
            }),
        }
    }

    /// Stores a manifest or index pushed to `repo`, under `reference` (a tag, a digest that
    /// must match the bytes, or `None`: untagged), checking every blob and child manifest it
    /// references is in the repository and that an immutable tag does not move. The image
    /// document, the tag and the image the tag moved from change in one transaction.
    /// ECR's PutImage and `PUT /v2/<name>/manifests/<reference>` both land here.
    pub async fn put_manifest(
        &self,
        account: &str,
        region: &str,
        repo: &str,
        reference: Option<&str>,
        content_type: Option<&str>,
        bytes: Bytes,
    ) -> Result<Image> {
        let reference = reference.map(ImageRef::parse);
        let algorithm = match &reference {
            Some(ImageRef::Digest(d)) => {
                Digest::parse(d).ok_or_else(|| RegistryError::DigestInvalid(d.clone()))?.algorithm
            }
            Some(ImageRef::Tag(t)) if !valid_tag(t) => return Err(RegistryError::TagInvalid(t.clone())),
            _ => Algorithm::Sha256,
        };
        let digest = Digest::of(algorithm, &bytes);
        if let Some(ImageRef::Digest(d)) = &reference
            && *d != digest.to_string()
        {
            return Err(RegistryError::DigestMismatch { expected: d.clone(), actual: digest.to_string() });
        }
        let parsed = parse_manifest(&bytes, content_type)?;
        let tag = match &reference {
            Some(ImageRef::Tag(t)) => Some(t.clone()),
            _ => None,
        };
        self.require_repository(account, region, repo).await?;
        self.blobs().put_small(&digest, bytes.clone()).await.map_err(io("storing a manifest"))?;
        let digest = digest.to_string();
        let image_key = keys::image(account, region, repo, &digest);

        for _ in 0..TXN_ATTEMPTS {
            let (repository, repo_rev) = self.require_repository(account, region, repo).await?;
            let mut compares = vec![Compare::ModRevision(keys::repository(account, region, repo), repo_rev)];
            let mut ops = Vec::new();
            let mut size = 0u64;
            // imageSizeInBytes counts the layers, not the config (blobs[0]), as ECR does.
            for (i, (blob, blob_size)) in parsed.blobs.iter().enumerate() {
                let key = keys::blob(account, region, repo, blob);
                let Some(kv) = self.store().get(&key).await? else {
                    return Err(RegistryError::ManifestBlobUnknown(blob.clone()));
                };
                compares.push(Compare::ModRevision(key, kv.mod_revision));
                if i > 0 {
                    size += blob_size;
                }
            }
            for child in &parsed.children {
                let key = keys::image(account, region, repo, child);
                let Some((child_image, rev)) = self.doc::<Image>(&key).await? else {
                    return Err(RegistryError::ManifestBlobUnknown(child.clone()));
                };
                compares.push(Compare::ModRevision(key, rev));
                size += child_image.image_size_in_bytes;
            }
            let existing = self.doc::<Image>(&image_key).await?;
            compares.push(Compare::ModRevision(image_key.clone(), existing.as_ref().map_or(0, |(_, r)| *r)));
            let mut image = match existing {
                Some((image, _)) => image,
                None => Image {
                    repository_name: repo.into(),
                    image_digest: digest.clone(),
                    image_pushed_at: wharf_types::now(),
                    ..Default::default()
                },
            };
            image.image_manifest_media_type = parsed.media_type.clone();
            image.artifact_media_type = parsed.artifact_type.clone();
            image.image_size_in_bytes = size;
            image.references =
                parsed.blobs.iter().map(|(d, _)| d.clone()).chain(parsed.children.iter().cloned()).collect();
            image.subject = parsed.subject.clone();
            if let Some(tag) = &tag {
                let tag_key = keys::tag(account, region, repo, tag);
                let current = self.doc::<TagRef>(&tag_key).await?;
                compares.push(Compare::ModRevision(tag_key.clone(), current.as_ref().map_or(0, |(_, r)| *r)));
                if let Some((current, _)) = &current
                    && current.image_digest != digest
                {
                    if !repository.tag_is_mutable(tag) {
                        return Err(RegistryError::TagImmutable {
                            tag: tag.clone(),
                            current: current.image_digest.clone(),
                        });
                    }
                    let old_key = keys::image(account, region, repo, &current.image_digest);
                    if let Some((mut old, rev)) = self.doc::<Image>(&old_key).await? {
                        compares.push(Compare::ModRevision(old_key.clone(), rev));
                        old.image_tags.retain(|t| t != tag);
                        ops.push(Op::put(old_key, encode(&old)));
                    }
                }
                if !image.image_tags.contains(tag) {
                    image.image_tags.push(tag.clone());
                }
                ops.push(Op::put(tag_key, encode(&TagRef { image_digest: digest.clone() })));
            }
            ops.push(Op::put(image_key.clone(), encode(&image)));
            if self.commit(Txn { compares, ops }).await? {
                return Ok(image);
            }
        }
        Err(RegistryError::Conflict(format!("{repo}@{digest}")))
    }

    /// Deletes image `digest` from `repo` with every tag on it (ECR BatchDeleteImage by
    /// digest; `DELETE /v2/<name>/manifests/<digest>`). Its blobs are left to GC.
    pub async fn delete_image(&self, account: &str, region: &str, repo: &str, digest: &str) -> Result<Image> {
        self.require_repository(account, region, repo).await?;
        let key = keys::image(account, region, repo, digest);
        for _ in 0..TXN_ATTEMPTS {
            let Some((image, rev)) = self.doc::<Image>(&key).await? else {
                return Err(RegistryError::ImageNotFound(ImageRef::Digest(digest.into()).to_string()));
            };
            let mut compares = vec![Compare::ModRevision(key.clone(), rev)];
            let mut ops = vec![Op::delete(&*key)];
            for tag in &image.image_tags {
                let tag_key = keys::tag(account, region, repo, tag);
                if let Some((t, rev)) = self.doc::<TagRef>(&tag_key).await?
                    && t.image_digest == digest
                {
                    compares.push(Compare::ModRevision(tag_key.clone(), rev));
                    ops.push(Op::delete(tag_key));
                }
            }
            if self.commit(Txn { compares, ops }).await? {
                self.wake_gc();
                return Ok(image);
            }
        }
        Err(RegistryError::Conflict(format!("{repo}@{digest}")))
    }

    /// Removes `tag` from `repo`. When it was the image's last tag and `delete_untagged` is
    /// set (ECR BatchDeleteImage by tag), the image goes too; the registry's
    /// `DELETE /v2/<name>/manifests/<tag>` keeps the untagged image. Returns the image as it
    /// was before.
    pub async fn untag_image(
        &self,
        account: &str,
        region: &str,
        repo: &str,
        tag: &str,
        delete_untagged: bool,
    ) -> Result<Image> {
        self.require_repository(account, region, repo).await?;
        let tag_key = keys::tag(account, region, repo, tag);
        for _ in 0..TXN_ATTEMPTS {
            let Some((t, tag_rev)) = self.doc::<TagRef>(&tag_key).await? else {
                return Err(RegistryError::ImageNotFound(ImageRef::Tag(tag.into()).to_string()));
            };
            let image_key = keys::image(account, region, repo, &t.image_digest);
            let mut compares = vec![Compare::ModRevision(tag_key.clone(), tag_rev)];
            let mut ops = vec![Op::delete(&*tag_key)];
            let before = match self.doc::<Image>(&image_key).await? {
                Some((image, rev)) => {
                    compares.push(Compare::ModRevision(image_key.clone(), rev));
                    let mut after = image.clone();
                    after.image_tags.retain(|x| x != tag);
                    if after.image_tags.is_empty() && delete_untagged {
                        ops.push(Op::delete(&*image_key));
                    } else {
                        ops.push(Op::put(&*image_key, encode(&after)));
                    }
                    image
                }
                None => {
                    Image { repository_name: repo.into(), image_digest: t.image_digest.clone(), ..Default::default() }
                }
            };
            if self.commit(Txn { compares, ops }).await? {
                self.wake_gc();
                return Ok(before);
            }
        }
        Err(RegistryError::Conflict(format!("{repo}:{tag}")))
    }

    /// Notes a pull of image `digest` (ECR's `lastRecordedPullTime`): best effort, at most
    /// one write a minute per image.
    pub async fn record_pull(&self, account: &str, region: &str, repo: &str, digest: &str) -> Result<()> {
        let key = keys::image(account, region, repo, digest);
        let Some((mut image, rev)) = self.doc::<Image>(&key).await? else { return Ok(()) };
        let now = wharf_types::now();
        if image.last_recorded_pull_time.is_some_and(|t| now - t < 60.0) {
            return Ok(());
        }
        image.last_recorded_pull_time = Some(now);
        let txn =
            Txn { compares: vec![Compare::ModRevision(key.clone(), rev)], ops: vec![Op::put(key, encode(&image))] };
        self.commit(txn).await?;
        Ok(())
    }

    /// Tags of `repo` in lexical order, after `last`, at most `n` (0 = all); and whether
    /// more follow.
    pub async fn list_tags(
        &self,
        account: &str,
        region: &str,
        repo: &str,
        last: Option<&str>,
        n: usize,
    ) -> Result<(Vec<String>, bool)> {
        self.require_repository(account, region, repo).await?;
        let prefix = keys::tags(account, region, repo);
        let after = last.map(|l| format!("{prefix}{l}"));
        let resp = self
            .store()
            .range(RangeRequest { prefix: prefix.clone(), after, limit: n, keys_only: true, ..Default::default() })
            .await?;
        Ok((resp.kvs.into_iter().map(|kv| kv.key[prefix.len()..].to_string()).collect(), resp.more))
    }

    /// Images of `repo` whose `subject` is `digest` (the referrers API).
    pub async fn referrers(&self, account: &str, region: &str, repo: &str, digest: &str) -> Result<Vec<Image>> {
        Ok(self
            .list_images(account, region, repo)
            .await?
            .into_iter()
            .filter(|i| i.subject.as_deref() == Some(digest))
            .collect())
    }

    // ---------------------------------------------------------------- blobs

    /// The size of blob `digest` if it is in `repo` (BatchCheckLayerAvailability, `HEAD`).
    pub async fn blob_size(&self, account: &str, region: &str, repo: &str, digest: &str) -> Result<Option<u64>> {
        if self.store().get(&keys::blob(account, region, repo, digest)).await?.is_none() {
            return Ok(None);
        }
        let Some(d) = Digest::parse(digest) else { return Ok(None) };
        Ok(self.blobs().stat(&d).await.map(|m| m.size))
    }

    /// Streams blob `digest` of `repo` (optionally a byte range); `None` if not in `repo`.
    pub async fn read_blob(
        &self,
        account: &str,
        region: &str,
        repo: &str,
        digest: &str,
        range: Option<std::ops::Range<u64>>,
    ) -> Result<Option<(BlobMeta, std::ops::Range<u64>, ByteStream)>> {
        if self.store().get(&keys::blob(account, region, repo, digest)).await?.is_none() {
            return Ok(None);
        }
        let d = Digest::parse(digest).ok_or_else(|| RegistryError::DigestInvalid(digest.into()))?;
        Ok(self.blobs().read(&d, range).await)
    }

    /// Removes blob `digest` from `repo` (the content goes at the next GC if unreferenced).
    pub async fn delete_blob(&self, account: &str, region: &str, repo: &str, digest: &str) -> Result<()> {
        self.require_repository(account, region, repo).await?;
        let key = keys::blob(account, region, repo, digest);
        let Some(kv) = self.store().get(&key).await? else { return Err(RegistryError::BlobUnknown(digest.into())) };
        let txn =
            Txn { compares: vec![Compare::ModRevision(key.clone(), kv.mod_revision)], ops: vec![Op::delete(key)] };
        self.commit(txn).await?;
        self.wake_gc();
        Ok(())
    }

    /// Cross-repository mount: makes blob `digest` of `from` (same account) part of `repo`.
    /// `Ok(false)` when `from` does not have it (the client then uploads).
    pub async fn mount_blob(&self, account: &str, region: &str, repo: &str, from: &str, digest: &str) -> Result<bool> {
        self.require_repository(account, region, repo).await?;
        let Some((_, _)) = self.doc::<BlobLink>(&keys::blob(account, region, from, digest)).await? else {
            return Ok(false);
        };
        let Some(d) = Digest::parse(digest) else { return Ok(false) };
        let Some(meta) = self.blobs().stat(&d).await else { return Ok(false) };
        let link = BlobLink { size: meta.size, created_at: wharf_types::now() };
        self.commit(Txn {
            compares: vec![],
            ops: vec![Op::put(keys::blob(account, region, repo, digest), encode(&link))],
        })
        .await?;
        Ok(true)
    }

    // ---------------------------------------------------------------- uploads

    fn session_state(&self, id: &str) -> Arc<tokio::sync::Mutex<SessionState>> {
        let mut sessions = self.sessions().lock().unwrap_or_else(|p| p.into_inner());
        sessions.entry(id.to_string()).or_default().clone()
    }

    fn forget_session(&self, id: &str) {
        self.sessions().lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    }

    /// Starts an upload into `repo` (InitiateLayerUpload, `POST /v2/<name>/blobs/uploads/`).
    pub async fn start_upload(&self, account: &str, region: &str, repo: &str) -> Result<String> {
        self.require_repository(account, region, repo).await?;
        let id = wharf_types::uuid();
        // The file first: a crash before the key leaves an orphan file the startup sweep removes.
        tokio::fs::File::create(self.blobs().upload_file(&id)).await.map_err(io("creating an upload file"))?;
        let session =
            UploadSession { upload_id: id.clone(), repository_name: repo.into(), started_at: wharf_types::now() };
        self.commit(Txn {
            compares: vec![],
            ops: vec![Op::put(keys::upload(account, region, repo, &id), encode(&session))],
        })
        .await?;
        Ok(id)
    }

    async fn require_session(&self, account: &str, region: &str, repo: &str, id: &str) -> Result<UploadSession> {
        if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Err(RegistryError::UploadUnknown(id.into()));
        }
        Ok(self
            .doc::<UploadSession>(&keys::upload(account, region, repo, id))
            .await?
            .ok_or_else(|| RegistryError::UploadUnknown(id.into()))?
            .0)
    }

    /// How many bytes upload `id` holds.
    pub async fn upload_offset(&self, account: &str, region: &str, repo: &str, id: &str) -> Result<u64> {
        self.require_session(account, region, repo, id).await?;
        let state = self.session_state(id);
        let mut state = state.lock().await;
        self.load_offset(id, &mut state).await
    }

    async fn load_offset(&self, id: &str, state: &mut SessionState) -> Result<u64> {
        if let Some(o) = state.offset {
            return Ok(o);
        }
        let len = tokio::fs::metadata(self.blobs().upload_file(id))
            .await
            .map_err(|_| RegistryError::UploadUnknown(id.into()))?
            .len();
        state.offset = Some(len);
        state.sha256 = (len == 0).then(|| Hasher::new(Algorithm::Sha256));
        Ok(len)
    }

    /// Appends a stream of bytes to upload `id`; `start` (when given) must equal the bytes
    /// already uploaded (`UploadRange` otherwise: chunks in order). Returns the new length.
    /// Streams to disk: the body is never held whole.
    pub async fn append_upload<S, E>(
        &self,
        account: &str,
        region: &str,
        repo: &str,
        id: &str,
        start: Option<u64>,
        mut body: S,
    ) -> Result<u64>
    where
        S: Stream<Item = std::result::Result<Bytes, E>> + Unpin,
    {
        self.require_session(account, region, repo, id).await?;
        let state = self.session_state(id);
        let mut state = state.lock().await;
        let offset = self.load_offset(id, &mut state).await?;
        if let Some(first) = start
            && first != offset
        {
            return Err(RegistryError::UploadRange { offset, first });
        }
        let path = self.blobs().upload_file(id);
        let file =
            tokio::fs::OpenOptions::new().append(true).open(&path).await.map_err(io("opening an upload file"))?;
        let mut out = tokio::io::BufWriter::with_capacity(1 << 20, file);
        let mut written = 0u64;
        let mut failure = None;
        while let Some(chunk) = body.next().await {
            let Ok(chunk) = chunk else {
                failure = Some(RegistryError::BodyRead);
                break;
            };
            if let Err(e) = out.write_all(&chunk).await {
                failure = Some(RegistryError::Io { context: "writing an upload", source: e });
                state.sha256 = None;
                break;
            }
            if let Some(h) = state.sha256.as_mut() {
                h.update(&chunk);
            }
            written += chunk.len() as u64;
        }
        if let Err(e) = out.flush().await {
            state.sha256 = None;
            failure.get_or_insert(RegistryError::Io { context: "writing an upload", source: e });
        }
        if failure.is_some() || state.sha256.is_none() {
            // Whatever reached the file is the upload's state now (what GET status reports).
            state.offset = None;
            let len = self.load_offset(id, &mut state).await?;
            if len != offset + written {
                state.sha256 = None;
            }
        } else {
            state.offset = Some(offset + written);
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(offset + written),
        }
    }

    /// UploadLayerPart: appends `bytes` at `first_byte` (which must be the current length).
    pub async fn upload_part(
        &self,
        account: &str,
        region: &str,
        repo: &str,
        id: &str,
        first_byte: u64,
        bytes: Bytes,
    ) -> Result<u64> {
        let body = futures_util::stream::iter([Ok::<_, std::convert::Infallible>(bytes)]);
        self.append_upload(account, region, repo, id, Some(first_byte), body).await
    }

    /// Finishes upload `id`: verifies the bytes hash to `digest` (sha256 or sha512), publishes
    /// the blob atomically and links it into `repo`. On a mismatch the upload is discarded
    /// (`DigestMismatch`); nothing partial ever becomes a blob. Returns the blob's size.
    pub async fn complete_upload(
        &self,
        account: &str,
        region: &str,
        repo: &str,
        id: &str,
        digest: &str,
    ) -> Result<u64> {
        let expected = Digest::parse(digest).ok_or_else(|| RegistryError::DigestInvalid(digest.into()))?;
        self.require_session(account, region, repo, id).await?;
        let state = self.session_state(id);
        let mut state = state.lock().await;
        let offset = self.load_offset(id, &mut state).await?;
        let path = self.blobs().upload_file(id);
        let (actual, size) = match (expected.algorithm, state.sha256.take()) {
            (Algorithm::Sha256, Some(h)) => (h.finish(), offset),
            (algorithm, _) => blobs::hash_file(&path, algorithm).await.map_err(io("hashing an upload"))?,
        };
        if actual != expected {
            drop(state);
            self.cancel_upload(account, region, repo, id).await?;
            return Err(RegistryError::DigestMismatch { expected: expected.to_string(), actual: actual.to_string() });
        }
        self.blobs().publish(id, &expected).await.map_err(io("publishing a blob"))?;
        let link = BlobLink { size, created_at: wharf_types::now() };
        let txn = Txn {
            compares: vec![],
            ops: vec![
                Op::delete(keys::upload(account, region, repo, id)),
                Op::put(keys::blob(account, region, repo, digest), encode(&link)),
            ],
        };
        self.commit(txn).await?;
        state.offset = None;
        drop(state);
        self.forget_session(id);
        Ok(size)
    }

    /// Cancels upload `id`: its bytes are deleted.
    pub async fn cancel_upload(&self, account: &str, region: &str, repo: &str, id: &str) -> Result<()> {
        self.require_session(account, region, repo, id).await?;
        let state = self.session_state(id);
        let guard = state.lock().await;
        self.commit(Txn { compares: vec![], ops: vec![Op::delete(keys::upload(account, region, repo, id))] }).await?;
        let _ = tokio::fs::remove_file(self.blobs().upload_file(id)).await;
        drop(guard);
        self.forget_session(id);
        Ok(())
    }

    /// Cancels uploads untouched for `ttl` and deletes upload files no session owns (left by
    /// a crash between creating the file and recording the session, or by a deleted
    /// repository). Returns how many sessions expired.
    pub async fn expire_uploads(&self, ttl: Duration) -> Result<usize> {
        let mut live = HashSet::new();
        let mut expired = 0;
        for (key, session, rev) in self.docs::<UploadSession>("/ecr/upload/").await? {
            let id = session.upload_id;
            let idle = file_age(&self.blobs().upload_file(&id)).await.is_none_or(|age| age > ttl);
            if idle && !self.session_busy(&id) {
                let txn = Txn { compares: vec![Compare::ModRevision(key.clone(), rev)], ops: vec![Op::delete(key)] };
                if self.commit(txn).await? {
                    let _ = tokio::fs::remove_file(self.blobs().upload_file(&id)).await;
                    self.forget_session(&id);
                    expired += 1;
                    continue;
                }
            }
            live.insert(id);
        }
        for id in self.blobs().upload_ids() {
            let path = self.blobs().upload_file(&id);
            // A minute's slack: start_upload creates the file just before its session key.
            if !live.contains(&id) && !self.session_busy(&id) && file_age(&path).await.is_some_and(|a| a.as_secs() > 60)
            {
                let _ = tokio::fs::remove_file(path).await;
            }
        }
        Ok(expired)
    }

    fn session_busy(&self, id: &str) -> bool {
        self.sessions().lock().unwrap_or_else(|p| p.into_inner()).get(id).is_some_and(|s| s.try_lock().is_err())
    }

    // ---------------------------------------------------------------- garbage collection

    /// Deletes blobs no image references: marks every digest named by an image document
    /// (its manifest and all it references), drops blob links to unmarked blobs older than
    /// `grace`, then deletes unmarked, unlinked blobs older than `grace`. A push in flight
    /// (layers uploaded, manifest not yet put) is younger than `grace` and survives.
    pub async fn collect_garbage(&self, grace: Duration) -> Result<GcReport> {
        let mut report = GcReport::default();
        let cutoff = wharf_types::now() - grace.as_secs_f64();
        let mut marked = HashSet::new();
        for (_, image, _) in self.docs::<Image>("/ecr/image/").await? {
            marked.insert(image.image_digest);
            marked.extend(image.references);
        }
        let mut linked = HashSet::new();
        for (key, link, rev) in self.docs::<BlobLink>("/ecr/blob/").await? {
            let digest = key.rsplit('#').next().unwrap_or_default().to_string();
            if !marked.contains(&digest) && link.created_at < cutoff {
                let txn = Txn { compares: vec![Compare::ModRevision(key.clone(), rev)], ops: vec![Op::delete(key)] };
                if self.commit(txn).await? {
                    report.links_deleted += 1;
                    continue;
                }
            }
            linked.insert(digest);
        }
        for (digest, meta) in self.blobs().list().await.map_err(io("listing blobs"))? {
            let name = digest.to_string();
            if marked.contains(&name) || linked.contains(&name) || meta.modified >= cutoff {
                continue;
            }
            self.blobs().delete(&digest).await.map_err(io("deleting a blob"))?;
            report.blobs_deleted += 1;
            report.bytes_freed += meta.size;
        }
        Ok(report)
    }
}

/// How long ago `path` was last modified (`None` if it does not exist).
async fn file_age(path: &std::path::Path) -> Option<Duration> {
    let modified = tokio::fs::metadata(path).await.ok()?.modified().ok()?;
    Some(modified.elapsed().unwrap_or_default())
}
