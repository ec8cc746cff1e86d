//! The load generator's HTTP side: ECS JSON 1.1 requests signed with `aws-sigv4` (what the
//! Rust SDK uses) each time they are sent, over one keep-alive HTTP/1.1 connection per worker.

use anyhow::Context;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::SystemTime;
use tokio::net::TcpStream;

/// The key both servers are given (moto accepts any; Wharf is started with this one).
pub const ACCESS_KEY_ID: &str = "AKIAWHARFBENCHMARK01";
pub const SECRET_ACCESS_KEY: &str = "wharfBenchmarkSecretKey0123456789abcdefgh";
pub const REGION: &str = "us-east-1";
const TARGET_PREFIX: &str = "AmazonEC2ContainerServiceV20141113";

/// Where one server listens, and the identity requests to it are signed with.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub addr: SocketAddr,
    host: String,
    uri: String,
    identity: Identity,
}

impl Endpoint {
    pub fn new(addr: SocketAddr) -> Self {
        let identity = Credentials::new(ACCESS_KEY_ID, SECRET_ACCESS_KEY, None, None, "bench").into();
        Endpoint { addr, host: addr.to_string(), uri: format!("http://{addr}/"), identity }
    }

    /// `POST /` for ECS operation `op`, signed now for service `ecs` in us-east-1.
    pub fn signed(&self, op: &str, body: &Bytes) -> anyhow::Result<Request<Full<Bytes>>> {
        self.signed_for("ecs", TARGET_PREFIX, op, body)
    }

    /// `POST /` for operation `op` of the JSON 1.1 service with `target_prefix`, signed now
    /// for `signing_name` in us-east-1.
    pub fn signed_for(
        &self,
        signing_name: &str,
        target_prefix: &str,
        op: &str,
        body: &Bytes,
    ) -> anyhow::Result<Request<Full<Bytes>>> {
        self.signed_json(signing_name, "application/x-amz-json-1.1", target_prefix, op, body)
    }

    /// [`Endpoint::signed_for`] with the JSON version's content type (`application/x-amz-json-1.0`
    /// for CloudWatch).
    pub fn signed_json(
        &self,
        signing_name: &str,
        content_type: &str,
        target_prefix: &str,
        op: &str,
        body: &Bytes,
    ) -> anyhow::Result<Request<Full<Bytes>>> {
        let target = format!("{target_prefix}.{op}");
        let mut req = Request::builder()
            .method(Method::POST)
            .uri("/")
            .header(http::header::HOST, &self.host)
            .header(http::header::CONTENT_TYPE, content_type)
            .header("x-amz-target", &target)
            .body(Full::new(body.clone()))?;
        let headers = [("host", self.host.as_str()), ("content-type", content_type), ("x-amz-target", target.as_str())];
        self.sign(&mut req, signing_name, &headers, body)?;
        Ok(req)
    }
}

impl Endpoint {
    /// Adds the SigV4 headers for `signing_name` in us-east-1, signed now over `headers`.
    fn sign(
        &self,
        req: &mut Request<Full<Bytes>>,
        signing_name: &str,
        headers: &[(&str, &str)],
        body: &Bytes,
    ) -> anyhow::Result<()> {
        let params = v4::SigningParams::builder()
            .identity(&self.identity)
            .region(REGION)
            .name(signing_name)
            .time(SystemTime::now())
            .settings(SigningSettings::default())
            .build()?
            .into();
        let signable =
            SignableRequest::new("POST", self.uri.as_str(), headers.iter().copied(), SignableBody::Bytes(body))?;
        let (instructions, _) = sign(signable, &params)?.into_parts();
        instructions.apply_to_request_http1x(req);
        Ok(())
    }

    /// `POST /` of a Query API (form-encoded `Action=…&Version=…&…`), signed now for
    /// `signing_name` in us-east-1.
    pub fn signed_query(&self, signing_name: &str, form: &str) -> anyhow::Result<Request<Full<Bytes>>> {
        const FORM: &str = "application/x-www-form-urlencoded; charset=utf-8";
        let body = Bytes::from(form.to_string());
        let mut req = Request::builder()
            .method(Method::POST)
            .uri("/")
            .header(http::header::HOST, &self.host)
            .header(http::header::CONTENT_TYPE, FORM)
            .body(Full::new(body.clone()))?;
        self.sign(&mut req, signing_name, &[("host", self.host.as_str()), ("content-type", FORM)], &body)?;
        Ok(req)
    }
}

/// What came back.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Reply {
    /// A short description of a failed reply, for the report.
    pub fn describe(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let text: String = text.chars().take(200).collect();
        format!("HTTP {}: {text}", self.status.as_u16())
    }
}

/// One keep-alive HTTP/1.1 connection, reopened when the server closes it.
pub struct Conn {
    endpoint: Endpoint,
    sender: Option<SendRequest<Full<Bytes>>>,
    /// How many times the connection was lost and reopened.
    pub reconnects: u64,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn").field("addr", &self.endpoint.addr).field("reconnects", &self.reconnects).finish()
    }
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await.with_context(|| format!("connecting to {addr}"))?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

impl Conn {
    pub async fn open(endpoint: &Endpoint) -> anyhow::Result<Self> {
        let sender = connect(endpoint.addr).await?;
        Ok(Conn { endpoint: endpoint.clone(), sender: Some(sender), reconnects: 0 })
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    async fn ready(&mut self) -> anyhow::Result<&mut SendRequest<Full<Bytes>>> {
        if let Some(sender) = self.sender.as_mut()
            && sender.ready().await.is_err()
        {
            self.sender = None;
        }
        if self.sender.is_none() {
            self.reconnects += 1;
            self.sender = Some(connect(self.endpoint.addr).await?);
        }
        self.sender.as_mut().context("no connection")
    }

    /// Sends `req` and reads the whole response.
    pub async fn send(&mut self, req: Request<Full<Bytes>>) -> anyhow::Result<Reply> {
        let sender = self.ready().await?;
        let result = async {
            let resp = sender.send_request(req).await?;
            let status = resp.status();
            let body = resp.into_body().collect().await?.to_bytes();
            anyhow::Ok(Reply { status, body })
        }
        .await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    /// Signs and sends one call of `op`.
    pub async fn call(&mut self, op: &str, body: &Bytes) -> anyhow::Result<Reply> {
        let req = self.endpoint.signed(op, body)?;
        self.send(req).await
    }

    /// One ECS call whose failure is an error; the answer as JSON.
    pub async fn ecs(&mut self, op: &str, body: serde_json::Value) -> anyhow::Result<serde_json::Value> {
        let reply = self.call(op, &Bytes::from(body.to_string())).await?;
        if !reply.status.is_success() {
            anyhow::bail!("{op} failed: {}", reply.describe());
        }
        Ok(serde_json::from_slice(&reply.body)?)
    }
}
