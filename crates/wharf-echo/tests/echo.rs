//! Runs the real binary on a free port and checks the behaviour the end-to-end tests rely on.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_wharf-echo");
const WAIT: Duration = Duration::from_secs(5);

/// A running wharf-echo whose stdout lines arrive on a channel.
struct Echo {
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    addr: Option<SocketAddr>,
}

impl Echo {
    /// Starts it with only `env` (and `LISTEN=127.0.0.1:0`) and waits until it listens.
    fn start(env: &[(&str, &str)]) -> Self {
        let mut echo = Self::spawn(&[], env);
        let line = echo.wait_for("listening on ");
        let addr = line["listening on ".len()..].split(' ').next().expect("address");
        echo.addr = Some(addr.parse().expect("listen address"));
        echo
    }

    /// Starts it with `args` and only `env`, without waiting.
    fn spawn(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(BIN)
            .args(args)
            .env_clear()
            .env("LISTEN", "127.0.0.1:0")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn wharf-echo");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        Self { child, lines, seen: Vec::new(), addr: None }
    }

    fn addr(&self) -> SocketAddr {
        self.addr.expect("started with Echo::start")
    }

    /// The first stdout line (from now on) containing `needle`.
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => panic!("no line with {needle:?} in 5 s; saw {:?}", self.seen),
                Err(RecvTimeoutError::Disconnected) => panic!("stdout closed before {needle:?}; saw {:?}", self.seen),
            }
        }
    }

    /// All remaining stdout, once the process has closed it.
    fn rest_of_output(&mut self) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(line) = self.lines.recv_timeout(WAIT) {
            out.push(line);
        }
        out
    }

    fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "still running after 5 s; saw {:?}", self.seen);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, signal: &str) {
        let ok = Command::new("kill").args([signal, &self.child.id().to_string()]).status().expect("kill");
        assert!(ok.success());
    }

    fn get(&self, path: &str) -> (u16, String) {
        request(self.addr(), "GET", path)
    }
}

impl Drop for Echo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One request on its own connection: status and body.
fn request(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, WAIT).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    write!(stream, "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n").expect("write");
    let mut raw = String::new();
    stream.read_to_string(&mut raw).expect("read");
    parse(&raw)
}

fn parse(raw: &str) -> (u16, String) {
    let (head, body) = raw.split_once("\r\n\r\n").expect("response head");
    let status = head.get(9..12).and_then(|s| s.parse().ok()).expect("status");
    (status, body.to_owned())
}

#[test]
fn serves_identity_health_and_env() {
    let mut echo =
        Echo::start(&[("VERSION", "v7"), ("TASK_ARN", "arn:aws:ecs:us-east-1:1:task/c/t1"), ("MARK", "x y")]);
    let (status, body) = echo.get("/");
    assert_eq!(status, 200);
    assert!(body.contains(r#""version":"v7""#), "{body}");
    assert!(body.contains(r#""taskArn":"arn:aws:ecs:us-east-1:1:task/c/t1""#), "{body}");
    assert!(body.contains(r#""hostname":""#) && !body.contains(r#""hostname":"""#), "{body}");
    assert_eq!(echo.get("/health"), (200, "ok\n".to_owned()));
    let (status, body) = echo.get("/env");
    assert!(status == 200 && body.contains(r#""MARK":"x y""#) && body.contains(r#""VERSION":"v7""#), "{body}");
    assert_eq!(echo.get("/nope").0, 404);
    echo.wait_for("GET /health 200");

    // Keep-alive: two requests on one connection.
    let mut stream = TcpStream::connect(echo.addr()).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    for _ in 0..2 {
        stream.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\n").expect("write");
        let mut head = String::new();
        while !head.ends_with("\r\n\r\n") {
            reader.read_line(&mut head).expect("head");
        }
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n") && head.contains("Content-Length: 3\r\n"), "{head}");
        let mut body = [0u8; 3];
        reader.read_exact(&mut body).expect("body");
        assert_eq!(&body, b"ok\n");
    }

    // The healthcheck mode against it.
    let url = format!("http://{}/health", echo.addr());
    let status = Command::new(BIN).args(["--healthcheck", &url]).stdout(Stdio::null()).status().expect("run");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn unhealthy_switch_and_failing_healthcheck() {
    let echo = Echo::start(&[("UNHEALTHY", "1")]);
    assert_eq!(echo.get("/health"), (500, "unhealthy\n".to_owned()));
    let url = format!("http://{}/health", echo.addr());
    let status = Command::new(BIN).args(["--healthcheck", &url]).stdout(Stdio::null()).status().expect("run");
    assert_eq!(status.code(), Some(1));
    // Nothing listens on port 1.
    let status =
        Command::new(BIN).args(["--healthcheck", "http://127.0.0.1:1/"]).stdout(Stdio::null()).status().expect("run");
    assert_eq!(status.code(), Some(1));

    let echo = Echo::start(&[]);
    assert_eq!(request(echo.addr(), "POST", "/health?healthy=false").0, 200);
    assert_eq!(echo.get("/health").0, 500);
}

#[test]
fn exit_endpoint_answers_then_exits_with_the_code() {
    let mut echo = Echo::start(&[]);
    assert_eq!(request(echo.addr(), "POST", "/exit?code=7"), (200, "exiting with code 7\n".to_owned()));
    assert_eq!(echo.wait_exit().code(), Some(7));
}

#[test]
fn sigterm_exits_zero_promptly() {
    let mut echo = Echo::start(&[]);
    let sent = Instant::now();
    echo.signal("-TERM");
    echo.wait_for("SIGTERM received");
    assert_eq!(echo.wait_exit().code(), Some(0));
    assert!(sent.elapsed() < Duration::from_secs(1), "took {:?}", sent.elapsed());
}

#[test]
fn sigterm_with_stop_delay_keeps_serving_until_it_exits() {
    let mut echo = Echo::start(&[("STOP_DELAY_SECS", "0.4")]);
    let sent = Instant::now();
    echo.signal("-TERM");
    echo.wait_for("SIGTERM received");
    assert_eq!(echo.get("/health").0, 200);
    assert_eq!(echo.wait_exit().code(), Some(0));
    assert!(sent.elapsed() >= Duration::from_millis(400), "took {:?}", sent.elapsed());
}

#[test]
fn ignored_sigterm_keeps_running() {
    let mut echo = Echo::start(&[("IGNORE_SIGTERM", "1")]);
    echo.signal("-TERM");
    echo.wait_for("SIGTERM received; ignoring");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(echo.get("/health").0, 200);
    assert!(echo.child.try_wait().expect("try_wait").is_none());
    // Drop SIGKILLs it, as the agent would after stopTimeout.
}

#[test]
fn crash_after_exits_with_exit_code() {
    let mut echo = Echo::start(&[("CRASH_AFTER_SECS", "0.3"), ("EXIT_CODE", "42")]);
    assert_eq!(echo.get("/health").0, 200);
    echo.wait_for("crashing with exit code 42");
    assert_eq!(echo.wait_exit().code(), Some(42));
}

#[test]
fn slow_start_listens_late() {
    let started = Instant::now();
    let echo = Echo::start(&[("START_DELAY_SECS", "0.3")]);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(echo.get("/health").0, 200);
}

#[test]
fn log_burst_then_exit() {
    let mut echo = Echo::spawn(&[], &[("LOG_BURST", "2000"), ("EXIT_AFTER_LOG", "1")]);
    assert_eq!(echo.wait_exit().code(), Some(0));
    let lines: Vec<String> = echo.rest_of_output().into_iter().filter(|l| l.starts_with("line ")).collect();
    let expected: Vec<String> = (1..=2000).map(|n| format!("line {n}")).collect();
    assert_eq!(lines, expected);
}

#[test]
fn periodic_logs_then_exit_code() {
    let started = Instant::now();
    let mut echo =
        Echo::spawn(&[], &[("LOG_EVERY_MS", "50"), ("LOG_LINES", "4"), ("EXIT_AFTER_LOG", "1"), ("EXIT_CODE", "4")]);
    assert_eq!(echo.wait_exit().code(), Some(4));
    assert!(started.elapsed() >= Duration::from_millis(200));
    let lines: Vec<String> = echo.rest_of_output().into_iter().filter(|l| l.starts_with("line ")).collect();
    assert_eq!(lines, ["line 1", "line 2", "line 3", "line 4"]);
}

#[test]
fn peer_fetches_another_server() {
    let a = Echo::start(&[("VERSION", "a")]);
    let b = Echo::start(&[("VERSION", "b")]);
    let (status, body) = a.get(&format!("/peer?addr=localhost:{}&path=/", b.addr().port()));
    assert!(status == 200 && body.contains(r#""version":"b""#), "{status} {body}");
    let (status, body) = a.get(&format!("/peer?url=http://{}/health", b.addr()));
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let started = Instant::now();
    assert_eq!(a.get("/work?ms=100").0, 200);
    assert!(started.elapsed() >= Duration::from_millis(100));
}

#[test]
fn argv_modes() {
    let run = |args: &[&str], env: &[(&str, &str)]| {
        let out = Command::new(BIN).args(args).env_clear().envs(env.iter().copied()).output().expect("run");
        (out.status.code(), String::from_utf8(out.stdout).expect("utf8"))
    };
    assert_eq!(run(&["--exit", "3"], &[]).0, Some(3));
    assert_eq!(run(&["--echo", "hello", "--sleep", "0.05", "--exit", "5"], &[]), (Some(5), "hello\n".to_owned()));
    assert_eq!(run(&["--print-env"], &[("B", "2"), ("A", "1")]), (Some(0), "A=1\nB=2\n".to_owned()));
    assert_eq!(run(&["--bogus"], &[]).0, Some(2));
    assert_eq!(run(&["--exit"], &[]).0, Some(2));
    // A malformed switch fails loudly rather than being ignored.
    assert_eq!(run(&[], &[("PORT", "http")]).0, Some(2));
}

#[test]
fn task_arn_from_the_metadata_endpoint() {
    // A stand-in for the agent's task metadata endpoint, answering chunked like a hyper server may.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let uri = format!("http://{}/v4/c0ffee", listener.local_addr().expect("addr"));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().expect("clone"));
            let mut request_line = String::new();
            reader.read_line(&mut request_line).expect("request line");
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            let doc = r#"{"Cluster":"default","TaskARN":"arn:aws:ecs:us-east-1:000000000000:task/default/md1"}"#;
            let body = if request_line.starts_with("GET /v4/c0ffee/task ") { doc } else { "{}" };
            let (a, b) = body.split_at(10);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
                 {:x}\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\n\r\n",
                a.len(),
                b.len()
            );
        }
    });
    let echo = Echo::start(&[("ECS_CONTAINER_METADATA_URI_V4", &uri)]);
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, body) = echo.get("/");
        if body.contains(r#""taskArn":"arn:aws:ecs:us-east-1:000000000000:task/default/md1""#) {
            break;
        }
        assert!(Instant::now() < deadline, "no taskArn: {body}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let (status, body) = echo.get("/metadata?path=/task");
    assert!(status == 200 && body.contains(r#""Cluster":"default""#), "{status} {body}");
}
