//! What each path answers.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::client::{self, Url};
use crate::config::Config;
use crate::http::{Request, Response};
use crate::json;

/// Longest `/work?ms=` honoured.
const MAX_WORK_MS: u64 = 600_000;
/// Timeout for `/peer` and metadata fetches.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Shared by every connection.
#[derive(Debug)]
pub struct State {
    pub config: Config,
    pub started: Instant,
    pub hostname: String,
    /// The address actually bound (the port is known even for `PORT=0`).
    pub local_addr: SocketAddr,
    /// Set by `POST /health?healthy=false`, cleared by `?healthy=true`.
    forced_unhealthy: AtomicBool,
    /// `TASK_ARN`, or what the metadata endpoint said.
    task_arn: Mutex<Option<String>>,
    pub requests: AtomicU64,
}

impl State {
    pub fn new(config: Config, hostname: String, local_addr: SocketAddr, started: Instant) -> Self {
        let task_arn = Mutex::new(config.task_arn.clone());
        Self {
            config,
            started,
            hostname,
            local_addr,
            forced_unhealthy: AtomicBool::new(false),
            task_arn,
            requests: AtomicU64::new(0),
        }
    }

    pub fn healthy(&self) -> bool {
        !(self.config.unhealthy
            || self.forced_unhealthy.load(Ordering::Relaxed)
            || self.config.unhealthy_after.is_some_and(|after| self.started.elapsed() >= after))
    }

    /// `TASK_ARN`, else the metadata endpoint's `TaskARN` once [`Self::look_up_task_arn`] found it.
    fn task_arn(&self) -> Option<String> {
        self.task_arn.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Asks the task metadata endpoint for `TaskARN` every second until it answers (runs on its
    /// own thread, so `/` never waits on it). Returns at once without a metadata endpoint.
    pub fn look_up_task_arn(&self) {
        let Some(uri) = &self.config.metadata_uri else { return };
        let Ok(url) = Url::parse(&format!("{uri}/task")) else { return };
        while self.task_arn().is_none() {
            if let Ok(resp) = client::get(&url, Duration::from_secs(1))
                && resp.status == 200
                && let Some(arn) = json::find_string_field(&String::from_utf8_lossy(&resp.body), "TaskARN")
            {
                *self.task_arn.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(arn);
                return;
            }
            std::thread::sleep(Duration::from_secs(1));
        }
    }
}

/// The response to `req`, which arrived from `remote`.
pub fn route(state: &State, req: &Request, remote: Option<SocketAddr>) -> Response {
    let method = if req.method == "HEAD" { "GET" } else { req.method.as_str() };
    match (method, req.path.as_str()) {
        ("GET", "/") => Response::json(200, identity(state, remote)),
        ("GET", "/health") => {
            if state.healthy() {
                Response::text(200, "ok")
            } else {
                Response::text(500, "unhealthy")
            }
        }
        ("POST", "/health") => match req.param("healthy") {
            Some("false" | "0") => {
                state.forced_unhealthy.store(true, Ordering::Relaxed);
                Response::text(200, "now unhealthy")
            }
            Some("true" | "1") => {
                state.forced_unhealthy.store(false, Ordering::Relaxed);
                Response::text(200, "no longer forced unhealthy")
            }
            _ => Response::text(400, "expected ?healthy=true or ?healthy=false"),
        },
        ("GET", "/env") => {
            Response::json(200, json::object(state.config.env.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
        }
        ("GET", "/headers") => {
            Response::json(200, json::object(req.headers.iter().map(|(k, v)| (k.as_str(), v.as_str()))))
        }
        ("GET", "/peer") => peer(req),
        ("GET", "/metadata") => metadata(state, req),
        ("POST", "/exit") => match req.param("code").unwrap_or("0").parse::<i32>() {
            Ok(code) => Response { exit_after: Some(code), ..Response::text(200, format!("exiting with code {code}")) },
            Err(_) => Response::text(400, "code must be an integer"),
        },
        ("GET", "/work") => match req.param("ms").unwrap_or("100").parse::<u64>() {
            Ok(ms) if ms <= MAX_WORK_MS => {
                let spins = busy(Duration::from_millis(ms));
                Response::json(200, format!(r#"{{"workedMs":{ms},"spins":{spins}}}"#))
            }
            _ => Response::text(400, format!("ms must be a whole number up to {MAX_WORK_MS}")),
        },
        ("GET", "/status") => match req.param("code").map(str::parse::<u16>) {
            Some(Ok(code)) if (200..600).contains(&code) => Response::text(code, format!("status {code}")),
            _ => Response::text(400, "code must be a status between 200 and 599"),
        },
        ("GET", "/file") => match req.param("path") {
            Some(path) => match std::fs::read(path) {
                Ok(bytes) => Response { body: bytes, ..Response::text(200, "") },
                Err(e) => Response::text(404, format!("cannot read {path}: {e}")),
            },
            None => Response::text(400, "expected ?path=/some/file"),
        },
        ("POST", "/file") => match req.param("path") {
            Some(path) => match std::fs::write(path, &req.body) {
                Ok(()) => Response::text(200, format!("wrote {} bytes to {path}", req.body.len())),
                Err(e) => Response::text(500, format!("cannot write {path}: {e}")),
            },
            None => Response::text(400, "expected ?path=/some/file"),
        },
        (
            _,
            "/" | "/health" | "/env" | "/headers" | "/peer" | "/metadata" | "/exit" | "/work" | "/status" | "/file",
        ) => Response::text(405, format!("method {} not allowed on {}", req.method, req.path)),
        _ => Response::text(404, format!("no route for {}", req.path)),
    }
}

fn identity(state: &State, remote: Option<SocketAddr>) -> String {
    let c = &state.config;
    format!(
        concat!(
            r#"{{"hostname":{},"taskArn":{},"version":{},"container":{},"pid":{},"#,
            r#""listen":{},"remote":{},"uptimeMs":{},"requests":{}}}"#
        ),
        json::string(&state.hostname),
        json::opt_string(state.task_arn().as_deref()),
        json::string(&c.version),
        json::string(&c.container),
        std::process::id(),
        json::string(&state.local_addr.to_string()),
        json::opt_string(remote.map(|r| r.to_string()).as_deref()),
        state.started.elapsed().as_millis(),
        state.requests.load(Ordering::Relaxed),
    )
}

/// `/peer?addr=HOST:PORT&path=/x` or `/peer?url=http://...`: another server's answer, status
/// and body passed through; 502 when it cannot be reached.
fn peer(req: &Request) -> Response {
    let url = match (req.param("url"), req.param("addr")) {
        (Some(url), _) => Url::parse(url),
        (None, Some(addr)) => {
            let path = req.param("path").unwrap_or("/");
            let path = if path.starts_with('/') { path.to_owned() } else { format!("/{path}") };
            Url::parse(&format!("http://{addr}{path}"))
        }
        (None, None) => return Response::text(400, "expected ?addr=HOST:PORT[&path=/x] or ?url=http://..."),
    };
    match url {
        Err(e) => Response::text(400, e),
        Ok(url) => fetch(&url),
    }
}

/// `/metadata?path=/task`: the task metadata endpoint's answer (404 when there is none).
fn metadata(state: &State, req: &Request) -> Response {
    let Some(uri) = &state.config.metadata_uri else {
        return Response::text(404, "ECS_CONTAINER_METADATA_URI_V4 is not set");
    };
    let path = req.param("path").unwrap_or("");
    let sep = if path.is_empty() || path.starts_with('/') { "" } else { "/" };
    match Url::parse(&format!("{uri}{sep}{path}")) {
        Err(e) => Response::text(400, e),
        Ok(url) => fetch(&url),
    }
}

fn fetch(url: &Url) -> Response {
    match client::get(url, FETCH_TIMEOUT) {
        Ok(resp) => {
            let json = resp.content_type.as_deref().is_some_and(|t| t.starts_with("application/json"));
            Response::new(resp.status, if json { "application/json" } else { "text/plain; charset=utf-8" }, resp.body)
        }
        Err(e) => Response::text(502, format!("fetching http://{}:{}{}: {e}", url.host, url.port, url.path)),
    }
}

/// Spins for `d`; the count keeps the loop from being optimised away.
pub fn busy(d: Duration) -> u64 {
    let start = Instant::now();
    let mut spins = 0u64;
    while start.elapsed() < d {
        for _ in 0..1000 {
            spins = std::hint::black_box(spins.wrapping_add(1));
        }
    }
    spins
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http::parse_request_line;

    fn state(vars: &[(&str, &str)]) -> State {
        let config = Config::from_env(vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))).expect("config");
        State::new(config, "host-1".to_owned(), "0.0.0.0:8080".parse().expect("addr"), Instant::now())
    }

    fn call(state: &State, line: &str) -> (u16, String, Option<i32>) {
        let req = parse_request_line(line).expect("request line");
        let resp = route(state, &req, Some("10.0.0.2:5555".parse().expect("addr")));
        (resp.status, String::from_utf8(resp.body).expect("utf8"), resp.exit_after)
    }

    #[test]
    fn identity_reports_host_task_and_version() {
        let s = state(&[("VERSION", "v2"), ("TASK_ARN", "arn:aws:ecs:r:1:task/c/t"), ("CONTAINER_NAME", "web")]);
        let (status, body, _) = call(&s, "GET / HTTP/1.1");
        assert_eq!(status, 200);
        for part in [
            r#""hostname":"host-1""#,
            r#""taskArn":"arn:aws:ecs:r:1:task/c/t""#,
            r#""version":"v2""#,
            r#""container":"web""#,
            r#""remote":"10.0.0.2:5555""#,
            r#""listen":"0.0.0.0:8080""#,
        ] {
            assert!(body.contains(part), "{part} in {body}");
        }
        let (_, body, _) = call(&state(&[]), "GET / HTTP/1.1");
        assert!(body.contains(r#""taskArn":null"#) && body.contains(r#""version":"v1""#), "{body}");
    }

    #[test]
    fn health_and_its_switches() {
        assert_eq!(call(&state(&[]), "GET /health HTTP/1.1").0, 200);
        assert_eq!(call(&state(&[("UNHEALTHY", "1")]), "GET /health HTTP/1.1").0, 500);
        assert_eq!(call(&state(&[("UNHEALTHY_AFTER_SECS", "0")]), "GET /health HTTP/1.1").0, 500);
        assert_eq!(call(&state(&[("UNHEALTHY_AFTER_SECS", "3600")]), "GET /health HTTP/1.1").0, 200);
        let s = state(&[]);
        assert_eq!(call(&s, "POST /health?healthy=false HTTP/1.1").0, 200);
        assert_eq!(call(&s, "GET /health HTTP/1.1").0, 500);
        assert_eq!(call(&s, "POST /health?healthy=true HTTP/1.1").0, 200);
        assert_eq!(call(&s, "HEAD /health HTTP/1.1").0, 200);
        assert_eq!(call(&s, "POST /health HTTP/1.1").0, 400);
    }

    #[test]
    fn env_is_json() {
        let (status, body, _) = call(&state(&[("B", "2"), ("A", "say \"hi\"")]), "GET /env HTTP/1.1");
        assert_eq!((status, body.as_str()), (200, "{\"A\":\"say \\\"hi\\\"\",\"B\":\"2\"}\n"));
    }

    #[test]
    fn exit_responds_then_exits() {
        let s = state(&[]);
        assert_eq!(call(&s, "POST /exit?code=7 HTTP/1.1"), (200, "exiting with code 7\n".to_owned(), Some(7)));
        assert_eq!(call(&s, "POST /exit HTTP/1.1").2, Some(0));
        assert_eq!(call(&s, "POST /exit?code=x HTTP/1.1").0, 400);
        assert_eq!(call(&s, "GET /exit?code=1 HTTP/1.1"), (405, "method GET not allowed on /exit\n".to_owned(), None));
    }

    #[test]
    fn work_status_and_unknown_paths() {
        let s = state(&[]);
        let (status, body, _) = call(&s, "GET /work?ms=20 HTTP/1.1");
        assert!(status == 200 && body.starts_with(r#"{"workedMs":20,"#), "{body}");
        assert_eq!(call(&s, "GET /work?ms=999999999 HTTP/1.1").0, 400);
        assert_eq!(call(&s, "GET /status?code=503 HTTP/1.1").0, 503);
        assert_eq!(call(&s, "GET /status?code=42 HTTP/1.1").0, 400);
        assert_eq!(call(&s, "GET /nope HTTP/1.1").0, 404);
        assert_eq!(call(&s, "DELETE / HTTP/1.1").0, 405);
    }

    #[test]
    fn peer_and_metadata_arguments() {
        let s = state(&[]);
        assert_eq!(call(&s, "GET /peer HTTP/1.1").0, 400);
        assert_eq!(call(&s, "GET /peer?url=https://x/ HTTP/1.1").0, 400);
        // Nothing listens on port 1.
        let (status, body, _) = call(&s, "GET /peer?addr=127.0.0.1:1&path=health HTTP/1.1");
        assert!(status == 502 && body.contains("http://127.0.0.1:1/health"), "{status} {body}");
        assert_eq!(call(&s, "GET /metadata HTTP/1.1").0, 404);
    }
}
