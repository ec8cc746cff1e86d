//! The OCI Distribution v2 endpoint (`/v2/…`) that docker, podman, skopeo and the agents
//! talk to: authentication (Basic `AWS:<password>` or a Bearer token from `/v2/token`), then
//! pull, push, content discovery and content management as the distribution spec words them.
//!
//! This module only translates HTTP to the storage API in `storage.rs` and back; it never
//! touches the store or the blob files itself, and it streams request and response bodies
//! (blobs are never collected in memory; only manifests, capped at 4 MiB, are).

use crate::storage::{ImageRef, RegistryError};
use crate::{Registry, auth::TokenScope};
use base64::Engine;
use bytes::Bytes;
use futures_util::StreamExt;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyDataStream, BodyExt, Full, Limited, StreamBody};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::convert::Infallible;

/// The response body type of the whole server.
pub type Body = BoxBody<Bytes, Infallible>;

/// Largest manifest accepted (as ECR).
const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// Default and maximum page size of tag and catalog listings.
const MAX_PAGE: usize = 1000;

/// Is this request for the registry endpoint?
pub fn is_registry_path(path: &str) -> bool {
    path == "/v2" || path.starts_with("/v2/")
}

/// A registry error response: the spec's `{"errors":[…]}` body.
struct Failure {
    status: StatusCode,
    code: &'static str,
    message: String,
    headers: Vec<(&'static str, String)>,
}

impl Failure {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Failure {
        Failure {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST),
            code,
            message: message.into(),
            headers: Vec::new(),
        }
    }
}

impl From<RegistryError> for Failure {
    fn from(e: RegistryError) -> Failure {
        let message = e.to_string();
        match &e {
            RegistryError::RepositoryNotFound(_) => Failure::new(404, "NAME_UNKNOWN", message),
            RegistryError::ImageNotFound(_) => Failure::new(404, "MANIFEST_UNKNOWN", message),
            RegistryError::TagImmutable { .. } | RegistryError::TagInvalid(_) => {
                Failure::new(400, "TAG_INVALID", message)
            }
            RegistryError::ManifestInvalid(_) => Failure::new(400, "MANIFEST_INVALID", message),
            RegistryError::ManifestBlobUnknown(_) => Failure::new(400, "MANIFEST_BLOB_UNKNOWN", message),
            RegistryError::DigestInvalid(_) | RegistryError::DigestMismatch { .. } => {
                Failure::new(400, "DIGEST_INVALID", message)
            }
            RegistryError::BlobUnknown(_) => Failure::new(404, "BLOB_UNKNOWN", message),
            RegistryError::UploadUnknown(_) => Failure::new(404, "BLOB_UPLOAD_UNKNOWN", message),
            RegistryError::UploadRange { offset, .. } => {
                let mut f = Failure::new(416, "BLOB_UPLOAD_INVALID", message);
                f.headers.push(("range", range_header(*offset)));
                f
            }
            RegistryError::UploadEmpty(_) | RegistryError::BodyRead => {
                Failure::new(400, "BLOB_UPLOAD_INVALID", message)
            }
            RegistryError::Conflict(_) => Failure::new(429, "TOOMANYREQUESTS", message),
            RegistryError::RepositoryAlreadyExists(_) | RegistryError::RepositoryNotEmpty(_) => {
                Failure::new(400, "UNSUPPORTED", message)
            }
            RegistryError::Store(_) | RegistryError::Io { .. } => {
                tracing::error!(error = %e, cause = ?std::error::Error::source(&e), "registry fault");
                Failure::new(500, "UNKNOWN", "Internal error in the registry.")
            }
        }
    }
}

/// `Range: 0-<n-1>` of an upload holding `n` bytes (`0-0` when empty, as Distribution).
fn range_header(n: u64) -> String {
    format!("0-{}", n.saturating_sub(1))
}

fn base(status: StatusCode, body: Body) -> Response<Body> {
    let mut resp = Response::new(body);
    *resp.status_mut() = status;
    resp.headers_mut().insert("docker-distribution-api-version", HeaderValue::from_static("registry/2.0"));
    resp
}

fn empty(status: u16) -> Response<Body> {
    let mut r = base(StatusCode::from_u16(status).unwrap_or(StatusCode::OK), Full::new(Bytes::new()).boxed());
    r.headers_mut().insert(http::header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    r
}

fn json_response(status: u16, body: &Value) -> Response<Body> {
    let bytes = Bytes::from(serde_json::to_vec(body).unwrap_or_default());
    let mut r = base(StatusCode::from_u16(status).unwrap_or(StatusCode::OK), Full::new(bytes).boxed());
    r.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn set(resp: &mut Response<Body>, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

fn failure_response(f: Failure, head: bool) -> Response<Body> {
    let body = json!({"errors": [{"code": f.code, "message": f.message, "detail": {}}]});
    let mut resp = if head {
        let mut r = empty(f.status.as_u16());
        r.headers_mut().remove(http::header::CONTENT_LENGTH);
        r
    } else {
        json_response(f.status.as_u16(), &body)
    };
    for (name, value) in f.headers {
        set(&mut resp, name, &value);
    }
    resp
}

/// What a `/v2/<name>/…` path names.
#[derive(Debug, PartialEq, Eq)]
enum Route<'a> {
    Base,
    Token,
    Catalog,
    Tags(&'a str),
    Manifest(&'a str, &'a str),
    Referrers(&'a str, &'a str),
    Uploads(&'a str),
    Upload(&'a str, &'a str),
    Blob(&'a str, &'a str),
}

fn route(path: &str) -> Option<Route<'_>> {
    let rest = match path {
        "/v2" | "/v2/" => return Some(Route::Base),
        "/v2/token" => return Some(Route::Token),
        "/v2/_catalog" => return Some(Route::Catalog),
        p => p.strip_prefix("/v2/")?,
    };
    if let Some(name) = rest.strip_suffix("/tags/list") {
        return Some(Route::Tags(name));
    }
    if let Some(name) = rest.strip_suffix("/blobs/uploads").or_else(|| rest.strip_suffix("/blobs/uploads/")) {
        return Some(Route::Uploads(name));
    }
    for marker in ["/blobs/uploads/", "/manifests/", "/referrers/", "/blobs/"] {
        if let Some(i) = rest.rfind(marker) {
            let (name, what) = (&rest[..i], &rest[i + marker.len()..]);
            if what.is_empty() || what.contains('/') {
                continue;
            }
            return Some(match marker {
                "/blobs/uploads/" => Route::Upload(name, what),
                "/manifests/" => Route::Manifest(name, what),
                "/referrers/" => Route::Referrers(name, what),
                _ => Route::Blob(name, what),
            });
        }
    }
    None
}

/// The distribution spec's repository name grammar (path components of lowercase
/// alphanumerics joined by `.`, `_`, `__` or runs of `-`).
fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name.split('/').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter().all(|x| x.is_ascii_lowercase() || x.is_ascii_digit() || matches!(x, b'.' | b'_' | b'-'))
                && !c.contains("..")
                && !c.contains("___")
                && !c.contains("._")
                && !c.contains("_.")
        })
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The caller's account, from `Authorization: Basic base64(AWS:<password>)` or
/// `Authorization: Bearer <token>`.
fn authenticate(reg: &Registry, headers: &HeaderMap) -> Option<TokenScope> {
    let auth = header(headers, "authorization")?;
    let (scheme, value) = auth.split_once(' ')?;
    let password = if scheme.eq_ignore_ascii_case("basic") {
        let raw = base64::engine::general_purpose::STANDARD.decode(value.trim()).ok()?;
        let raw = String::from_utf8(raw).ok()?;
        let (user, password) = raw.split_once(':')?;
        if user != "AWS" {
            return None;
        }
        password.to_string()
    } else if scheme.eq_ignore_ascii_case("bearer") {
        value.trim().to_string()
    } else {
        return None;
    };
    reg.verify_password(&password)
}

/// `http://<the host the client used>`: the realm must be reachable the way the client came.
fn origin(reg: &Registry, headers: &HeaderMap) -> String {
    format!("http://{}", header(headers, "host").unwrap_or(reg.host()))
}

fn unauthorized(reg: &Registry, headers: &HeaderMap, scope: Option<String>) -> Response<Body> {
    let origin = origin(reg, headers);
    let service = origin.trim_start_matches("http://").to_string();
    let mut challenge = format!("Bearer realm=\"{origin}/v2/token\",service=\"{service}\"");
    if let Some(scope) = scope {
        challenge.push_str(&format!(",scope=\"{scope}\""));
    }
    let mut f = Failure::new(401, "UNAUTHORIZED", "Authentication required: docker login with an ECR token.");
    f.headers.push(("www-authenticate", challenge));
    failure_response(f, false)
}

/// Handles one `/v2…` request.
pub async fn handle<B>(reg: &Registry, req: Request<B>) -> Response<Body>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let head = req.method() == Method::HEAD;
    match serve(reg, req).await {
        Ok(resp) => resp,
        Err(f) => failure_response(f, head),
    }
}

fn query(req_query: Option<&str>) -> HashMap<String, String> {
    form_urlencoded::parse(req_query.unwrap_or_default().as_bytes()).into_owned().collect()
}

async fn serve<B>(reg: &Registry, req: Request<B>) -> Result<Response<Body>, Failure>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (parts, body) = req.into_parts();
    let Some(route) = route(parts.uri.path()) else {
        return Err(Failure::new(404, "NAME_INVALID", format!("No registry resource at {}", parts.uri.path())));
    };
    let q = query(parts.uri.query());
    if route == Route::Token {
        return token(reg, &parts.method, &parts.headers, body).await;
    }
    let repo_scope = match &route {
        Route::Tags(n)
        | Route::Manifest(n, _)
        | Route::Referrers(n, _)
        | Route::Uploads(n)
        | Route::Upload(n, _)
        | Route::Blob(n, _) => Some(format!("repository:{n}:pull,push")),
        Route::Catalog => Some("registry:catalog:*".to_string()),
        _ => None,
    };
    let presigned = || match (&route, &parts.method) {
        (Route::Blob(..), &Method::GET | &Method::HEAD) => reg.verify_presigned(parts.uri.path(), &q),
        _ => None,
    };
    let Some(scope) = authenticate(reg, &parts.headers).or_else(presigned) else {
        return Ok(unauthorized(reg, &parts.headers, repo_scope));
    };
    let (account, region) = (scope.account.as_str(), scope.region.as_str());
    if let Route::Tags(n)
    | Route::Manifest(n, _)
    | Route::Referrers(n, _)
    | Route::Uploads(n)
    | Route::Upload(n, _)
    | Route::Blob(n, _) = &route
        && !valid_name(n)
    {
        return Err(Failure::new(400, "NAME_INVALID", format!("Invalid repository name '{n}'")));
    }
    let m = &parts.method;
    let h = &parts.headers;
    match route {
        Route::Base => Ok(json_response(200, &json!({}))),
        Route::Token => unreachable!("handled above"),
        Route::Catalog if *m == Method::GET => catalog(reg, account, region, &q).await,
        Route::Tags(name) if *m == Method::GET => tags(reg, account, region, name, &q).await,
        Route::Manifest(name, reference) => match *m {
            Method::GET | Method::HEAD => get_manifest(reg, account, region, name, reference, *m == Method::HEAD).await,
            Method::PUT => put_manifest(reg, account, region, name, reference, h, body).await,
            Method::DELETE => delete_manifest(reg, account, region, name, reference).await,
            _ => Err(unsupported(m)),
        },
        Route::Referrers(name, digest) if *m == Method::GET => {
            referrers(reg, account, region, name, digest, q.get("artifactType")).await
        }
        Route::Blob(name, digest) => match *m {
            Method::GET | Method::HEAD => get_blob(reg, account, region, name, digest, h, *m == Method::HEAD).await,
            Method::DELETE => {
                check_digest(digest)?;
                reg.delete_blob(account, region, name, digest).await?;
                Ok(empty(202))
            }
            _ => Err(unsupported(m)),
        },
        Route::Uploads(name) if *m == Method::POST => start_upload(reg, account, region, name, &q, body).await,
        Route::Upload(name, id) => match *m {
            Method::GET => {
                let n = reg.upload_offset(account, region, name, id).await?;
                Ok(upload_accepted(204, name, id, n))
            }
            Method::PATCH => {
                let start = content_range_start(h)?;
                let n = reg.append_upload(account, region, name, id, start, BodyDataStream::new(body)).await?;
                Ok(upload_accepted(202, name, id, n))
            }
            Method::PUT => finish_upload(reg, account, region, name, id, &q, h, body).await,
            Method::DELETE => {
                reg.cancel_upload(account, region, name, id).await?;
                Ok(empty(204))
            }
            _ => Err(unsupported(m)),
        },
        _ => Err(unsupported(m)),
    }
}

fn unsupported(m: &Method) -> Failure {
    Failure::new(405, "UNSUPPORTED", format!("{m} is not supported on this resource"))
}

fn check_digest(digest: &str) -> Result<(), Failure> {
    crate::blobs::Digest::parse(digest).map(|_| ()).ok_or_else(|| RegistryError::DigestInvalid(digest.into()).into())
}

/// The token endpoint of the Bearer flow: Basic `AWS:<password>` in, the same credential
/// back as the bearer token (it is already signed and expiring).
async fn token<B>(reg: &Registry, method: &Method, headers: &HeaderMap, body: B) -> Result<Response<Body>, Failure>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let password = match *method {
        Method::GET => authenticate(reg, headers).and_then(|_| basic_password(headers)),
        Method::POST => {
            let form = Limited::new(body, 64 << 10).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let form: HashMap<String, String> = form_urlencoded::parse(&form).into_owned().collect();
            form.get("password")
                .filter(|_| form.get("username").is_some_and(|u| u == "AWS"))
                .cloned()
                .or_else(|| basic_password(headers))
        }
        _ => return Err(unsupported(method)),
    };
    let Some((password, scope)) = password.and_then(|p| reg.verify_password(&p).map(|s| (p, s))) else {
        let origin = origin(reg, headers);
        let mut f =
            Failure::new(401, "UNAUTHORIZED", "Invalid or missing credentials: use an ECR authorization token.");
        f.headers.push(("www-authenticate", format!("Basic realm=\"{origin}/v2/token\"")));
        return Err(f);
    };
    let now = crate::auth::now_secs();
    Ok(json_response(
        200,
        &json!({
            "token": password,
            "access_token": password,
            "expires_in": scope.expires_at.saturating_sub(now),
            "issued_at": wharf_types::iso8601(now as f64),
        }),
    ))
}

fn basic_password(headers: &HeaderMap) -> Option<String> {
    let (scheme, value) = header(headers, "authorization")?.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = String::from_utf8(base64::engine::general_purpose::STANDARD.decode(value.trim()).ok()?).ok()?;
    Some(raw.split_once(':')?.1.to_string())
}

fn page_size(q: &HashMap<String, String>) -> Result<Option<usize>, Failure> {
    match q.get("n") {
        None => Ok(None),
        Some(n) => n
            .parse::<usize>()
            .map(|n| Some(n.min(MAX_PAGE)))
            .map_err(|_| Failure::new(400, "PAGINATION_NUMBER_INVALID", format!("n={n} is not a number"))),
    }
}

fn link_next(resp: &mut Response<Body>, path: &str, n: usize, last: &str) {
    let last: String = form_urlencoded::byte_serialize(last.as_bytes()).collect();
    set(resp, "link", &format!("<{path}?n={n}&last={last}>; rel=\"next\""));
}

async fn catalog(
    reg: &Registry,
    account: &str,
    region: &str,
    q: &HashMap<String, String>,
) -> Result<Response<Body>, Failure> {
    let n = page_size(q)?;
    let mut names: Vec<String> =
        reg.list_repositories(account, region).await?.into_iter().map(|r| r.repository_name).collect();
    names.sort();
    if let Some(last) = q.get("last") {
        names.retain(|x| x > last);
    }
    let limit = n.unwrap_or(MAX_PAGE);
    let more = names.len() > limit;
    names.truncate(limit);
    let mut resp = json_response(200, &json!({"repositories": names}));
    if more && let Some(last) = names.last() {
        link_next(&mut resp, "/v2/_catalog", limit, last);
    }
    Ok(resp)
}

async fn tags(
    reg: &Registry,
    account: &str,
    region: &str,
    name: &str,
    q: &HashMap<String, String>,
) -> Result<Response<Body>, Failure> {
    let n = page_size(q)?;
    let (tags, more) = match n {
        Some(0) => (Vec::new(), false),
        n => reg.list_tags(account, region, name, q.get("last").map(String::as_str), n.unwrap_or(0)).await?,
    };
    let mut resp = json_response(200, &json!({"name": name, "tags": tags}));
    if more && let (Some(n), Some(last)) = (n, tags.last()) {
        link_next(&mut resp, &format!("/v2/{name}/tags/list"), n, last);
    }
    Ok(resp)
}

async fn get_manifest(
    reg: &Registry,
    account: &str,
    region: &str,
    name: &str,
    reference: &str,
    head: bool,
) -> Result<Response<Body>, Failure> {
    let r = ImageRef::parse(reference);
    if let ImageRef::Digest(d) = &r {
        check_digest(d)?;
    }
    let Some((image, bytes)) = reg.get_manifest(account, region, name, &r).await? else {
        return Err(RegistryError::ImageNotFound(r.to_string()).into());
    };
    let len = bytes.len();
    // Before answering, so ECR shows the pull as soon as the client has the manifest. A HEAD
    // counts: Docker's engine resolves a tag with HEAD and skips the GET when it already holds
    // the image, which is still a pull from the registry's point of view.
    if let Err(e) = reg.record_pull(account, region, name, &image.image_digest).await {
        tracing::debug!(error = %e, "could not record a pull");
    }
    let mut resp = base(StatusCode::OK, Full::new(if head { Bytes::new() } else { bytes }).boxed());
    set(&mut resp, "content-type", &image.image_manifest_media_type);
    set(&mut resp, "content-length", &len.to_string());
    set(&mut resp, "docker-content-digest", &image.image_digest);
    set(&mut resp, "etag", &format!("\"{}\"", image.image_digest));
    Ok(resp)
}

async fn put_manifest<B>(
    reg: &Registry,
    account: &str,
    region: &str,
    name: &str,
    reference: &str,
    headers: &HeaderMap,
    body: B,
) -> Result<Response<Body>, Failure>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let bytes = Limited::new(body, MAX_MANIFEST_BYTES)
        .collect()
        .await
        .map_err(|_| {
            Failure::new(413, "MANIFEST_INVALID", format!("A manifest is at most {MAX_MANIFEST_BYTES} bytes"))
        })?
        .to_bytes();
    let image =
        reg.put_manifest(account, region, name, Some(reference), header(headers, "content-type"), bytes).await?;
    let mut resp = empty(201);
    set(&mut resp, "location", &format!("/v2/{name}/manifests/{}", image.image_digest));
    set(&mut resp, "docker-content-digest", &image.image_digest);
    if let Some(subject) = &image.subject {
        set(&mut resp, "oci-subject", subject);
    }
    Ok(resp)
}

async fn delete_manifest(
    reg: &Registry,
    account: &str,
    region: &str,
    name: &str,
    reference: &str,
) -> Result<Response<Body>, Failure> {
    match ImageRef::parse(reference) {
        ImageRef::Digest(d) => {
            check_digest(&d)?;
            reg.delete_image(account, region, name, &d).await?;
        }
        ImageRef::Tag(t) => {
            reg.untag_image(account, region, name, &t, false).await?;
        }
    }
    Ok(empty(202))
}

async fn referrers(
    reg: &Registry,
    account: &str,
    region: &str,
    name: &str,
    digest: &str,
    artifact_type: Option<&String>,
) -> Result<Response<Body>, Failure> {
    check_digest(digest)?;
    let mut manifests = Vec::new();
    for image in reg.referrers(account, region, name, digest).await? {
        if artifact_type.is_some_and(|t| image.artifact_media_type.as_ref() != Some(t)) {
            continue;
        }
        let r = ImageRef::Digest(image.image_digest.clone());
        let Some((_, bytes)) = reg.get_manifest(account, region, name, &r).await? else { continue };
        let doc: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let mut d = json!({
            "mediaType": image.image_manifest_media_type,
            "digest": image.image_digest,
            "size": bytes.len(),
        });
        if let Some(t) = &image.artifact_media_type {
            d["artifactType"] = json!(t);
        }
        if let Some(a) = doc.get("annotations") {
            d["annotations"] = a.clone();
        }
        manifests.push(d);
    }
    let index = json!({"schemaVersion": 2, "mediaType": crate::OCI_INDEX, "manifests": manifests});
    let mut resp = json_response(200, &index);
    set(&mut resp, "content-type", crate::OCI_INDEX);
    if artifact_type.is_some() {
        set(&mut resp, "oci-filters-applied", "artifactType");
    }
    Ok(resp)
}

/// Parses `Range: bytes=a-b` / `bytes=a-` / `bytes=-n` against a blob of `size` bytes.
fn parse_range(value: &str, size: u64) -> Option<std::ops::Range<u64>> {
    let spec = value.trim().strip_prefix("bytes=")?;
    if spec.contains(',') {
        return None;
    }
    let (a, b) = spec.split_once('-')?;
    let (start, end) = match (a.trim(), b.trim()) {
        ("", n) => {
            let n: u64 = n.parse().ok()?;
            (size.checked_sub(n.min(size))?, size)
        }
        (a, "") => (a.parse().ok()?, size),
        (a, b) => (a.parse().ok()?, b.parse::<u64>().ok()?.saturating_add(1).min(size)),
    };
    (start < end && start < size).then_some(start..end)
}

async fn get_blob(
    reg: &Registry,
    account: &str,
    region: &str,
    name: &str,
    digest: &str,
    headers: &HeaderMap,
    head: bool,
) -> Result<Response<Body>, Failure> {
    check_digest(digest)?;
    let unknown = || Failure::from(RegistryError::BlobUnknown(digest.into()));
    if reg.get_repository(account, region, name).await?.is_none() {
        return Err(RegistryError::RepositoryNotFound(name.into()).into());
    }
    let Some(size) = reg.blob_size(account, region, name, digest).await? else { return Err(unknown()) };
    let range = match header(headers, "range") {
        Some(v) => match parse_range(v, size) {
            Some(r) => Some(r),
            None => {
                let mut f = Failure::new(416, "BLOB_UNKNOWN", format!("Range '{v}' is not satisfiable"));
                f.headers.push(("content-range", format!("bytes */{size}")));
                return Err(f);
            }
        },
        None => None,
    };
    let partial = range.is_some();
    let mut resp = if head {
        let mut r =
            base(if partial { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK }, Full::new(Bytes::new()).boxed());
        let len = range.as_ref().map_or(size, |r| r.end - r.start);
        set(&mut r, "content-length", &len.to_string());
        if let Some(range) = &range {
            set(&mut r, "content-range", &format!("bytes {}-{}/{size}", range.start, range.end - 1));
        }
        r
    } else {
        let Some((meta, got, stream)) = reg.read_blob(account, region, name, digest, range).await? else {
            return Err(unknown());
        };
        // A task pumps the file into a small channel: backpressure from the client, and a
        // body that is `Sync` as the server's body type requires.
        let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(4);
        let mut stream = stream;
        tokio::spawn(async move {
            while let Some(chunk) = stream.next().await {
                if tx.send(chunk).await.is_err() {
                    break;
                }
            }
        });
        let frames = futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|b| (Ok::<_, Infallible>(http_body::Frame::data(b)), rx))
        });
        let body = BodyExt::boxed(StreamBody::new(frames));
        let mut r = base(if partial { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK }, body);
        set(&mut r, "content-length", &(got.end - got.start).to_string());
        if partial {
            set(&mut r, "content-range", &format!("bytes {}-{}/{}", got.start, got.end - 1, meta.size));
        }
        r
    };
    set(&mut resp, "content-type", "application/octet-stream");
    set(&mut resp, "docker-content-digest", digest);
    set(&mut resp, "accept-ranges", "bytes");
    set(&mut resp, "etag", &format!("\"{digest}\""));
    Ok(resp)
}

fn upload_accepted(status: u16, name: &str, id: &str, offset: u64) -> Response<Body> {
    let mut resp = empty(status);
    set(&mut resp, "location", &format!("/v2/{name}/blobs/uploads/{id}"));
    set(&mut resp, "range", &range_header(offset));
    set(&mut resp, "docker-upload-uuid", id);
    resp
}

fn blob_created(name: &str, digest: &str) -> Response<Body> {
    let mut resp = empty(201);
    set(&mut resp, "location", &format!("/v2/{name}/blobs/{digest}"));
    set(&mut resp, "docker-content-digest", digest);
    resp
}

/// `Content-Range: <start>-<end>` of a PATCH: the start must be the upload's length.
fn content_range_start(headers: &HeaderMap) -> Result<Option<u64>, Failure> {
    let Some(v) = header(headers, "content-range") else { return Ok(None) };
    let v = v.trim().trim_start_matches("bytes").trim_start_matches([' ', '=']);
    let start = v.split_once('-').and_then(|(a, _)| a.trim().parse::<u64>().ok());
    match start {
        Some(s) => Ok(Some(s)),
        None => Err(Failure::new(416, "BLOB_UPLOAD_INVALID", format!("Content-Range '{v}' is invalid"))),
    }
}

async fn start_upload<B>(
    reg: &Registry,
    account: &str,
    region: &str,
    name: &str,
    q: &HashMap<String, String>,
    body: B,
) -> Result<Response<Body>, Failure>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    if let Some(digest) = q.get("mount") {
        check_digest(digest)?;
        if let Some(from) = q.get("from").filter(|f| valid_name(f))
            && reg.mount_blob(account, region, name, from, digest).await?
        {
            return Ok(blob_created(name, digest));
        }
    }
    let id = reg.start_upload(account, region, name).await?;
    if let Some(digest) = q.get("digest") {
        // Monolithic upload: the whole blob in this POST.
        let result = async {
            check_digest(digest)?;
            reg.append_upload(account, region, name, &id, None, BodyDataStream::new(body)).await?;
            reg.complete_upload(account, region, name, &id, digest).await?;
            Ok::<_, Failure>(())
        }
        .await;
        return match result {
            Ok(_) => Ok(blob_created(name, digest)),
            Err(e) => {
                // The client cannot resume a session it was never told about.
                let _ = reg.cancel_upload(account, region, name, &id).await;
                Err(e)
            }
        };
    }
    Ok(upload_accepted(202, name, &id, 0))
}

#[allow(clippy::too_many_arguments)]
async fn finish_upload<B>(
    reg: &Registry,
    account: &str,
    region: &str,
    name: &str,
    id: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    body: B,
) -> Result<Response<Body>, Failure>
where
    B: http_body::Body<Data = Bytes> + Send + Unpin + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Some(digest) = q.get("digest") else {
        return Err(Failure::new(400, "DIGEST_INVALID", "PUT to finish an upload needs ?digest="));
    };
    check_digest(digest)?;
    let start = content_range_start(headers)?;
    let has_body = header(headers, "content-length").is_none_or(|l| l != "0");
    if has_body || start.is_some() {
        reg.append_upload(account, region, name, id, start, BodyDataStream::new(body)).await?;
    } else {
        reg.upload_offset(account, region, name, id).await?;
    }
    reg.complete_upload(account, region, name, id, digest).await?;
    Ok(blob_created(name, digest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(route("/v2/"), Some(Route::Base));
        assert_eq!(route("/v2/a/b/manifests/latest"), Some(Route::Manifest("a/b", "latest")));
        assert_eq!(route("/v2/a/blobs/uploads/"), Some(Route::Uploads("a")));
        assert_eq!(route("/v2/a/blobs/uploads/123-abc"), Some(Route::Upload("a", "123-abc")));
        assert_eq!(route("/v2/a/blobs/sha256:00"), Some(Route::Blob("a", "sha256:00")));
        assert_eq!(route("/v2/x/manifests/y/tags/list"), Some(Route::Tags("x/manifests/y")));
        assert_eq!(route("/v2/a/referrers/sha256:00"), Some(Route::Referrers("a", "sha256:00")));
        assert_eq!(route("/v3/a"), None);
    }

    #[test]
    fn names_and_ranges() {
        assert!(valid_name("team/app-1"));
        assert!(valid_name("a__b/c.d"));
        assert!(!valid_name("Upper"));
        assert!(!valid_name("a//b"));
        assert!(!valid_name("-a"));
        assert_eq!(parse_range("bytes=0-9", 100), Some(0..10));
        assert_eq!(parse_range("bytes=90-", 100), Some(90..100));
        assert_eq!(parse_range("bytes=-10", 100), Some(90..100));
        assert_eq!(parse_range("bytes=95-200", 100), Some(95..100));
        assert_eq!(parse_range("bytes=100-", 100), None);
        assert_eq!(parse_range("items=0-1", 100), None);
    }
}
