//! The agent's client of the control plane: SigV4-signed ECS JSON calls (the same operations
//! the ECS agent uses) and the assignment stream. It is an ordinary AWS client: it holds an
//! access key and an endpoint, nothing more.

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use bytes::Bytes;
use http::{Method, Request};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use std::time::SystemTime;
use wharf_types::agent::StreamMessage;

const ECS_TARGET: &str = "AmazonEC2ContainerServiceV20141113";
const LOGS_TARGET: &str = "Logs_20140328";
const ECR_TARGET: &str = "AmazonEC2ContainerRegistry_V20150921";
const SSM_TARGET: &str = "AmazonSSM";
const SECRETS_MANAGER_TARGET: &str = "secretsmanager";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the control plane at {endpoint}")]
    Unreachable {
        endpoint: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// The control plane answered with an AWS error.
    #[error("{code}: {message}")]
    Api { status: u16, code: String, message: String },
    #[error("invalid request or response: {0}")]
    Invalid(String),
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// Calls one agent has in flight at once (the assignment stream is not one of them). Each
/// call in flight holds a connection; a thousand agents each opening one per running task
/// would cost the control plane tens of thousands of idle connections. The ECS agent's Go
/// client keeps two idle connections per host the same way.
const MAX_CALLS_IN_FLIGHT: usize = 2;

#[derive(Debug, Clone)]
pub struct Client {
    endpoint: String,
    region: String,
    credentials: Credentials,
    http: HyperClient<crate::tls::Connector, Full<Bytes>>,
    calls: std::sync::Arc<tokio::sync::Semaphore>,
}

impl Client {
    pub fn new(endpoint: &str, region: &str, access_key_id: &str, secret_access_key: &str) -> Self {
        Self::with_tls(endpoint, region, access_key_id, secret_access_key, None)
    }

    /// A client that also speaks TLS to an `https://` endpoint, verified as `tls` says.
    pub fn with_tls(
        endpoint: &str,
        region: &str,
        access_key_id: &str,
        secret_access_key: &str,
        tls: Option<std::sync::Arc<rustls::ClientConfig>>,
    ) -> Self {
        let connector = crate::tls::Connector::new(tls);
        Client {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            region: region.to_string(),
            credentials: Credentials::new(access_key_id, secret_access_key, None, None, "wharf-agent"),
            http: HyperClient::builder(TokioExecutor::new())
                .pool_max_idle_per_host(MAX_CALLS_IN_FLIGHT)
                .pool_idle_timeout(std::time::Duration::from_secs(30))
                .build(connector),
            calls: std::sync::Arc::new(tokio::sync::Semaphore::new(MAX_CALLS_IN_FLIGHT)),
        }
    }

    fn signed(
        &self,
        region: &str,
        service: &str,
        method: Method,
        path_and_query: &str,
        headers: &[(&str, &str)],
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>> {
        let uri = format!("{}{path_and_query}", self.endpoint);
        let mut builder = Request::builder().method(method).uri(&uri);
        for (k, v) in headers {
            builder = builder.header(*k, *v);
        }
        let mut req = builder.body(body.to_vec()).map_err(|e| ClientError::Invalid(e.to_string()))?;
        let host = req.uri().authority().map(|a| a.to_string()).unwrap_or_default();
        req.headers_mut()
            .insert(http::header::HOST, host.parse().map_err(|_| ClientError::Invalid("bad endpoint host".into()))?);
        let identity = self.credentials.clone().into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(region)
            .name(service)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()
            .map_err(|e| ClientError::Invalid(e.to_string()))?
            .into();
        let header_pairs: Vec<(String, String)> =
            req.headers().iter().filter_map(|(k, v)| Some((k.to_string(), v.to_str().ok()?.to_string()))).collect();
        let signable = SignableRequest::new(
            req.method().as_str(),
            req.uri().to_string(),
            header_pairs.iter().map(|(k, v)| (k.as_str(), v.as_str())),
            SignableBody::Bytes(req.body()),
        )
        .map_err(|e| ClientError::Invalid(e.to_string()))?;
        let (instructions, _) = sign(signable, &params).map_err(|e| ClientError::Invalid(e.to_string()))?.into_parts();
        instructions.apply_to_request_http1x(&mut req);
        Ok(req.map(|b| Full::new(Bytes::from(b))))
    }

    fn unreachable(&self, e: impl std::error::Error + Send + Sync + 'static) -> ClientError {
        ClientError::Unreachable { endpoint: self.endpoint.clone(), source: Box::new(e) }
    }

    /// Calls ECS operation `op` with `body`; returns the decoded output.
    pub async fn ecs(&self, op: &str, body: &Value) -> Result<Value> {
        self.json11(&self.region, "ecs", &format!("{ECS_TARGET}.{op}"), body).await
    }

    /// Calls CloudWatch Logs operation `op` (the awslogs driver's calls).
    pub async fn logs(&self, op: &str, body: &Value) -> Result<Value> {
        self.json11(&self.region, "logs", &format!("{LOGS_TARGET}.{op}"), body).await
    }

    /// Calls ECR operation `op` (the registry token for pulls).
    pub async fn ecr(&self, op: &str, body: &Value) -> Result<Value> {
        self.json11(&self.region, "ecr", &format!("{ECR_TARGET}.{op}"), body).await
    }

    /// Calls SSM operation `op` in `region` (a task's `secrets` from Parameter Store).
    pub async fn ssm(&self, region: &str, op: &str, body: &Value) -> Result<Value> {
        self.json11(region, "ssm", &format!("{SSM_TARGET}.{op}"), body).await
    }

    /// Calls Secrets Manager operation `op` in `region` (`secrets`, `repositoryCredentials`).
    pub async fn secrets_manager(&self, region: &str, op: &str, body: &Value) -> Result<Value> {
        self.json11(region, "secretsmanager", &format!("{SECRETS_MANAGER_TARGET}.{op}"), body).await
    }

    /// The region the agent's tasks run in.
    pub fn region(&self) -> &str {
        &self.region
    }

    async fn json11(&self, region: &str, service: &str, target: &str, body: &Value) -> Result<Value> {
        let payload = Bytes::from(serde_json::to_vec(body).map_err(|e| ClientError::Invalid(e.to_string()))?);
        let headers = [("x-amz-target", target), ("content-type", "application/x-amz-json-1.1")];
        self.post(region, service, "/", &headers, payload).await
    }

    /// POSTs a signed JSON body to one of the private agent endpoints.
    pub async fn post_json(&self, path: &str, headers: &[(&str, &str)], payload: Bytes) -> Result<Value> {
        self.post(&self.region, "ecs", path, headers, payload).await
    }

    async fn post(
        &self,
        region: &str,
        service: &str,
        path: &str,
        headers: &[(&str, &str)],
        payload: Bytes,
    ) -> Result<Value> {
        // Never closed, so acquiring only waits for a turn.
        let turn = self.calls.acquire().await.map_err(|e| ClientError::Invalid(e.to_string()))?;
        let req = self.signed(region, service, Method::POST, path, headers, payload)?;
        let resp = self.http.request(req).await.map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        let body = resp.into_body().collect().await.map_err(|e| self.unreachable(e))?.to_bytes();
        drop(turn);
        let value: Value =
            if body.is_empty() { Value::Null } else { serde_json::from_slice(&body).unwrap_or(Value::Null) };
        if status >= 300 {
            let code = value.get("__type").and_then(Value::as_str).unwrap_or("UnknownError").to_string();
            let message = value.get("message").and_then(Value::as_str).unwrap_or_default().to_string();
            return Err(ClientError::Api { status, code, message });
        }
        Ok(value)
    }

    /// Opens the assignment stream for one container instance.
    pub async fn assignments(&self, cluster: &str, instance_arn: &str) -> Result<AssignmentStream> {
        self.open_stream(&form_pairs(&[("cluster", cluster), ("containerInstance", instance_arn)])).await
    }

    /// Opens the assignment stream of a host serving the account's FARGATE tasks.
    pub async fn fargate_assignments(&self, host: &str) -> Result<AssignmentStream> {
        self.open_stream(&form_pairs(&[("fargateHost", host)])).await
    }

    async fn open_stream(&self, query: &str) -> Result<AssignmentStream> {
        let path = format!("{}?{query}", wharf_types::agent::ASSIGNMENTS_PATH);
        let req = self.signed(&self.region, "ecs", Method::GET, &path, &[], Bytes::new())?;
        let resp = self.http.request(req).await.map_err(|e| self.unreachable(e))?;
        let status = resp.status().as_u16();
        if status != 200 {
            let body = resp.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
            let value: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            return Err(ClientError::Api {
                status,
                code: value.get("__type").and_then(Value::as_str).unwrap_or("UnknownError").to_string(),
                message: value.get("message").and_then(Value::as_str).unwrap_or_default().to_string(),
            });
        }
        Ok(AssignmentStream { body: resp.into_body(), buf: Vec::new() })
    }
}

fn form_pairs(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| {
            let enc: String = v
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{k}={enc}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Newline-delimited [`StreamMessage`]s from the control plane.
#[derive(Debug)]
pub struct AssignmentStream {
    body: hyper::body::Incoming,
    buf: Vec<u8>,
}

impl AssignmentStream {
    /// The next message; `None` when the server closed the stream.
    pub async fn next(&mut self) -> Option<Result<StreamMessage>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return Some(serde_json::from_slice(&line).map_err(|e| ClientError::Invalid(e.to_string())));
            }
            match self.body.frame().await {
                None => return None,
                Some(Err(e)) => return Some(Err(ClientError::Invalid(format!("stream broke: {e}")))),
                Some(Ok(frame)) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}
