//! Rule conditions compiled from ELBv2 documents, and their evaluation against a request.
//!
//! Semantics follow ALB: values within one condition are ORed, conditions of one rule are
//! ANDed; `*` matches any run of characters and `?` exactly one; path patterns and methods
//! are case-sensitive, host names, header values and query strings are not. Evaluation never
//! allocates on the common paths (path, host, header, method, source IP).

use http::{HeaderMap, HeaderName, Method};
use serde_json::Value;
use std::net::IpAddr;
use wharf_types::elb::Condition;

/// One compiled condition.
#[derive(Debug, Clone)]
pub enum Cond {
    Path(Vec<String>),
    Host(Vec<String>),
    Header {
        name: HeaderName,
        values: Vec<String>,
    },
    Method(Vec<String>),
    /// `(key, value)` pairs; a missing key matches any key.
    Query(Vec<(Option<String>, String)>),
    SourceIp(Vec<Cidr>),
}

/// What a condition looks at, borrowed from the request.
#[derive(Debug)]
pub struct RequestView<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub query: Option<&'a str>,
    /// The Host header (or HTTP/2 `:authority`), port included as sent.
    pub host: &'a str,
    pub headers: &'a HeaderMap,
    pub source: IpAddr,
}

impl Cond {
    pub fn matches(&self, r: &RequestView<'_>) -> bool {
        match self {
            Cond::Path(pats) => pats.iter().any(|p| wildcard(p.as_bytes(), r.path.as_bytes(), false)),
            Cond::Host(pats) => {
                let bare = strip_port(r.host);
                pats.iter().any(|p| {
                    wildcard(p.as_bytes(), bare.as_bytes(), true) || wildcard(p.as_bytes(), r.host.as_bytes(), true)
                })
            }
            Cond::Header { name, values } => r.headers.get_all(name).iter().any(|v| {
                let v = v.as_bytes();
                values.iter().any(|p| wildcard(p.as_bytes(), v, true))
            }),
            Cond::Method(methods) => methods.iter().any(|m| m == r.method.as_str()),
            Cond::Query(pairs) => {
                let Some(q) = r.query else { return false };
                form_urlencoded::parse(q.as_bytes()).any(|(k, v)| {
                    pairs.iter().any(|(pk, pv)| {
                        pk.as_ref().is_none_or(|pk| wildcard(pk.as_bytes(), k.as_bytes(), true))
                            && wildcard(pv.as_bytes(), v.as_bytes(), true)
                    })
                })
            }
            Cond::SourceIp(cidrs) => cidrs.iter().any(|c| c.contains(r.source)),
        }
    }
}

fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // [v6]:port
        return host.split_once(']').map(|(h, _)| &host[..h.len() + 1]).unwrap_or(host);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

/// Glob match with `*` (any run) and `?` (one byte), iterative with single backtrack point.
pub fn wildcard(pat: &[u8], text: &[u8], fold_case: bool) -> bool {
    let eq = |a: u8, b: u8| if fold_case { a.eq_ignore_ascii_case(&b) } else { a == b };
    let (mut p, mut t) = (0usize, 0usize);
    let (mut star, mut mark) = (usize::MAX, 0usize);
    while t < text.len() {
        if p < pat.len() && (pat[p] == b'?' || (pat[p] != b'*' && eq(pat[p], text[t]))) {
            p += 1;
            t += 1;
        } else if p < pat.len() && pat[p] == b'*' {
            star = p;
            mark = t;
            p += 1;
        } else if star != usize::MAX {
            p = star + 1;
            mark += 1;
            t = mark;
        } else {
            return false;
        }
    }
    while p < pat.len() && pat[p] == b'*' {
        p += 1;
    }
    p == pat.len()
}

/// An IPv4 or IPv6 network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn parse(s: &str) -> Option<Cidr> {
        let (ip, prefix) = match s.split_once('/') {
            Some((ip, p)) => (ip.parse::<IpAddr>().ok()?, p.parse::<u8>().ok()?),
            None => {
                let ip = s.parse::<IpAddr>().ok()?;
                (ip, if ip.is_ipv4() { 32 } else { 128 })
            }
        };
        let max = if ip.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Cidr { net: ip, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match (self.net, ip) {
            (IpAddr::V4(_), IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => return false,
            },
            _ => ip,
        };
        match (self.net, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u32::MAX << (32 - u32::from(self.prefix)) };
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = if self.prefix == 0 { 0 } else { u128::MAX << (128 - u32::from(self.prefix)) };
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

fn strings(v: Option<&Value>) -> Vec<String> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// The `Values` of `<Config>` when present, else the condition's legacy top-level `Values`.
fn config_values(c: &Condition, config: &str) -> Vec<String> {
    match c.extra.get(config).and_then(|v| v.get("Values")) {
        Some(v) => strings(Some(v)),
        None => c.values.clone(),
    }
}

/// Compiles a stored condition; `Err` names what is unusable (the rule then never matches).
pub fn compile(c: &Condition) -> Result<Cond, String> {
    Ok(match c.field.as_str() {
        "path-pattern" => Cond::Path(config_values(c, "PathPatternConfig")),
        "host-header" => Cond::Host(config_values(c, "HostHeaderConfig")),
        "http-request-method" => Cond::Method(config_values(c, "HttpRequestMethodConfig")),
        "source-ip" => {
            let vals = config_values(c, "SourceIpConfig");
            let cidrs: Option<Vec<Cidr>> = vals.iter().map(|v| Cidr::parse(v)).collect();
            Cond::SourceIp(cidrs.ok_or_else(|| format!("source-ip values {vals:?} are not all CIDR blocks"))?)
        }
        "http-header" => {
            let cfg = c.extra.get("HttpHeaderConfig");
            let name = cfg.and_then(|v| v.get("HttpHeaderName")).and_then(Value::as_str).unwrap_or_default();
            let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| format!("bad header name {name:?}"))?;
            Cond::Header { name, values: strings(cfg.and_then(|v| v.get("Values"))) }
        }
        "query-string" => {
            let pairs = c
                .extra
                .get("QueryStringConfig")
                .and_then(|v| v.get("Values"))
                .and_then(Value::as_array)
                .map(|a| {
                    a.iter()
                        .map(|kv| {
                            let key = kv.get("Key").and_then(Value::as_str).map(str::to_string);
                            let value = kv.get("Value").and_then(Value::as_str).unwrap_or_default().to_string();
                            (key, value)
                        })
                        .collect()
                })
                .unwrap_or_default();
            Cond::Query(pairs)
        }
        other => return Err(format!("unsupported condition field {other:?}")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard(b"/api/*", b"/api/x/y", false));
        assert!(wildcard(b"*", b"", false));
        assert!(wildcard(b"/img/??.png", b"/img/ab.png", false));
        assert!(!wildcard(b"/img/??.png", b"/img/abc.png", false));
        assert!(!wildcard(b"/API/*", b"/api/x", false));
        assert!(wildcard(b"*.EXAMPLE.com", b"www.example.com", true));
        assert!(wildcard(b"a*b*c", b"axxbyyc", false));
        assert!(!wildcard(b"a*b*c", b"axxbyy", false));
    }

    #[test]
    fn cidrs() {
        let c = Cidr::parse("10.1.0.0/16").unwrap_or_else(|| panic!("parse"));
        assert!(c.contains("10.1.200.3".parse().unwrap_or_else(|_| panic!())));
        assert!(!c.contains("10.2.0.1".parse().unwrap_or_else(|_| panic!())));
        assert!(c.contains("::ffff:10.1.0.9".parse().unwrap_or_else(|_| panic!())));
        let all = Cidr::parse("0.0.0.0/0").unwrap_or_else(|| panic!("parse"));
        assert!(all.contains("1.2.3.4".parse().unwrap_or_else(|_| panic!())));
        assert!(Cidr::parse("10.0.0.0/33").is_none());
    }

    #[test]
    fn ports_are_stripped() {
        assert_eq!(strip_port("a.example:8080"), "a.example");
        assert_eq!(strip_port("[::1]:80"), "[::1]");
        assert_eq!(strip_port("a.example"), "a.example");
    }
}
