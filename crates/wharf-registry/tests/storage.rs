//! The registry's storage API end to end on a real store and blob directory: uploads, digest
//! checks, manifests and tags in one transaction, deletes, restarts and garbage collection.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use serde_json::json;
use sha2::{Digest as _, Sha256};
use std::time::Duration;
use wharf_registry::{ImageRef, Registry, RegistryError, Repository};
use wharf_store::SqliteStore;

const A: &str = "123456789012";
const R: &str = "us-east-1";

fn digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

async fn registry_with(repo: &str, mutability: &str) -> (Registry, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("db")).unwrap();
    let reg = Registry::open(&dir.path().join("registry"), store, "127.0.0.1:5000").unwrap();
    let doc =
        Repository { repository_name: repo.into(), image_tag_mutability: mutability.into(), ..Default::default() };
    reg.create_repository(A, R, doc).await.unwrap();
    (reg, dir)
}

async fn push_blob(reg: &Registry, repo: &str, data: &[u8]) -> serde_json::Value {
    let id = reg.start_upload(A, R, repo).await.unwrap();
    reg.upload_part(A, R, repo, &id, 0, Bytes::copy_from_slice(data)).await.unwrap();
    reg.complete_upload(A, R, repo, &id, &digest(data)).await.unwrap();
    json!({"mediaType": "application/octet-stream", "digest": digest(data), "size": data.len()})
}

async fn manifest(reg: &Registry, repo: &str, layers: &[&[u8]]) -> Bytes {
    let config = push_blob(reg, repo, b"{}").await;
    let mut descs = Vec::new();
    for l in layers {
        descs.push(push_blob(reg, repo, l).await);
    }
    let m = json!({"schemaVersion": 2, "mediaType": wharf_registry::OCI_MANIFEST, "config": config, "layers": descs});
    Bytes::from(serde_json::to_vec(&m).unwrap())
}

#[tokio::test]
async fn uploads_check_order_and_digest_and_publish_atomically() {
    let (reg, _dir) = registry_with("app", "MUTABLE").await;
    let id = reg.start_upload(A, R, "app").await.unwrap();
    assert_eq!(reg.upload_part(A, R, "app", &id, 0, Bytes::from_static(b"hello ")).await.unwrap(), 6);
    let err = reg.upload_part(A, R, "app", &id, 0, Bytes::from_static(b"again")).await.unwrap_err();
    assert!(matches!(err, RegistryError::UploadRange { offset: 6, first: 0 }), "{err:?}");
    reg.upload_part(A, R, "app", &id, 6, Bytes::from_static(b"world")).await.unwrap();
    assert_eq!(reg.upload_offset(A, R, "app", &id).await.unwrap(), 11);
    assert_eq!(
        reg.blob_size(A, R, "app", &digest(b"hello world")).await.unwrap(),
        None,
        "not visible before completion"
    );
    reg.complete_upload(A, R, "app", &id, &digest(b"hello world")).await.unwrap();
    assert_eq!(reg.blob_size(A, R, "app", &digest(b"hello world")).await.unwrap(), Some(11));
    assert!(matches!(reg.upload_offset(A, R, "app", &id).await, Err(RegistryError::UploadUnknown(_))));

    // A wrong digest: refused, the session discarded, nothing published.
    let id = reg.start_upload(A, R, "app").await.unwrap();
    reg.upload_part(A, R, "app", &id, 0, Bytes::from_static(b"real")).await.unwrap();
    let err = reg.complete_upload(A, R, "app", &id, &digest(b"fake")).await.unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err:?}");
    assert_eq!(reg.blob_size(A, R, "app", &digest(b"real")).await.unwrap(), None);
    assert_eq!(reg.blob_size(A, R, "app", &digest(b"fake")).await.unwrap(), None);
    // sha512 digests are verified too.
    let id = reg.start_upload(A, R, "app").await.unwrap();
    reg.upload_part(A, R, "app", &id, 0, Bytes::from_static(b"x512")).await.unwrap();
    let d512 = format!("sha512:{}", hex::encode(sha2::Sha512::digest(b"x512")));
    reg.complete_upload(A, R, "app", &id, &d512).await.unwrap();
    assert_eq!(reg.blob_size(A, R, "app", &d512).await.unwrap(), Some(4));
    assert!(matches!(reg.start_upload(A, R, "missing").await, Err(RegistryError::RepositoryNotFound(_))));
}

#[tokio::test]
async fn an_upload_survives_a_restart_and_expires() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let store = SqliteStore::open(dir.path().join("db")).unwrap();
        let reg = Registry::open(&dir.path().join("registry"), store.clone(), "h:1").unwrap();
        reg.create_repository(A, R, Repository { repository_name: "app".into(), ..Default::default() }).await.unwrap();
        let id = reg.start_upload(A, R, "app").await.unwrap();
        reg.upload_part(A, R, "app", &id, 0, Bytes::from_static(b"first half,")).await.unwrap();
        store.close();
        id
    };
    let store = SqliteStore::open(dir.path().join("db")).unwrap();
    let reg = Registry::open(&dir.path().join("registry"), store, "h:1").unwrap();
    assert_eq!(reg.upload_offset(A, R, "app", &id).await.unwrap(), 11);
    reg.upload_part(A, R, "app", &id, 11, Bytes::from_static(b" second half")).await.unwrap();
    let whole = b"first half, second half";
    reg.complete_upload(A, R, "app", &id, &digest(whole)).await.unwrap();
    assert_eq!(reg.blob_size(A, R, "app", &digest(whole)).await.unwrap(), Some(whole.len() as u64));

    let stale = reg.start_upload(A, R, "app").await.unwrap();
    assert_eq!(reg.expire_uploads(Duration::from_secs(3600)).await.unwrap(), 0);
    assert_eq!(reg.expire_uploads(Duration::ZERO).await.unwrap(), 1);
    assert!(matches!(reg.upload_offset(A, R, "app", &stale).await, Err(RegistryError::UploadUnknown(_))));
}

#[tokio::test]
async fn manifests_tags_and_immutability_in_one_transaction() {
    let (reg, _dir) = registry_with("app", "MUTABLE").await;
    let one = manifest(&reg, "app", &[b"layer-a", b"layer-bb"]).await;
    let image = reg.put_manifest(A, R, "app", Some("v1"), None, one.clone()).await.unwrap();
    assert_eq!(image.image_digest, digest(&one));
    assert_eq!(image.image_size_in_bytes, 15, "layers only, not the config");
    assert_eq!(image.image_tags, vec!["v1"]);
    let (got, bytes) = reg.get_manifest(A, R, "app", &ImageRef::Tag("v1".into())).await.unwrap().unwrap();
    assert_eq!((got.image_digest.as_str(), bytes), (image.image_digest.as_str(), one.clone()));

    // Moving a mutable tag takes it off the old image in the same write.
    let two = manifest(&reg, "app", &[b"layer-c"]).await;
    reg.put_manifest(A, R, "app", Some("v1"), None, two.clone()).await.unwrap();
    let old = reg.get_image(A, R, "app", &ImageRef::Digest(digest(&one))).await.unwrap().unwrap();
    assert!(old.image_tags.is_empty());
    let (tags, more) = reg.list_tags(A, R, "app", None, 0).await.unwrap();
    assert_eq!((tags, more), (vec!["v1".to_string()], false));

    // Unknown blobs and bad references are refused.
    let bad = json!({"schemaVersion": 2, "mediaType": wharf_registry::OCI_MANIFEST,
        "config": {"mediaType": "x", "digest": digest(b"nope"), "size": 4}, "layers": []});
    let err = reg.put_manifest(A, R, "app", Some("bad"), None, Bytes::from(bad.to_string())).await.unwrap_err();
    assert!(matches!(err, RegistryError::ManifestBlobUnknown(_)), "{err:?}");
    let err = reg.put_manifest(A, R, "app", Some(&digest(b"other")), None, one.clone()).await.unwrap_err();
    assert!(matches!(err, RegistryError::DigestMismatch { .. }), "{err:?}");
    let err = reg.put_manifest(A, R, "app", Some("-bad"), None, one.clone()).await.unwrap_err();
    assert!(matches!(err, RegistryError::TagInvalid(_)), "{err:?}");

    // Immutable repositories keep their tags where they are.
    reg.update_repository(A, R, "app", |r| {
        r.image_tag_mutability = "IMMUTABLE".into();
        Ok(())
    })
    .await
    .unwrap();
    let err = reg.put_manifest(A, R, "app", Some("v1"), None, one.clone()).await.unwrap_err();
    assert!(matches!(err, RegistryError::TagImmutable { .. }), "{err:?}");
    reg.put_manifest(A, R, "app", Some("v1"), None, two.clone()).await.unwrap();

    // An index over both manifests; a missing child is refused.
    let index = json!({"schemaVersion": 2, "mediaType": wharf_registry::OCI_INDEX, "manifests": [
        {"mediaType": wharf_registry::OCI_MANIFEST, "digest": digest(&one), "size": one.len()},
        {"mediaType": wharf_registry::OCI_MANIFEST, "digest": digest(&two), "size": two.len()}]});
    let idx = reg.put_manifest(A, R, "app", Some("multi"), None, Bytes::from(index.to_string())).await.unwrap();
    assert_eq!(idx.image_manifest_media_type, wharf_registry::OCI_INDEX);
    assert_eq!(idx.references, vec![digest(&one), digest(&two)]);
}

#[tokio::test]
async fn deletes_and_garbage_collection() {
    let (reg, dir) = registry_with("app", "MUTABLE").await;
    let keep = manifest(&reg, "app", &[b"kept layer"]).await;
    let drop = manifest(&reg, "app", &[b"dropped layer"]).await;
    reg.put_manifest(A, R, "app", Some("keep"), None, keep.clone()).await.unwrap();
    reg.put_manifest(A, R, "app", Some("a"), None, drop.clone()).await.unwrap();
    reg.put_manifest(A, R, "app", Some("b"), None, drop.clone()).await.unwrap();
    let err = reg.delete_repository(A, R, "app", false).await.unwrap_err();
    assert!(matches!(err, RegistryError::RepositoryNotEmpty(_)), "{err:?}");

    // Untag keeps the image until its last tag goes (with delete_untagged, as ECR).
    reg.untag_image(A, R, "app", "a", true).await.unwrap();
    assert!(reg.get_image(A, R, "app", &ImageRef::Digest(digest(&drop))).await.unwrap().is_some());
    reg.untag_image(A, R, "app", "b", true).await.unwrap();
    assert!(reg.get_image(A, R, "app", &ImageRef::Digest(digest(&drop))).await.unwrap().is_none());

    // Within the grace period nothing goes; after it, exactly the unreferenced blobs.
    let report = reg.collect_garbage(Duration::from_secs(3600)).await.unwrap();
    assert_eq!(report.blobs_deleted, 0);
    let report = reg.collect_garbage(Duration::ZERO).await.unwrap();
    assert_eq!(report.blobs_deleted, 2, "the dropped manifest and its layer: {report:?}");
    let blobs = dir.path().join("registry/blobs/sha256");
    assert!(!blobs.join(&digest(b"dropped layer")[7..]).exists());
    assert!(blobs.join(&digest(b"kept layer")[7..]).exists());
    assert!(blobs.join(&digest(&keep)[7..]).exists());
    assert_eq!(reg.blob_size(A, R, "app", &digest(b"dropped layer")).await.unwrap(), None);
    assert!(reg.get_manifest(A, R, "app", &ImageRef::Tag("keep".into())).await.unwrap().is_some());

    // Deleting by digest removes every tag; force-deleting the repository removes the rest.
    reg.delete_image(A, R, "app", &digest(&keep)).await.unwrap();
    assert_eq!(reg.list_tags(A, R, "app", None, 0).await.unwrap().0, Vec::<String>::new());
    reg.put_manifest(A, R, "app", Some("again"), None, keep.clone()).await.unwrap();
    reg.delete_repository(A, R, "app", true).await.unwrap();
    assert!(reg.get_repository(A, R, "app").await.unwrap().is_none());
    let report = reg.collect_garbage(Duration::ZERO).await.unwrap();
    assert!(report.blobs_deleted >= 3, "{report:?}");
    assert_eq!(std::fs::read_dir(&blobs).unwrap().count(), 0);
}
