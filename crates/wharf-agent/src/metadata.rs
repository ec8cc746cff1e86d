//! Task metadata endpoint v4, served by the agent on the Docker bridge gateway so containers
//! reach it, and injected as `ECS_CONTAINER_METADATA_URI_V4`: `/v4/<token>` (the container),
//! `/v4/<token>/task`, `/v4/<token>/stats`, `/v4/<token>/task/stats`, in ECS's shapes. A
//! token is `<task id>-<container name>`, so a restarted agent still answers adopted
//! containers. Its views are read-only; it must never change a task. The same listener
//! serves the agent API injected as `ECS_AGENT_URI` (`/api/<token>`): task scale-in
//! protection (`task_protection`), which asks the control plane and changes nothing here.

use crate::agent::Agent;
use crate::runtime::ContainerRuntime;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use serde_json::{Map, Value, json};
use std::convert::Infallible;
use std::sync::Arc;
use tokio::sync::watch;
use wharf_types::agent::Assignment;
use wharf_types::ecs::LaunchType;
use wharf_types::iso8601;

/// The port ECS's agent uses for its own endpoints; reserved from tasks by default.
pub const PORT: u16 = 51679;

/// The token naming one container of one task.
pub fn token(task_arn: &str, container: &str) -> String {
    format!("{}-{container}", crate::spec::task_id(task_arn))
}

/// Binds the endpoint on the bridge gateway (the ECS port, or any free one if another agent
/// holds it) and serves until shutdown. Returns the base URL containers use.
pub async fn serve<R: ContainerRuntime>(agent: Arc<Agent<R>>, mut shutdown: watch::Receiver<bool>) -> Option<String> {
    let gateway = match agent.runtime.bridge_gateway().await {
        Ok(Some(g)) => g,
        other => {
            tracing::warn!(?other, "no bridge gateway: the task metadata endpoint is off");
            return None;
        }
    };
    let listener = match tokio::net::TcpListener::bind((gateway.as_str(), PORT)).await {
        Ok(l) => l,
        Err(_) => tokio::net::TcpListener::bind((gateway.as_str(), 0)).await.ok()?,
    };
    let base = format!("http://{}", listener.local_addr().ok()?);
    tokio::spawn(async move {
        loop {
            let (stream, _) = tokio::select! {
                _ = shutdown.changed() => return,
                a = listener.accept() => match a { Ok(s) => s, Err(_) => continue },
            };
            let agent = agent.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| answer(agent.clone(), req));
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    Some(base)
}

fn respond(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    resp
}

async fn answer<R: ContainerRuntime>(
    agent: Arc<Agent<R>>,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    if let Some(rest) = path.strip_prefix("/api/") {
        return Ok(agent_api(&agent, req, rest).await);
    }
    let rest = path.strip_prefix("/v4/").or_else(|| path.strip_prefix("/v3/")).unwrap_or("");
    let (token, what) = rest.split_once('/').unwrap_or((rest, ""));
    let Some((task_id, container)) = token.split_once('-') else {
        return Ok(respond(StatusCode::NOT_FOUND, json!({"error": "unknown metadata path"})));
    };
    let Some(a) = agent.assignment_by_id(task_id) else {
        return Ok(respond(StatusCode::NOT_FOUND, json!({"error": "unknown task"})));
    };
    let body = match what {
        "" => container_json(&agent, &a, container).await,
        "task" => Some(task_json(&agent, &a).await),
        "stats" => match runtime_id(&a, container) {
            Some(id) => agent.runtime.stats(&id).await.ok().flatten(),
            None => None,
        },
        "task/stats" => {
            let mut out = Map::new();
            for c in &a.task.containers {
                if let Some(id) = &c.runtime_id {
                    out.insert(id.clone(), agent.runtime.stats(id).await.ok().flatten().unwrap_or(Value::Null));
                }
            }
            Some(Value::Object(out))
        }
        _ => None,
    };
    Ok(match body {
        Some(b) => respond(StatusCode::OK, b),
        None => respond(StatusCode::NOT_FOUND, json!({"error": "not found"})),
    })
}

/// `ECS_AGENT_URI`'s paths: `/api/<token>/task-protection/v1/state`.
async fn agent_api<R: ContainerRuntime>(
    agent: &Agent<R>,
    req: Request<hyper::body::Incoming>,
    rest: &str,
) -> Response<Full<Bytes>> {
    let (token, what) = rest.split_once('/').unwrap_or((rest, ""));
    if what != crate::task_protection::PATH {
        return respond(StatusCode::NOT_FOUND, json!({"error": "not found"}));
    }
    let task = token.split_once('-').and_then(|(task_id, _)| agent.assignment_by_id(task_id));
    let method = req.method().clone();
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => Bytes::new(),
    };
    let (status, body) = crate::task_protection::answer(&agent.client, &method, task.as_ref(), &body).await;
    respond(status, body)
}

fn runtime_id(a: &Assignment, container: &str) -> Option<String> {
    a.task.containers.iter().find(|c| c.name == container)?.runtime_id.clone()
}

async fn container_json<R: ContainerRuntime>(agent: &Agent<R>, a: &Assignment, name: &str) -> Option<Value> {
    let c = a.task.containers.iter().find(|c| c.name == name)?;
    let def = a.task_definition.container_definitions.iter().find(|d| d.name.as_deref() == Some(name))?;
    let status = match &c.runtime_id {
        Some(id) => agent.runtime.inspect(id).await.ok().flatten(),
        None => None,
    };
    let mode = crate::spec::network_mode(a);
    let ip = if mode == "awsvpc" {
        a.task.attachments.first().and_then(|at| at.get("details")).and_then(Value::as_array).and_then(|d| {
            d.iter()
                .find(|x| x.get("name").and_then(Value::as_str) == Some("privateIPv4Address"))?
                .get("value")?
                .as_str()
                .map(str::to_string)
        })
    } else {
        status.as_ref().and_then(|s| s.ip_address.clone())
    };
    let log = def.extra.get("logConfiguration");
    Some(json!({
        "DockerId": c.runtime_id,
        "Name": c.name,
        "DockerName": status.as_ref().map(|s| s.name.clone()),
        "Image": def.image,
        "ImageID": status.as_ref().and_then(|s| s.image_id.clone()),
        "Labels": status.as_ref().map(|s| s.labels.clone()).unwrap_or_default(),
        "DesiredStatus": a.task.desired_status,
        "KnownStatus": c.last_status,
        "Limits": {"CPU": def.cpu, "Memory": def.memory.or(def.memory_reservation).unwrap_or(0)},
        "CreatedAt": iso8601(a.task.created_at),
        "StartedAt": a.task.started_at.map(iso8601),
        "Type": "NORMAL",
        "ContainerARN": c.container_arn,
        "LogDriver": log.and_then(|l| l.get("logDriver")).cloned().unwrap_or(json!("json-file")),
        "LogOptions": log.and_then(|l| l.get("options")).cloned().unwrap_or(json!({})),
        "Networks": [{"NetworkMode": mode, "IPv4Addresses": ip.into_iter().collect::<Vec<_>>()}],
        "Ports": c.network_bindings.iter().map(|b| json!({
            "ContainerPort": b.container_port, "Protocol": b.protocol, "HostPort": b.host_port, "HostIp": b.bind_ip
        })).collect::<Vec<_>>(),
    }))
}

async fn task_json<R: ContainerRuntime>(agent: &Agent<R>, a: &Assignment) -> Value {
    let td = &a.task_definition;
    let mut containers = vec![];
    for c in &a.task.containers {
        if let Some(v) = container_json(agent, a, &c.name).await {
            containers.push(v);
        }
    }
    let cpu = a.task.cpu.as_deref().and_then(|c| c.parse::<f64>().ok()).map(|c| c / 1024.0);
    let memory = a.task.memory.as_deref().and_then(|m| m.parse::<i64>().ok());
    let mut task = json!({
        "Cluster": a.task.cluster_arn,
        "TaskARN": a.task.task_arn,
        "Family": td.family,
        "Revision": td.revision.to_string(),
        "DesiredStatus": a.task.desired_status,
        "KnownStatus": a.task.last_status,
        "Limits": {"CPU": cpu, "Memory": memory},
        "PullStartedAt": a.task.pull_started_at.map(iso8601),
        "PullStoppedAt": a.task.pull_stopped_at.map(iso8601),
        "AvailabilityZone": a.task.availability_zone,
        "LaunchType": a.task.launch_type.unwrap_or(LaunchType::Fargate),
        "Containers": containers,
    });
    if let Some(service) = a.task.group.as_deref().and_then(|g| g.strip_prefix("service:")) {
        task["ServiceName"] = json!(service);
    }
    task
}
