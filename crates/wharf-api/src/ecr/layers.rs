//! Layer uploads and downloads through the API, as ECR offers them alongside the registry
//! endpoint: availability checks, chunked uploads (InitiateLayerUpload, UploadLayerPart,
//! CompleteLayerUpload) and a download URL for a layer.

use super::images::digest_is_valid;
use super::{head, input, load_repository, storage};
use crate::Ctx;
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};
use wharf_types::{Error, Invalid, Resource, Result};

/// The part size ECR suggests (10 MiB); parts may be any size up to the model's 20 MiB.
const PART_SIZE: u64 = 10 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CheckRequest {
    registry_id: Option<String>,
    repository_name: String,
    layer_digests: Vec<String>,
}

pub async fn check_availability(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: CheckRequest = input(v)?;
    let name = &req.repository_name;
    load_repository(ctx, req.registry_id.as_deref(), name).await?;
    let (mut layers, mut failures) = (Vec::new(), Vec::new());
    for d in &req.layer_digests {
        if d.is_empty() {
            failures.push(json!({"layerDigest": d, "failureCode": "MissingLayerDigest", "failureReason": "Layer digest is missing"}));
        } else if !digest_is_valid(d) {
            failures.push(
                json!({"layerDigest": d, "failureCode": "InvalidLayerDigest", "failureReason": "Invalid layer digest"}),
            );
        } else {
            match storage::blob_size(ctx, name, d).await? {
                Some(size) => {
                    layers.push(json!({"layerDigest": d, "layerAvailability": "AVAILABLE", "layerSize": size}))
                }
                None => layers.push(json!({"layerDigest": d, "layerAvailability": "UNAVAILABLE"})),
            }
        }
    }
    Ok(json!({ "layers": layers, "failures": failures }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InitiateRequest {
    registry_id: Option<String>,
    repository_name: String,
}

pub async fn initiate(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: InitiateRequest = input(v)?;
    load_repository(ctx, req.registry_id.as_deref(), &req.repository_name).await?;
    let upload_id = storage::start_upload(ctx, &req.repository_name).await?;
    Ok(json!({ "uploadId": upload_id, "partSize": PART_SIZE }))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PartRequest {
    registry_id: Option<String>,
    repository_name: String,
    upload_id: String,
    part_first_byte: u64,
    part_last_byte: u64,
    layer_part_blob: String,
}

pub async fn upload_part(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: PartRequest = input(v)?;
    let name = &req.repository_name;
    load_repository(ctx, req.registry_id.as_deref(), name).await?;
    let bytes = base64::engine::general_purpose::STANDARD.decode(&req.layer_part_blob).map_err(|_| {
        Error::invalid(
            "layerPartBlob",
            "Invalid parameter at 'layerPartBlob' failed to satisfy constraint: 'must be base64'",
        )
    })?;
    let bad_part = |why: String| {
        Error::invalid_input(
            Invalid::LayerPart,
            format!("The layer part is not valid for upload {}: {why}", req.upload_id),
        )
    };
    let described = (req.part_last_byte + 1).checked_sub(req.part_first_byte);
    if described != Some(bytes.len() as u64) {
        return Err(bad_part(format!(
            "partFirstByte {} to partLastByte {} does not describe the {} bytes sent",
            req.part_first_byte,
            req.part_last_byte,
            bytes.len()
        )));
    }
    let last = storage::upload_part(ctx, name, &req.upload_id, req.part_first_byte, bytes).await?;
    let mut out = head(ctx, name);
    out.insert("uploadId".into(), json!(req.upload_id));
    out.insert("lastByteReceived".into(), json!(last));
    Ok(Value::Object(out))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CompleteRequest {
    registry_id: Option<String>,
    repository_name: String,
    upload_id: String,
    layer_digests: Vec<String>,
}

pub async fn complete(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: CompleteRequest = input(v)?;
    let name = &req.repository_name;
    load_repository(ctx, req.registry_id.as_deref(), name).await?;
    let [digest] = req.layer_digests.as_slice() else {
        return Err(Error::invalid(
            "layerDigests",
            "Invalid parameter at 'layerDigests' failed to satisfy constraint: 'must contain exactly one digest'",
        ));
    };
    if !digest_is_valid(digest) {
        return Err(Error::invalid_input(Invalid::Layer, format!("Invalid layer digest '{digest}'")));
    }
    let digest = storage::complete_upload(ctx, name, &req.upload_id, digest).await?;
    let mut out = head(ctx, name);
    out.insert("uploadId".into(), json!(req.upload_id));
    out.insert("layerDigest".into(), json!(digest));
    Ok(Value::Object(out))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DownloadRequest {
    registry_id: Option<String>,
    repository_name: String,
    layer_digest: String,
}

pub async fn download_url(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DownloadRequest = input(v)?;
    let name = &req.repository_name;
    load_repository(ctx, req.registry_id.as_deref(), name).await?;
    let d = &req.layer_digest;
    if !digest_is_valid(d) || storage::blob_size(ctx, name, d).await?.is_none() {
        return Err(Error::not_found(
            Resource::Layer,
            format!("The layer with digest '{d}' does not exist in the repository with name '{name}'"),
        ));
    }
    Ok(json!({ "downloadUrl": storage::download_url(ctx, name, d), "layerDigest": d }))
}
