//! `--load URL`: a load generator that remembers every failure.
//!
//! wrk tells how many requests failed; finding why a rollout drops requests needs *when* each
//! one failed and how (the status the client saw, or the socket error), to lay beside the
//! deployment's timeline. Each of `--connections` threads sends `GET URL` in a loop on a
//! keep-alive connection (or a new connection per request with `--close`) until SIGINT or
//! SIGTERM (or `--seconds`), then one JSON document is printed: totals, latency percentiles,
//! the answering versions and every failure with its wall-clock time.
//!
//! A failure is anything a strict client would report: a status other than 2xx/3xx, a refused
//! or timed-out connect, a reset, a keep-alive connection closed before the answer (no silent
//! retry, as wrk), or a response that is not HTTP. It must never retry or hide one.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::client::{Url, resolve};
use crate::json;

/// How long a connect, a write or a read may take (wrk's `--timeout` in the tests).
const TIMEOUT: Duration = Duration::from_secs(10);
/// Failures listed one by one (all are counted).
const MAX_LISTED: usize = 5000;

#[derive(Debug, Clone)]
pub struct Options {
    pub url: Url,
    pub connections: usize,
    /// A new connection per request (`Connection: close`).
    pub close: bool,
    pub seconds: Option<f64>,
}

#[derive(Debug)]
struct Failure {
    at_ms: u128,
    conn: usize,
    kind: &'static str,
    status: Option<u16>,
    detail: String,
}

#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    ok: u64,
    failed: u64,
    latencies_us: Vec<u32>,
    versions: Vec<(String, u64)>,
    failures: Vec<Failure>,
}

impl Tally {
    fn version(&mut self, v: &str) {
        match self.versions.iter_mut().find(|(k, _)| k == v) {
            Some((_, n)) => *n += 1,
            None => self.versions.push((v.to_owned(), 1)),
        }
    }
    fn fail(&mut self, conn: usize, kind: &'static str, status: Option<u16>, detail: String) {
        self.failed += 1;
        if self.failures.len() < MAX_LISTED {
            self.failures.push(Failure { at_ms: epoch_ms(), conn, kind, status, detail });
        }
    }
    fn merge(&mut self, other: Tally) {
        self.requests += other.requests;
        self.ok += other.ok;
        self.failed += other.failed;
        self.latencies_us.extend(other.latencies_us);
        for (v, n) in other.versions {
            match self.versions.iter_mut().find(|(k, _)| *k == v) {
                Some((_, m)) => *m += n,
                None => self.versions.push((v, n)),
            }
        }
        self.failures.extend(other.failures);
    }
}

fn epoch_ms() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis())
}

/// Runs the load until a signal or `seconds`; prints the JSON summary.
pub fn run(opts: Options) -> i32 {
    let addrs = match resolve(&opts.url.host, opts.url.port, TIMEOUT) {
        Ok(a) if !a.is_empty() => a,
        Ok(_) => {
            eprintln!("wharf-echo: no address for {}", opts.url.host);
            return 2;
        }
        Err(e) => {
            eprintln!("wharf-echo: cannot resolve {}: {e}", opts.url.host);
            return 2;
        }
    };
    let stop = Arc::new(AtomicBool::new(false));
    match signal_hook::iterator::Signals::new([signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM]) {
        Ok(mut signals) => {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                if signals.forever().next().is_some() {
                    stop.store(true, Ordering::Relaxed);
                }
            });
        }
        Err(e) => {
            eprintln!("wharf-echo: cannot handle signals: {e}");
            return 2;
        }
    }
    if let Some(secs) = opts.seconds {
        let stop = Arc::clone(&stop);
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs_f64(secs));
            stop.store(true, Ordering::Relaxed);
        });
    }
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: wharf-echo-load\r\nAccept: */*\r\n{}\r\n",
        opts.url.path,
        opts.url.host,
        opts.url.port,
        if opts.close { "Connection: close\r\n" } else { "" }
    );
    let started = Instant::now();
    let began_ms = epoch_ms();
    let workers: Vec<_> = (0..opts.connections.max(1))
        .map(|conn| {
            let (stop, request, addr) = (Arc::clone(&stop), request.clone(), addrs[0]);
            std::thread::spawn(move || worker(conn, addr, &request, opts.close, &stop))
        })
        .collect();
    let mut total = Tally::default();
    for w in workers {
        if let Ok(t) = w.join() {
            total.merge(t);
        }
    }
    let elapsed = started.elapsed();
    total.latencies_us.sort_unstable();
    total.failures.sort_by_key(|f| f.at_ms);
    println!("{}", summary(&total, began_ms, elapsed));
    0
}

fn percentile_ms(sorted: &[u32], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    f64::from(sorted[i]) / 1000.0
}

fn summary(t: &Tally, began_ms: u128, elapsed: Duration) -> String {
    let versions: Vec<String> = t.versions.iter().map(|(v, n)| format!("{}:{n}", json::string(v))).collect();
    let failures: Vec<String> = t
        .failures
        .iter()
        .map(|f| {
            format!(
                "{{\"atMs\":{},\"conn\":{},\"kind\":{},\"status\":{},\"detail\":{}}}",
                f.at_ms,
                f.conn,
                json::string(f.kind),
                f.status.map_or_else(|| "null".to_owned(), |s| s.to_string()),
                json::string(&f.detail)
            )
        })
        .collect();
    format!(
        "{{\"startedMs\":{began_ms},\"elapsedMs\":{},\"requests\":{},\"ok\":{},\"failed\":{},\"p50Ms\":{:.3},\"p90Ms\":{:.3},\"p99Ms\":{:.3},\"maxMs\":{:.3},\"versions\":{{{}}},\"failures\":[{}]}}",
        elapsed.as_millis(),
        t.requests,
        t.ok,
        t.failed,
        percentile_ms(&t.latencies_us, 0.50),
        percentile_ms(&t.latencies_us, 0.90),
        percentile_ms(&t.latencies_us, 0.99),
        percentile_ms(&t.latencies_us, 1.0),
        versions.join(","),
        failures.join(",")
    )
}

/// What one exchange ended with.
enum Outcome {
    /// A status and whether the connection may carry another request.
    Answered {
        status: u16,
        version: Option<String>,
        reusable: bool,
    },
    Failed {
        kind: &'static str,
        detail: String,
    },
}

fn worker(conn: usize, addr: SocketAddr, request: &str, close: bool, stop: &AtomicBool) -> Tally {
    let mut tally = Tally::default();
    let mut open: Option<BufReader<TcpStream>> = None;
    while !stop.load(Ordering::Relaxed) {
        let began = Instant::now();
        let reader = match open.take() {
            Some(r) => r,
            None => match connect(addr) {
                Ok(s) => BufReader::new(s),
                Err(e) => {
                    tally.requests += 1;
                    let kind = if e.kind() == io::ErrorKind::TimedOut { "connect-timeout" } else { "connect" };
                    tally.fail(conn, kind, None, e.to_string());
                    // A refused connect returns at once: do not spin.
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            },
        };
        let mut reader = reader;
        tally.requests += 1;
        match exchange(&mut reader, request) {
            Outcome::Answered { status, version, reusable } => {
                tally.latencies_us.push(u32::try_from(began.elapsed().as_micros()).unwrap_or(u32::MAX));
                if let Some(v) = version {
                    tally.version(&v);
                }
                if (200..400).contains(&status) {
                    tally.ok += 1;
                } else {
                    tally.fail(conn, "status", Some(status), format!("HTTP {status}"));
                }
                if reusable && !close {
                    open = Some(reader);
                }
            }
            Outcome::Failed { kind, detail } => tally.fail(conn, kind, None, detail),
        }
    }
    tally
}

fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    s.set_nodelay(true)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    Ok(s)
}

fn io_kind(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => "timeout",
        io::ErrorKind::ConnectionReset => "reset",
        io::ErrorKind::BrokenPipe => "broken-pipe",
        _ => "io",
    }
}

fn exchange(reader: &mut BufReader<TcpStream>, request: &str) -> Outcome {
    if let Err(e) = reader.get_mut().write_all(request.as_bytes()) {
        return Outcome::Failed { kind: io_kind(&e), detail: format!("write: {e}") };
    }
    match read_response(reader) {
        Ok(o) => o,
        Err(e) => Outcome::Failed { kind: io_kind(&e), detail: format!("read: {e}") },
    }
}

/// Reads one response (head, then a Content-Length or chunked body).
fn read_response(reader: &mut BufReader<TcpStream>) -> io::Result<Outcome> {
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(Outcome::Failed { kind: "closed", detail: "connection closed before a response".into() });
    }
    let Some(status) = line.strip_prefix("HTTP/1.").and_then(|s| s.get(2..5)).and_then(|s| s.parse::<u16>().ok())
    else {
        return Ok(Outcome::Failed { kind: "not-http", detail: format!("status line {:?}", line.trim_end()) });
    };
    let http10 = line.starts_with("HTTP/1.0");
    let (mut length, mut chunked, mut close) = (None, false, http10);
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            return Ok(Outcome::Failed { kind: "closed", detail: "connection closed in the response head".into() });
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let Some((k, v)) = l.split_once(':') else { continue };
        let (k, v) = (k.trim(), v.trim());
        if k.eq_ignore_ascii_case("content-length") {
            length = v.parse::<usize>().ok();
        } else if k.eq_ignore_ascii_case("transfer-encoding") {
            chunked = v.to_ascii_lowercase().contains("chunked");
        } else if k.eq_ignore_ascii_case("connection") {
            close = v.eq_ignore_ascii_case("close");
        }
    }
    let body = if chunked {
        read_chunked(reader)?
    } else if let Some(n) = length {
        let mut b = vec![0; n];
        reader.read_exact(&mut b)?;
        b
    } else {
        close = true;
        let mut b = Vec::new();
        reader.read_to_end(&mut b)?;
        b
    };
    Ok(Outcome::Answered { status, version: version_of(&body), reusable: !close })
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> io::Result<Vec<u8>> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        reader.read_line(&mut line)?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or(""), 16)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))?;
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                line.clear();
                if reader.read_line(&mut line)? == 0 || line.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let at = body.len();
        body.resize(at + size, 0);
        reader.read_exact(&mut body[at..])?;
        line.clear();
        reader.read_line(&mut line)?;
    }
}

/// The `"version"` field of a wharf-echo answer.
fn version_of(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let rest = &text[text.find("\"version\":\"")? + 11..];
    Some(rest[..rest.find('"')?].to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_version_and_percentiles() {
        assert_eq!(version_of(br#"{"hostname":"h","version":"v2","pid":1}"#).as_deref(), Some("v2"));
        assert_eq!(version_of(b"<html>502</html>"), None);
        let sorted = [1000, 2000, 3000, 4000];
        assert_eq!(percentile_ms(&sorted, 0.5), 2.0);
        assert_eq!(percentile_ms(&sorted, 0.99), 4.0);
        assert_eq!(percentile_ms(&[], 0.5), 0.0);
    }

    #[test]
    fn counts_a_server_that_goes_away_as_a_failure() {
        // A server that answers once on a keep-alive connection, then closes without a word.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().expect("accept");
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf);
            let body = r#"{"version":"v1"}"#;
            let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}", body.len());
        });
        let mut reader = BufReader::new(connect(addr).expect("connect"));
        let req = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
        match exchange(&mut reader, req) {
            Outcome::Answered { status, version, reusable } => {
                assert_eq!((status, version.as_deref(), reusable), (200, Some("v1"), true));
            }
            Outcome::Failed { detail, .. } => panic!("first request failed: {detail}"),
        }
        server.join().expect("server");
        match exchange(&mut reader, req) {
            Outcome::Failed { kind, .. } => assert!(["closed", "reset", "broken-pipe"].contains(&kind), "{kind}"),
            Outcome::Answered { status, .. } => panic!("answered {status} by a closed server"),
        }
    }
}
