//! ECR through the real handlers, model validation and the registry's storage (in a
//! temporary directory): ECR's error codes for each rule, an image pushed with the layer API
//! and PutImage, tag immutability, and arbitrary requests never causing a server fault.
#![allow(clippy::unwrap_used)]

use base64::Engine;
use proptest::prelude::*;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use wharf_api::{Ctx, ECR};
use wharf_protocol::{Protocol, wire_error};
use wharf_types::Error;

async fn try_call(ctx: &Ctx, op: &str, body: Value) -> Result<Value, Error> {
    let input = ECR.model.validate(op, body)?;
    wharf_api::call(&ECR, ctx, op, input).await.expect("implemented")
}

async fn call(ctx: &Ctx, op: &str, body: Value) -> Value {
    match try_call(ctx, op, body).await {
        Ok(v) => v,
        Err(e) => panic!("{op} failed: {e:?}"),
    }
}

/// The AWS error code `op` answers with.
async fn code(ctx: &Ctx, op: &str, body: Value) -> &'static str {
    let e = try_call(ctx, op, body).await.expect_err(op);
    assert!(e.is_client_fault(), "{op}: {e:?}");
    wire_error(&e, ECR.name(), Protocol::Json).code
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

async fn upload(ctx: &Ctx, repo: &str, blob: &[u8]) -> String {
    let id = call(ctx, "InitiateLayerUpload", json!({"repositoryName": repo})).await["uploadId"].clone();
    let b64 = base64::engine::general_purpose::STANDARD.encode(blob);
    let part = json!({"repositoryName": repo, "uploadId": id, "partFirstByte": 0,
                      "partLastByte": blob.len() - 1, "layerPartBlob": b64});
    assert_eq!(call(ctx, "UploadLayerPart", part).await["lastByteReceived"], blob.len() - 1);
    let digest = sha256(blob);
    call(ctx, "CompleteLayerUpload", json!({"repositoryName": repo, "uploadId": id, "layerDigests": [digest]})).await;
    digest
}

async fn manifest(ctx: &Ctx, repo: &str, content: &str) -> String {
    let config = format!("{{\"os\":\"linux\",\"architecture\":\"amd64\",\"c\":\"{content}\"}}");
    let (layer, cfg) = (upload(ctx, repo, content.as_bytes()).await, upload(ctx, repo, config.as_bytes()).await);
    json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
           "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cfg, "size": config.len()},
           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer, "size": content.len()}]})
    .to_string()
}

#[tokio::test]
async fn errors_use_ecr_codes() {
    let ctx = Ctx::in_memory("123456789012", "us-east-1");
    call(&ctx, "CreateRepository", json!({"repositoryName": "app"})).await;
    assert_eq!(
        code(&ctx, "CreateRepository", json!({"repositoryName": "app"})).await,
        "RepositoryAlreadyExistsException"
    );
    assert_eq!(code(&ctx, "CreateRepository", json!({"repositoryName": "App"})).await, "InvalidParameterException");
    assert_eq!(code(&ctx, "CreateRepository", json!({"repositoryName": "a"})).await, "InvalidParameterException");
    let no_filters = json!({"repositoryName": "b1", "imageTagMutability": "IMMUTABLE_WITH_EXCLUSION"});
    assert_eq!(code(&ctx, "CreateRepository", no_filters).await, "InvalidParameterException");
    let tags: Vec<Value> = (0..51).map(|i| json!({"Key": format!("k{i}"), "Value": "v"})).collect();
    assert_eq!(
        code(&ctx, "CreateRepository", json!({"repositoryName": "b2", "tags": tags})).await,
        "TooManyTagsException"
    );
    let missing = json!({"repositoryName": "nope"});
    for op in ["DescribeImages", "ListImages", "GetLifecyclePolicy", "GetRepositoryPolicy", "InitiateLayerUpload"] {
        assert_eq!(code(&ctx, op, missing.clone()).await, "RepositoryNotFoundException", "{op}");
    }
    let app = json!({"repositoryName": "app"});
    assert_eq!(code(&ctx, "GetLifecyclePolicy", app.clone()).await, "LifecyclePolicyNotFoundException");
    assert_eq!(code(&ctx, "GetLifecyclePolicyPreview", app.clone()).await, "LifecyclePolicyPreviewNotFoundException");
    assert_eq!(code(&ctx, "GetRepositoryPolicy", app.clone()).await, "RepositoryPolicyNotFoundException");
    let bad_policy = json!({"repositoryName": "app", "lifecyclePolicyText": format!("{:<100}", "{\"rules\": []}")});
    assert_eq!(code(&ctx, "PutLifecyclePolicy", bad_policy).await, "InvalidParameterException");
    let bad_upload = json!({"repositoryName": "app", "uploadId": "00000000-0000-0000-0000-000000000000",
                            "partFirstByte": 0, "partLastByte": 0, "layerPartBlob": "eA=="});
    assert_eq!(code(&ctx, "UploadLayerPart", bad_upload).await, "UploadNotFoundException");
    let described = json!({"repositoryName": "app", "imageIds": [{"imageTag": "v1"}]});
    assert_eq!(code(&ctx, "DescribeImages", described).await, "ImageNotFoundException");
}

#[tokio::test]
async fn push_with_the_api_and_immutable_tags() {
    let ctx = Ctx::in_memory("123456789012", "us-east-1");
    call(&ctx, "CreateRepository", json!({"repositoryName": "app", "imageTagMutability": "IMMUTABLE"})).await;
    let m1 = manifest(&ctx, "app", "one").await;
    let out = call(&ctx, "PutImage", json!({"repositoryName": "app", "imageManifest": m1, "imageTag": "v1"})).await;
    assert_eq!(out["image"]["imageId"]["imageDigest"], sha256(m1.as_bytes()));
    let m2 = manifest(&ctx, "app", "two").await;
    let moved = json!({"repositoryName": "app", "imageManifest": m2, "imageTag": "v1"});
    assert_eq!(code(&ctx, "PutImage", moved).await, "ImageTagAlreadyExistsException");
    let again = json!({"repositoryName": "app", "imageManifest": m1, "imageTag": "v1"});
    assert_eq!(code(&ctx, "PutImage", again).await, "ImageAlreadyExistsException");
    let wrong = json!({"repositoryName": "app", "imageManifest": m2, "imageDigest": sha256(b"other")});
    assert_eq!(code(&ctx, "PutImage", wrong).await, "ImageDigestDoesNotMatchException");
    let images = call(&ctx, "DescribeImages", json!({"repositoryName": "app"})).await;
    let details = images["imageDetails"].as_array().unwrap();
    assert_eq!(details.len(), 1);
    assert_eq!(details[0]["imageSizeInBytes"], 3);
    let got = call(&ctx, "BatchGetImage", json!({"repositoryName": "app", "imageIds": [{"imageTag": "v1"}]})).await;
    assert_eq!(got["images"][0]["imageManifest"], m1);
    assert_eq!(code(&ctx, "DeleteRepository", json!({"repositoryName": "app"})).await, "RepositoryNotEmptyException");
    call(&ctx, "DeleteRepository", json!({"repositoryName": "app", "force": true})).await;
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// Whatever strings a client sends for names, tags, digests and policies, ECR answers a
    /// client error or a result, never a server fault or a panic.
    #[test]
    fn arbitrary_requests_are_never_server_faults(name in "\\PC{0,40}", tag in "\\PC{0,20}", text in "\\PC{0,200}") {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let ctx = Ctx::in_memory("123456789012", "us-east-1");
            call(&ctx, "CreateRepository", json!({"repositoryName": "app"})).await;
            let requests = [
                ("CreateRepository", json!({"repositoryName": name})),
                ("DescribeImages", json!({"repositoryName": "app", "imageIds": [{"imageTag": tag}]})),
                ("BatchGetImage", json!({"repositoryName": "app", "imageIds": [{"imageDigest": tag}]})),
                ("BatchDeleteImage", json!({"repositoryName": "app", "imageIds": [{"imageTag": tag}]})),
                ("PutImage", json!({"repositoryName": "app", "imageManifest": text, "imageTag": tag})),
                ("PutLifecyclePolicy", json!({"repositoryName": "app", "lifecyclePolicyText": format!("{text:<100}")})),
                ("SetRepositoryPolicy", json!({"repositoryName": "app", "policyText": text})),
                ("TagResource", json!({"resourceArn": name, "tags": [{"Key": tag, "Value": text}]})),
                ("GetDownloadUrlForLayer", json!({"repositoryName": "app", "layerDigest": format!("sha256:{tag}")})),
            ];
            for (op, body) in requests {
                if let Err(e) = try_call(&ctx, op, body).await {
                    assert!(e.is_client_fault(), "{op}: {e:?}");
                }
            }
        });
    }
}
