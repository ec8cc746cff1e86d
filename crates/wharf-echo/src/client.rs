//! The client half: a plain `GET` for `/peer`, `--healthcheck` and the task metadata endpoint.
//!
//! Name resolution avoids glibc's NSS (a static binary in a `scratch` image has no NSS modules):
//! IP literals, `localhost`, `/etc/hosts` (Docker links, `extraHosts`), then a one-question DNS
//! query to the nameservers in `/etc/resolv.conf` (Docker's embedded DNS), then the system
//! resolver as a last resort.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Largest response body read.
const MAX_RESPONSE: u64 = 16 * 1024 * 1024;

/// `http://host[:port][/path]` (the scheme is optional).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Url {
    pub host: String,
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Url {
    pub fn parse(url: &str) -> Result<Self, String> {
        let rest = match url.split_once("://") {
            Some(("http", rest)) => rest,
            Some((scheme, _)) => return Err(format!("unsupported scheme {scheme:?} (only http)")),
            None => url,
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('?') => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_owned()),
            None => (rest, "/".to_owned()),
        };
        let (host, port) = split_host_port(authority, 80)?;
        Ok(Self { host, port, path })
    }

    /// `host:port` (brackets around IPv6 literals).
    fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

/// `host[:port]` or `[v6][:port]` into its parts.
pub fn split_host_port(authority: &str, default_port: u16) -> Result<(String, u16), String> {
    let bad = || format!("bad address {authority:?}");
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        match after {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    let port = match port {
        None => default_port,
        Some(p) => p.parse().map_err(|_| bad())?,
    };
    Ok((host.to_owned(), port))
}

/// A response read by [`get`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// `GET url`, with `timeout` for connecting and for each read and write.
pub fn get(url: &Url, timeout: Duration) -> io::Result<Fetched> {
    let addrs = resolve(&url.host, url.port, timeout)?;
    let mut last = io::Error::new(io::ErrorKind::NotFound, format!("no addresses for {}", url.host));
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, timeout) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = io::Error::new(e.kind(), format!("connect {addr}: {e}")),
        }
    }
    let mut stream = stream.ok_or(last)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: wharf-echo\r\nAccept: */*\r\nConnection: close\r\n\r\n",
        url.path,
        url.authority()
    );
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.take(MAX_RESPONSE).read_to_end(&mut raw)?;
    parse_response(&raw)
}

/// A whole `Connection: close` response into status, content type and (de-chunked) body.
pub fn parse_response(raw: &[u8]) -> io::Result<Fetched> {
    let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidData, why.to_owned());
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| invalid("incomplete response head"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| invalid("response head is not UTF-8"))?;
    let body = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or("");
    let status = status_line
        .strip_prefix("HTTP/1.")
        .and_then(|s| s.get(2..5))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| invalid("bad status line"))?;
    let headers: Vec<(&str, &str)> =
        lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim(), v.trim())).collect();
    let header = |name: &str| headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| *v);
    let body = if header("transfer-encoding").is_some_and(|te| te.eq_ignore_ascii_case("chunked")) {
        dechunk(body).ok_or_else(|| invalid("bad chunked body"))?
    } else if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.get(..len).ok_or_else(|| invalid("truncated body"))?.to_vec()
    } else {
        body.to_vec()
    };
    Ok(Fetched { status, content_type: header("content-type").map(str::to_owned), body })
}

fn dechunk(mut raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = raw.windows(2).position(|w| w == b"\r\n")?;
        let size_field = std::str::from_utf8(&raw[..line_end]).ok()?;
        let size = usize::from_str_radix(size_field.split(';').next()?.trim(), 16).ok()?;
        raw = &raw[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(raw.get(..size)?);
        raw = raw.get(size + 2..)?;
    }
}

/// Addresses for `host`, without NSS where possible (see the module docs).
pub fn resolve(host: &str, port: u16, timeout: Duration) -> io::Result<Vec<SocketAddr>> {
    if let Ok(ip) = host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(vec![SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)]);
    }
    let with_port = |ips: Vec<IpAddr>| ips.into_iter().map(|ip| SocketAddr::new(ip, port)).collect::<Vec<_>>();
    if let Ok(hosts) = std::fs::read_to_string("/etc/hosts") {
        let ips = hosts_lookup(&hosts, host);
        if !ips.is_empty() {
            return Ok(with_port(ips));
        }
    }
    let mut dns_error = None;
    if let Ok(conf) = std::fs::read_to_string("/etc/resolv.conf") {
        let (servers, search) = parse_resolv_conf(&conf);
        let mut names = vec![host.trim_end_matches('.').to_owned()];
        if !host.ends_with('.') {
            names.extend(search.iter().map(|d| format!("{}.{d}", host)));
        }
        for name in &names {
            for server in &servers {
                match dns_query_a(*server, name, timeout) {
                    Ok(ips) if !ips.is_empty() => return Ok(with_port(ips.into_iter().map(IpAddr::V4).collect())),
                    Ok(_) => {}
                    Err(e) => dns_error = Some(e),
                }
            }
        }
    }
    match (host, port).to_socket_addrs() {
        Ok(addrs) => Ok(addrs.collect()),
        Err(e) => Err(dns_error.unwrap_or(e)),
    }
}

/// Addresses `/etc/hosts` gives `name` (case-insensitive).
pub fn hosts_lookup(hosts: &str, name: &str) -> Vec<IpAddr> {
    hosts
        .lines()
        .map(|l| l.split('#').next().unwrap_or(""))
        .filter_map(|l| {
            let mut fields = l.split_whitespace();
            let ip = fields.next()?.parse::<IpAddr>().ok()?;
            fields.any(|n| n.eq_ignore_ascii_case(name)).then_some(ip)
        })
        .collect()
}

/// Nameservers and search domains.
pub fn parse_resolv_conf(conf: &str) -> (Vec<IpAddr>, Vec<String>) {
    let mut servers = Vec::new();
    let mut search = Vec::new();
    for line in conf.lines() {
        let mut fields = line.split_whitespace();
        match fields.next() {
            Some("nameserver") => servers.extend(fields.next().and_then(|s| s.parse::<IpAddr>().ok())),
            Some("search" | "domain") => search = fields.map(str::to_owned).collect(),
            _ => {}
        }
    }
    (servers, search)
}

/// One `A` question to `server`, over UDP.
fn dns_query_a(server: IpAddr, name: &str, timeout: Duration) -> io::Result<Vec<Ipv4Addr>> {
    let bind: SocketAddr = if server.is_ipv4() { "0.0.0.0:0" } else { "[::]:0" }.parse().map_err(io::Error::other)?;
    let socket = UdpSocket::bind(bind)?;
    socket.connect(SocketAddr::new(server, 53))?;
    socket.set_read_timeout(Some(timeout))?;
    let id = (SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default().subsec_nanos() & 0xffff) as u16;
    let query = dns_query(id, name).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "bad host name"))?;
    socket.send(&query)?;
    let mut buf = [0u8; 1500];
    loop {
        let n = socket.recv(&mut buf)?;
        match parse_dns_answer(&buf[..n], id) {
            Some(Ok(ips)) => return Ok(ips),
            Some(Err(rcode)) => return Err(io::Error::new(io::ErrorKind::NotFound, format!("dns rcode {rcode}"))),
            None => continue, // not our answer
        }
    }
}

/// A recursive query for `name`'s `A` records.
pub fn dns_query(id: u16, name: &str) -> Option<Vec<u8>> {
    let mut q = Vec::with_capacity(name.len() + 18);
    q.extend_from_slice(&id.to_be_bytes());
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]); // RD; one question
    for label in name.split('.') {
        let len = u8::try_from(label.len()).ok().filter(|l| (1..64).contains(l))?;
        q.push(len);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]); // root; QTYPE A; QCLASS IN
    Some(q)
}

/// The `A` records in an answer to query `id`: `None` if it is not that answer (or is
/// malformed), `Some(Err(rcode))` for an error answer.
pub fn parse_dns_answer(msg: &[u8], id: u16) -> Option<Result<Vec<Ipv4Addr>, u8>> {
    if msg.len() < 12 || msg[..2] != id.to_be_bytes() || msg[2] & 0x80 == 0 {
        return None;
    }
    let rcode = msg[3] & 0x0f;
    if rcode != 0 {
        return Some(Err(rcode));
    }
    let qdcount = u16::from_be_bytes([msg[4], msg[5]]);
    let ancount = u16::from_be_bytes([msg[6], msg[7]]);
    let mut at = 12;
    for _ in 0..qdcount {
        at = skip_name(msg, at)? + 4;
    }
    let mut ips = Vec::new();
    for _ in 0..ancount {
        at = skip_name(msg, at)?;
        let fixed = msg.get(at..at + 10)?;
        let rtype = u16::from_be_bytes([fixed[0], fixed[1]]);
        let rdlen = usize::from(u16::from_be_bytes([fixed[8], fixed[9]]));
        let rdata = msg.get(at + 10..at + 10 + rdlen)?;
        if rtype == 1 && rdlen == 4 {
            ips.push(Ipv4Addr::new(rdata[0], rdata[1], rdata[2], rdata[3]));
        }
        at += 10 + rdlen;
    }
    Some(Ok(ips))
}

/// The offset just past the (possibly compressed) name at `at`.
fn skip_name(msg: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = *msg.get(at)?;
        match len {
            0 => return Some(at + 1),
            l if l & 0xc0 == 0xc0 => return Some(at + 2),
            l => at += 1 + usize::from(l),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_urls() {
        let u = Url::parse("http://127.0.0.1:8080/health").expect("url");
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("127.0.0.1", 8080, "/health"));
        let u = Url::parse("example.com").expect("url");
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("example.com", 80, "/"));
        let u = Url::parse("http://[::1]:81?x=1").expect("url");
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("::1", 81, "/?x=1"));
        assert_eq!(u.authority(), "[::1]:81");
        assert!(Url::parse("https://x/").is_err());
        assert!(Url::parse("http://x:notaport/").is_err());
        assert!(Url::parse("http://:80/").is_err());
    }

    #[test]
    fn parses_responses() {
        let r = parse_response(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nokextra")
            .expect("response");
        assert_eq!((r.status, r.body.as_slice(), r.content_type.as_deref()), (200, &b"ok"[..], Some("text/plain")));
        let r = parse_response(
            b"HTTP/1.1 503 Service Unavailable\r\nTransfer-Encoding: chunked\r\n\r\n3;x\r\nabc\r\n2\r\nde\r\n0\r\n\r\n",
        )
        .expect("chunked");
        assert_eq!((r.status, r.body.as_slice()), (503, &b"abcde"[..]));
        let r = parse_response(b"HTTP/1.0 404 Not Found\r\n\r\nuntil eof").expect("eof body");
        assert_eq!((r.status, r.body.as_slice()), (404, &b"until eof"[..]));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_response(b"SSH-2.0\r\n\r\n").is_err());
    }

    #[test]
    fn hosts_and_resolv_conf() {
        let hosts = "127.0.0.1 localhost\n# 10.0.0.9 commented\n172.17.0.3\tdb db.local # link\n::1 ip6-localhost\n";
        assert_eq!(hosts_lookup(hosts, "DB"), vec!["172.17.0.3".parse::<IpAddr>().expect("ip")]);
        assert!(hosts_lookup(hosts, "commented").is_empty());
        let (servers, search) =
            parse_resolv_conf("# x\nnameserver 127.0.0.11\nnameserver bogus\nsearch a.b c\noptions ndots:0\n");
        assert_eq!(servers, vec!["127.0.0.11".parse::<IpAddr>().expect("ip")]);
        assert_eq!(search, ["a.b", "c"]);
    }

    #[test]
    fn builds_queries_and_reads_answers() {
        let q = dns_query(0x1234, "web.local").expect("query");
        assert_eq!(&q[..4], &[0x12, 0x34, 0x01, 0x00]);
        assert_eq!(&q[12..], b"\x03web\x05local\x00\x00\x01\x00\x01");
        assert!(dns_query(1, "a..b").is_none());

        // The answer: the question echoed, a CNAME, then an A record (both names compressed).
        let mut a = vec![0x12, 0x34, 0x81, 0x80, 0, 1, 0, 2, 0, 0, 0, 0];
        a.extend_from_slice(&q[12..]);
        a.extend_from_slice(&[0xc0, 12, 0, 5, 0, 1, 0, 0, 0, 60, 0, 4, 1, b'x', 0xc0, 16]);
        a.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 60, 0, 4, 10, 0, 0, 7]);
        assert_eq!(parse_dns_answer(&a, 0x1234), Some(Ok(vec![Ipv4Addr::new(10, 0, 0, 7)])));
        assert_eq!(parse_dns_answer(&a, 0x9999), None);
        a[3] = 0x83; // NXDOMAIN
        assert_eq!(parse_dns_answer(&a, 0x1234), Some(Err(3)));
        a[3] = 0x80;
        assert_eq!(parse_dns_answer(&a[..40], 0x1234), None, "truncated");
    }
}
