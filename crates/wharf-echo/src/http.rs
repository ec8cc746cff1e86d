//! The server half of a small HTTP/1.1: reading requests (with keep-alive) and writing
//! responses. Bodies are sized by `Content-Length`; chunked request bodies are refused.

use std::io::{self, BufRead, Read, Write};

/// Longest request line or header line accepted.
const MAX_LINE: u64 = 16 * 1024;
/// Most header lines accepted.
const MAX_HEADERS: usize = 100;
/// Largest request body accepted.
const MAX_BODY: usize = 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub method: String,
    /// The request target as sent: path and query.
    pub target: String,
    /// The path, percent-decoded.
    pub path: String,
    /// The query's pairs, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// Minor version: `HTTP/1.0` is 0, `HTTP/1.1` is 1.
    pub minor: u8,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The first query parameter named `name`.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.query.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Whether the connection stays open after this exchange.
    pub fn keep_alive(&self) -> bool {
        let connection = self.header("connection").unwrap_or("");
        let has = |token: &str| connection.split(',').any(|t| t.trim().eq_ignore_ascii_case(token));
        if self.minor == 0 { has("keep-alive") } else { !has("close") }
    }
}

/// Why a request could not be read; each maps to the status answered before closing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseError {
    /// Malformed request line or header (400).
    BadRequest(&'static str),
    /// Request line or headers too large (431).
    TooLarge,
    /// Body too large (413).
    BodyTooLarge,
    /// A transfer coding other than identity (501).
    Unsupported,
}

impl ParseError {
    pub fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::TooLarge => 431,
            Self::BodyTooLarge => 413,
            Self::Unsupported => 501,
        }
    }

    pub fn message(&self) -> &'static str {
        match self {
            Self::BadRequest(why) => why,
            Self::TooLarge => "request header too large",
            Self::BodyTooLarge => "request body too large",
            Self::Unsupported => "transfer-encoding not supported",
        }
    }
}

/// What reading a request produced.
#[derive(Debug)]
pub enum Read1 {
    Request(Request),
    /// The peer closed the connection cleanly between requests.
    Closed,
    Invalid(ParseError),
}

/// Reads one request. `w` receives `100 Continue` when the client asks for it. I/O errors
/// (including read timeouts on an idle connection) are returned as errors.
pub fn read_request(r: &mut impl BufRead, w: &mut impl Write) -> io::Result<Read1> {
    // Tolerate empty lines before a request line (RFC 9112 §2.2).
    let line = loop {
        let Some(line) = read_line(r)? else { return Ok(Read1::Closed) };
        match line {
            Ok(l) if l.is_empty() => continue,
            Ok(l) => break l,
            Err(e) => return Ok(Read1::Invalid(e)),
        }
    };
    let mut head = match parse_request_line(&line) {
        Ok(head) => head,
        Err(e) => return Ok(Read1::Invalid(e)),
    };
    loop {
        let line = match read_line(r)? {
            None => return Ok(Read1::Invalid(ParseError::BadRequest("connection closed in headers"))),
            Some(Err(e)) => return Ok(Read1::Invalid(e)),
            Some(Ok(l)) => l,
        };
        if line.is_empty() {
            break;
        }
        if head.headers.len() >= MAX_HEADERS {
            return Ok(Read1::Invalid(ParseError::TooLarge));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Ok(Read1::Invalid(ParseError::BadRequest("header without colon")));
        };
        if name.is_empty() || name.contains(|c: char| c.is_ascii_whitespace()) {
            return Ok(Read1::Invalid(ParseError::BadRequest("bad header name")));
        }
        head.headers.push((name.to_owned(), value.trim().to_owned()));
    }
    if head.header("transfer-encoding").is_some_and(|te| !te.eq_ignore_ascii_case("identity")) {
        return Ok(Read1::Invalid(ParseError::Unsupported));
    }
    let length = match head.header("content-length").map(|v| v.parse::<usize>()) {
        None => 0,
        Some(Ok(n)) if n > MAX_BODY => return Ok(Read1::Invalid(ParseError::BodyTooLarge)),
        Some(Ok(n)) => n,
        Some(Err(_)) => return Ok(Read1::Invalid(ParseError::BadRequest("bad content-length"))),
    };
    if length > 0 && head.header("expect").is_some_and(|e| e.eq_ignore_ascii_case("100-continue")) {
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
        w.flush()?;
    }
    head.body = vec![0; length];
    r.read_exact(&mut head.body)?;
    Ok(Read1::Request(head))
}

/// One CRLF- (or LF-) terminated line without its terminator; `None` at EOF before any byte.
fn read_line(r: &mut impl BufRead) -> io::Result<Option<Result<String, ParseError>>> {
    let mut buf = Vec::new();
    let n = r.by_ref().take(MAX_LINE + 1).read_until(b'\n', &mut buf)?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') {
        if buf.len() as u64 > MAX_LINE {
            return Ok(Some(Err(ParseError::TooLarge)));
        }
        return Ok(Some(Err(ParseError::BadRequest("connection closed mid-line"))));
    }
    buf.pop();
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(String::from_utf8(buf).map_err(|_| ParseError::BadRequest("request is not UTF-8"))))
}

/// `GET /path?query HTTP/1.1` into a request with no headers or body yet.
pub fn parse_request_line(line: &str) -> Result<Request, ParseError> {
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ParseError::BadRequest("bad request line"));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(ParseError::BadRequest("bad method"));
    }
    let minor = match version {
        "HTTP/1.1" => 1,
        "HTTP/1.0" => 0,
        _ => return Err(ParseError::BadRequest("unsupported HTTP version")),
    };
    // Absolute-form targets (proxies) are reduced to their path.
    let origin = match target.strip_prefix("http://") {
        Some(rest) => rest.find('/').map_or("/", |i| &rest[i..]),
        None => target,
    };
    if !origin.starts_with('/') && origin != "*" {
        return Err(ParseError::BadRequest("bad request target"));
    }
    let (path, query) = origin.split_once('?').unwrap_or((origin, ""));
    Ok(Request {
        method: method.to_owned(),
        target: target.to_owned(),
        path: percent_decode(path, false),
        query: parse_query(query),
        minor,
        headers: Vec::new(),
        body: Vec::new(),
    })
}

/// `a=1&b=x%20y` into pairs; `+` is a space.
pub fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

/// Decodes `%XX` escapes (and `+` when `plus_is_space`); malformed escapes stay as they are.
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                        continue;
                    }
                    None => out.push(b'%'),
                }
            }
            b'+' if plus_is_space => out.push(b' '),
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A response to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Vec<u8>,
    /// Exit the process with this code once the response is written.
    pub exit_after: Option<i32>,
}

impl Response {
    pub fn new(status: u16, content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self { status, content_type, body: body.into(), exit_after: None }
    }

    pub fn text(status: u16, body: impl Into<String>) -> Self {
        let mut body = body.into();
        if !body.ends_with('\n') {
            body.push('\n');
        }
        Self::new(status, "text/plain; charset=utf-8", body)
    }

    pub fn json(status: u16, body: impl Into<String>) -> Self {
        let mut body = body.into();
        body.push('\n');
        Self::new(status, "application/json", body)
    }
}

/// Writes `resp`; `head_only` omits the body (HEAD).
pub fn write_response(w: &mut impl Write, resp: &Response, keep_alive: bool, head_only: bool) -> io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: {}\r\nServer: wharf-echo\r\n\r\n",
        resp.status,
        reason(resp.status),
        resp.content_type,
        resp.body.len(),
        if keep_alive { "keep-alive" } else { "close" },
    );
    let mut out = head.into_bytes();
    if !head_only {
        out.extend_from_slice(&resp.body);
    }
    w.write_all(&out)?;
    w.flush()
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(raw: &str) -> (Read1, Vec<u8>) {
        let mut out = Vec::new();
        let r = read_request(&mut io::Cursor::new(raw.as_bytes().to_vec()), &mut out).expect("no I/O error");
        (r, out)
    }

    fn request(raw: &str) -> Request {
        match read(raw).0 {
            Read1::Request(r) => r,
            other => panic!("expected a request, got {other:?}"),
        }
    }

    fn invalid(raw: &str) -> ParseError {
        match read(raw).0 {
            Read1::Invalid(e) => e,
            other => panic!("expected invalid, got {other:?}"),
        }
    }

    #[test]
    fn parses_a_request_with_query_and_headers() {
        let r = request("GET /peer?addr=localhost%3A8081&path=%2Fx+y&flag HTTP/1.1\r\nHost: a\r\nX-Y:  z \r\n\r\n");
        assert_eq!(r.method, "GET");
        assert_eq!(r.path, "/peer");
        assert_eq!(r.target, "/peer?addr=localhost%3A8081&path=%2Fx+y&flag");
        assert_eq!(r.param("addr"), Some("localhost:8081"));
        assert_eq!(r.param("path"), Some("/x y"));
        assert_eq!(r.param("flag"), Some(""));
        assert_eq!(r.header("x-y"), Some("z"));
        assert_eq!(r.header("HOST"), Some("a"));
        assert!(r.keep_alive());
    }

    #[test]
    fn reads_a_body_and_answers_expect_continue() {
        let (r, out) = read("POST /exit HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\nhello");
        let Read1::Request(r) = r else { panic!("expected a request") };
        assert_eq!(r.body, b"hello");
        assert_eq!(out, b"HTTP/1.1 100 Continue\r\n\r\n");
    }

    #[test]
    fn keep_alive_rules() {
        assert!(!request("GET / HTTP/1.0\r\n\r\n").keep_alive());
        assert!(request("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n").keep_alive());
        assert!(!request("GET / HTTP/1.1\r\nConnection: TE, close\r\n\r\n").keep_alive());
    }

    #[test]
    fn pipelined_requests_and_clean_close() {
        let raw = "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\n\n";
        let mut cursor = io::Cursor::new(raw.as_bytes().to_vec());
        let mut sink = Vec::new();
        let paths: Vec<String> = (0..2)
            .map(|_| match read_request(&mut cursor, &mut sink).expect("io") {
                Read1::Request(r) => r.path,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(paths, ["/a", "/b"]);
        assert!(matches!(read_request(&mut cursor, &mut sink).expect("io"), Read1::Closed));
    }

    #[test]
    fn rejects_malformed_requests() {
        assert_eq!(invalid("GARBAGE\r\n\r\n").status(), 400);
        assert_eq!(invalid("get / HTTP/1.1\r\n\r\n").status(), 400);
        assert_eq!(invalid("GET / HTTP/2.0\r\n\r\n").status(), 400);
        assert_eq!(invalid("GET nopath HTTP/1.1\r\n\r\n").status(), 400);
        assert_eq!(invalid("GET / HTTP/1.1\r\nNoColon\r\n\r\n").status(), 400);
        assert_eq!(invalid("GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n").status(), 400);
        assert_eq!(invalid("POST / HTTP/1.1\r\nContent-Length: 99999999\r\n\r\n").status(), 413);
        assert_eq!(invalid("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").status(), 501);
        let long = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(20_000));
        assert_eq!(invalid(&long).status(), 431);
        assert_eq!(invalid("GET / HTTP/1.1\r\nHost: a").status(), 400);
    }

    #[test]
    fn absolute_form_target() {
        let r = request("GET http://example.com:80/health?x=1 HTTP/1.1\r\n\r\n");
        assert_eq!(r.path, "/health");
        assert_eq!(r.param("x"), Some("1"));
    }

    #[test]
    fn percent_decoding_edge_cases() {
        assert_eq!(percent_decode("a%2", false), "a%2");
        assert_eq!(percent_decode("a%zz", false), "a%zz");
        assert_eq!(percent_decode("%41%42", false), "AB");
        assert_eq!(percent_decode("a+b", false), "a+b");
        assert_eq!(percent_decode("a+b", true), "a b");
        assert_eq!(percent_decode("%", true), "%");
    }

    #[test]
    fn writes_responses() {
        let mut out = Vec::new();
        write_response(&mut out, &Response::text(200, "ok"), true, false).expect("write");
        let s = String::from_utf8(out).expect("utf8");
        assert!(s.starts_with("HTTP/1.1 200 OK\r\n"), "{s}");
        assert!(s.contains("Content-Length: 3\r\n"), "{s}");
        assert!(s.contains("Connection: keep-alive\r\n"), "{s}");
        assert!(s.ends_with("\r\n\r\nok\n"), "{s}");

        let mut out = Vec::new();
        write_response(&mut out, &Response::text(503, "down"), false, true).expect("write");
        let s = String::from_utf8(out).expect("utf8");
        assert!(s.starts_with("HTTP/1.1 503 Service Unavailable\r\n"), "{s}");
        assert!(s.contains("Content-Length: 5\r\n") && s.ends_with("\r\n\r\n"), "{s}");
    }
}
