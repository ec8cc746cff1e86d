//! ELBv2's service rules beyond what the model checks (names, health checks, attributes,
//! actions, conditions, targets), as pure functions over the model-validated input. Each
//! failure is an AWS error whose message names the field, as AWS's do. No store access here.

use super::{bool_of, int_of, list_of, str_of, strings_of};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use wharf_types::elb::{Action, Condition, ForwardConfig, HealthCheck, WeightedTargetGroup};
use wharf_types::{Error, Invalid, Limit, Result};

fn invalid(field: &str, msg: impl Into<String>) -> Error {
    Error::invalid(field, msg)
}

/// A load balancer or target group name: 1–32 alphanumerics and hyphens, not starting or
/// ending with a hyphen (load balancers: not starting with `internal-`).
pub fn name(field: &str, what: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 32
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !ok {
        return Err(invalid(
            field,
            format!(
                "{what} name '{name}' cannot be longer than '32' characters, must contain only alphanumeric \
                 characters or hyphens, and cannot begin or end with a hyphen"
            ),
        ));
    }
    if what == "Load balancer" && name.starts_with("internal-") {
        return Err(invalid(field, format!("Load balancer name '{name}' cannot begin with 'internal-'")));
    }
    Ok(())
}

/// `Matcher.HttpCode` for an HTTP/HTTPS target group: `200`, `200,202` or `200-299`, codes
/// within 200–499.
pub fn http_code(code: &str) -> Result<()> {
    let bad = || {
        invalid(
            "Matcher.HttpCode",
            format!(
                "Health check matcher HTTP code '{code}' must be a code, a list of codes or a range within 200-499"
            ),
        )
    };
    let one = |s: &str| -> Result<u16> {
        let n: u16 = s.trim().parse().map_err(|_| bad())?;
        if s.trim().len() == 3 && (200..=499).contains(&n) { Ok(n) } else { Err(bad()) }
    };
    if code.is_empty() {
        return Err(bad());
    }
    if let Some((lo, hi)) = code.split_once('-') {
        if one(lo)? >= one(hi)? {
            return Err(bad());
        }
        return Ok(());
    }
    for part in code.split(',') {
        one(part)?;
    }
    Ok(())
}

/// `Matcher.GrpcCode` for a GRPC target group: codes within 0–99, as a list or range.
pub fn grpc_code(code: &str) -> Result<()> {
    let bad = || invalid("Matcher.GrpcCode", format!("gRPC matcher code '{code}' must be within 0-99"));
    let ok = |s: &str| s.trim().parse::<u16>().is_ok_and(|n| n <= 99);
    let valid = match code.split_once('-') {
        Some((lo, hi)) => ok(lo) && ok(hi),
        None => !code.is_empty() && code.split(',').all(ok),
    };
    if valid { Ok(()) } else { Err(bad()) }
}

/// `HealthCheckPort`: `traffic-port` or 1–65535.
pub fn health_check_port(port: &str) -> Result<()> {
    if port == "traffic-port" || port.parse::<u16>().is_ok_and(|p| p >= 1) {
        return Ok(());
    }
    Err(invalid("HealthCheckPort", format!("Health check port '{port}' must be 'traffic-port' or between 1 and 65535")))
}

/// Applies the health-check members of a Create/ModifyTargetGroup input onto `hc` and checks
/// the result as a whole (timeout below interval, path starting with `/`). `hc` changes only
/// when the result is valid.
pub fn apply_health_check(current: &mut HealthCheck, input: &Value, protocol_version: Option<&str>) -> Result<()> {
    let mut next = current.clone();
    let hc = &mut next;
    if let Some(b) = bool_of(input, "HealthCheckEnabled") {
        hc.enabled = b;
    }
    if let Some(p) = str_of(input, "HealthCheckProtocol") {
        if !matches!(p, "HTTP" | "HTTPS") {
            return Err(invalid(
                "HealthCheckProtocol",
                format!("Health check protocol '{p}' is not supported for target groups of HTTP or HTTPS"),
            ));
        }
        hc.protocol = p.into();
    }
    if let Some(p) = str_of(input, "HealthCheckPort") {
        health_check_port(p)?;
        hc.port = p.into();
    }
    if let Some(p) = str_of(input, "HealthCheckPath") {
        if !p.starts_with('/') {
            return Err(invalid("HealthCheckPath", format!("Health check path '{p}' must begin with a '/' character")));
        }
        hc.path = p.into();
    }
    if let Some(n) = int_of(input, "HealthCheckIntervalSeconds") {
        hc.interval_seconds = n as u32;
    }
    if let Some(n) = int_of(input, "HealthCheckTimeoutSeconds") {
        hc.timeout_seconds = n as u32;
    }
    if let Some(n) = int_of(input, "HealthyThresholdCount") {
        hc.healthy_threshold_count = n as u32;
    }
    if let Some(n) = int_of(input, "UnhealthyThresholdCount") {
        hc.unhealthy_threshold_count = n as u32;
    }
    if let Some(m) = input.get("Matcher") {
        let grpc = protocol_version == Some("GRPC");
        match (str_of(m, "HttpCode"), str_of(m, "GrpcCode")) {
            (Some(c), None) if !grpc => {
                http_code(c)?;
                hc.http_code = c.into();
            }
            (None, Some(c)) if grpc => {
                grpc_code(c)?;
                hc.http_code = c.into();
            }
            _ if grpc => return Err(invalid("Matcher", "A GRPC target group's matcher takes GrpcCode only")),
            _ => return Err(invalid("Matcher", "An HTTP or HTTPS target group's matcher takes HttpCode only")),
        }
    }
    if hc.timeout_seconds >= hc.interval_seconds {
        return Err(invalid(
            "HealthCheckTimeoutSeconds",
            format!(
                "Health check interval must be greater than the timeout: timeout '{}' is not smaller than interval '{}'",
                hc.timeout_seconds, hc.interval_seconds
            ),
        ));
    }
    *current = next;
    Ok(())
}

/// AWS's health-check defaults for an HTTP/HTTPS target group.
pub fn default_health_check(protocol: &str, protocol_version: &str) -> HealthCheck {
    HealthCheck {
        enabled: true,
        protocol: protocol.into(),
        port: "traffic-port".into(),
        path: if protocol_version == "GRPC" { "/AWS.ALB/healthcheck".into() } else { "/".into() },
        interval_seconds: 30,
        timeout_seconds: 5,
        healthy_threshold_count: 5,
        unhealthy_threshold_count: 2,
        http_code: if protocol_version == "GRPC" { "12".into() } else { "200".into() },
    }
}

fn bool_text(key: &str, v: &str) -> Result<()> {
    if matches!(v, "true" | "false") {
        Ok(())
    } else {
        Err(invalid("Attributes", format!("Attribute '{key}' must be 'true' or 'false', not '{v}'")))
    }
}

fn int_in(key: &str, v: &str, lo: i64, hi: i64) -> Result<i64> {
    match v.parse::<i64>() {
        Ok(n) if (lo..=hi).contains(&n) => Ok(n),
        _ => {
            Err(invalid("Attributes", format!("Attribute '{key}' must be an integer between {lo} and {hi}, not '{v}'")))
        }
    }
}

/// Target group attributes with AWS's defaults: DescribeTargetGroupAttributes returns all.
pub fn target_group_attribute_defaults() -> BTreeMap<String, String> {
    [
        ("deregistration_delay.timeout_seconds", "300"),
        ("load_balancing.algorithm.type", "round_robin"),
        ("slow_start.duration_seconds", "0"),
        ("stickiness.enabled", "false"),
        ("stickiness.lb_cookie.duration_seconds", "86400"),
        ("stickiness.type", "lb_cookie"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Checks one target group attribute.
pub fn target_group_attribute(key: &str, v: &str) -> Result<()> {
    match key {
        "deregistration_delay.timeout_seconds" => int_in(key, v, 0, 3600).map(drop),
        "slow_start.duration_seconds" => {
            let n = int_in(key, v, 0, 900)?;
            if n != 0 && n < 30 {
                return Err(invalid("Attributes", format!("Attribute '{key}' must be 0 or between 30 and 900")));
            }
            Ok(())
        }
        "stickiness.enabled" => bool_text(key, v),
        "stickiness.type" if v == "lb_cookie" => Ok(()),
        "stickiness.type" => Err(invalid("Attributes", format!("Stickiness type '{v}' is not supported (lb_cookie)"))),
        "stickiness.lb_cookie.duration_seconds" => int_in(key, v, 1, 604_800).map(drop),
        "load_balancing.algorithm.type" if matches!(v, "round_robin" | "least_outstanding_requests") => Ok(()),
        "load_balancing.algorithm.type" => Err(invalid(
            "Attributes",
            format!("Load balancing algorithm '{v}' must be 'round_robin' or 'least_outstanding_requests'"),
        )),
        _ => Err(invalid("Attributes", format!("Target group attribute key '{key}' is not recognized"))),
    }
}

/// Checks the whole set after a modification (slow start does not combine with least
/// outstanding requests).
pub fn target_group_attributes(all: &BTreeMap<String, String>) -> Result<()> {
    let slow = all.get("slow_start.duration_seconds").is_some_and(|v| v != "0");
    let lor = all.get("load_balancing.algorithm.type").is_some_and(|v| v == "least_outstanding_requests");
    if slow && lor {
        return Err(Error::invalid_input(
            Invalid::Configuration,
            "Slow start mode cannot be enabled with the least outstanding requests algorithm",
        ));
    }
    Ok(())
}

/// Load balancer attributes with AWS's defaults for an application load balancer.
pub fn load_balancer_attribute_defaults() -> BTreeMap<String, String> {
    [
        ("access_logs.s3.bucket", ""),
        ("access_logs.s3.enabled", "false"),
        ("access_logs.s3.prefix", ""),
        ("client_keep_alive.seconds", "3600"),
        ("deletion_protection.enabled", "false"),
        ("idle_timeout.timeout_seconds", "60"),
        ("routing.http.desync_mitigation_mode", "defensive"),
        ("routing.http.drop_invalid_header_fields.enabled", "false"),
        ("routing.http.preserve_host_header.enabled", "false"),
        ("routing.http.x_amzn_tls_version_and_cipher_suite.enabled", "false"),
        ("routing.http.xff_client_port.enabled", "false"),
        ("routing.http.xff_header_processing.mode", "append"),
        ("routing.http2.enabled", "true"),
        ("waf.fail_open.enabled", "false"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// Load balancer attributes the load balancer acts on; the others are accepted only at their
/// default value (so tools that send every attribute work, and nothing is silently ignored).
const SERVED_LB_ATTRIBUTES: &[&str] = &["deletion_protection.enabled", "idle_timeout.timeout_seconds"];

/// Checks one load balancer attribute.
pub fn load_balancer_attribute(key: &str, v: &str) -> Result<()> {
    load_balancer_attribute_value(key, v)?;
    let default = load_balancer_attribute_defaults().remove(key).unwrap_or_default();
    if !SERVED_LB_ATTRIBUTES.contains(&key) && v != default {
        return Err(invalid(
            "Attributes",
            format!("Load balancer attribute '{key}' is supported only at its default value '{default}'"),
        ));
    }
    Ok(())
}

fn load_balancer_attribute_value(key: &str, v: &str) -> Result<()> {
    match key {
        "access_logs.s3.bucket" | "access_logs.s3.prefix" => Ok(()),
        "access_logs.s3.enabled"
        | "deletion_protection.enabled"
        | "routing.http.drop_invalid_header_fields.enabled"
        | "routing.http.preserve_host_header.enabled"
        | "routing.http.x_amzn_tls_version_and_cipher_suite.enabled"
        | "routing.http.xff_client_port.enabled"
        | "routing.http2.enabled"
        | "waf.fail_open.enabled" => bool_text(key, v),
        "idle_timeout.timeout_seconds" => int_in(key, v, 1, 4000).map(drop),
        "client_keep_alive.seconds" => int_in(key, v, 60, 604_800).map(drop),
        "routing.http.desync_mitigation_mode" if matches!(v, "monitor" | "defensive" | "strictest") => Ok(()),
        "routing.http.xff_header_processing.mode" if matches!(v, "append" | "preserve" | "remove") => Ok(()),
        "routing.http.desync_mitigation_mode" | "routing.http.xff_header_processing.mode" => {
            Err(invalid("Attributes", format!("'{v}' is not a valid value of attribute '{key}'")))
        }
        _ => Err(invalid("Attributes", format!("Load balancer attribute key '{key}' is not recognized"))),
    }
}

/// `Attributes` of a Modify*Attributes input as key → value, checked one by one.
pub fn attributes_in(input: &Value, check: fn(&str, &str) -> Result<()>) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for a in list_of(input, "Attributes") {
        let key = str_of(a, "Key").ok_or_else(|| invalid("Attributes", "An attribute key must be specified"))?;
        let value = str_of(a, "Value").unwrap_or_default();
        check(key, value)?;
        out.insert(key.to_string(), value.to_string());
    }
    if out.is_empty() {
        return Err(invalid("Attributes", "At least one attribute must be specified"));
    }
    Ok(out)
}

const CONTENT_TYPES: &[&str] = &["text/plain", "text/css", "text/html", "application/javascript", "application/json"];
pub const MAX_FORWARD_GROUPS: usize = 5;

fn action_error(msg: impl Into<String>) -> Error {
    Error::invalid_input(Invalid::Action, msg)
}

/// Checks and normalises an action list (listener default actions or rule actions): exactly
/// one of forward / redirect / fixed-response, its config complete and in range. Target
/// groups named are returned by [`super::forwarded_groups`]; their existence is the caller's
/// check.
pub fn actions(field: &str, input: &[Value]) -> Result<Vec<Action>> {
    if input.is_empty() {
        return Err(invalid(field, format!("At least one action must be specified in {field}")));
    }
    if input.len() > 1 {
        return Err(Error::limit_exceeded(
            Limit::Actions,
            format!("{field} can have only one action: forward, redirect or fixed-response"),
        ));
    }
    input.iter().enumerate().map(|(i, a)| action(&format!("{field}.member.{}", i + 1), a, i)).collect()
}

fn action(field: &str, a: &Value, index: usize) -> Result<Action> {
    let kind = str_of(a, "Type").ok_or_else(|| invalid(field, format!("{field}.Type is required")))?;
    let order = int_of(a, "Order").map_or(index as u32 + 1, |n| n as u32);
    let has = |k: &str| a.get(k).is_some();
    let foreign: Vec<&str> = ["TargetGroupArn", "ForwardConfig", "RedirectConfig", "FixedResponseConfig"]
        .into_iter()
        .filter(|k| has(k))
        .filter(|k| match kind {
            "forward" => !matches!(*k, "TargetGroupArn" | "ForwardConfig"),
            "redirect" => *k != "RedirectConfig",
            "fixed-response" => *k != "FixedResponseConfig",
            _ => true,
        })
        .collect();
    if let Some(k) = foreign.first()
        && matches!(kind, "forward" | "redirect" | "fixed-response")
    {
        return Err(action_error(format!("{k} cannot be specified for an action of type '{kind}'")));
    }
    let mut out = Action { kind: kind.into(), order: Some(order), ..Default::default() };
    match kind {
        "forward" => {
            let fc = forward(field, a)?;
            if fc.target_groups.len() == 1 {
                out.target_group_arn = Some(fc.target_groups[0].target_group_arn.clone());
            }
            out.forward_config = Some(fc);
        }
        "redirect" => {
            let r = a.get("RedirectConfig").ok_or_else(|| action_error("A redirect action requires RedirectConfig"))?;
            out.redirect_config = Some(redirect(r)?);
        }
        "fixed-response" => {
            let f = a
                .get("FixedResponseConfig")
                .ok_or_else(|| action_error("A fixed-response action requires FixedResponseConfig"))?;
            out.fixed_response_config = Some(fixed_response(f)?);
        }
        other => {
            return Err(Error::Unsupported(format!(
                "Action type '{other}' is not supported: use forward, redirect or fixed-response"
            )));
        }
    }
    Ok(out)
}

fn forward(field: &str, a: &Value) -> Result<ForwardConfig> {
    let plain = str_of(a, "TargetGroupArn");
    let fc = a.get("ForwardConfig");
    let listed = fc.map(|f| list_of(f, "TargetGroups")).unwrap_or_default();
    let mut groups = Vec::new();
    let mut seen = BTreeSet::new();
    for (i, t) in listed.iter().enumerate() {
        let arn = str_of(t, "TargetGroupArn").ok_or_else(|| {
            invalid(field, format!("{field}.ForwardConfig.TargetGroups.member.{}.TargetGroupArn is required", i + 1))
        })?;
        let weight = int_of(t, "Weight").unwrap_or(1);
        if !(0..=999).contains(&weight) {
            return Err(invalid(field, format!("Target group weight '{weight}' must be between 0 and 999")));
        }
        if !seen.insert(arn.to_string()) {
            return Err(invalid(field, format!("Target group '{arn}' is specified more than once in ForwardConfig")));
        }
        groups.push(WeightedTargetGroup { target_group_arn: arn.into(), weight: Some(weight as u32) });
    }
    match (plain, groups.len()) {
        (None, 0) => {
            return Err(action_error("A forward action requires TargetGroupArn or ForwardConfig.TargetGroups"));
        }
        (Some(arn), 0) => groups.push(WeightedTargetGroup { target_group_arn: arn.into(), weight: Some(1) }),
        (Some(arn), 1) if groups[0].target_group_arn == arn => {}
        (Some(_), _) => {
            return Err(action_error(
                "TargetGroupArn and ForwardConfig can be specified together only when ForwardConfig names that one target group",
            ));
        }
        (None, _) => {}
    }
    if groups.len() > MAX_FORWARD_GROUPS {
        return Err(invalid(field, format!("A forward action can have at most {MAX_FORWARD_GROUPS} target groups")));
    }
    let stickiness = match fc.and_then(|f| f.get("TargetGroupStickinessConfig")) {
        None => None,
        Some(s) => {
            let enabled = bool_of(s, "Enabled").unwrap_or(false);
            let mut o = Map::new();
            o.insert("Enabled".into(), json!(enabled));
            match int_of(s, "DurationSeconds") {
                Some(d) if !(1..=604_800).contains(&d) => {
                    return Err(invalid(
                        field,
                        format!("Target group stickiness duration '{d}' must be between 1 and 604800 seconds"),
                    ));
                }
                Some(d) => {
                    o.insert("DurationSeconds".into(), json!(d));
                }
                None if enabled => {
                    return Err(invalid(field, "Target group stickiness requires DurationSeconds when enabled"));
                }
                None => {}
            }
            Some(Value::Object(o))
        }
    };
    Ok(ForwardConfig { target_groups: groups, target_group_stickiness_config: stickiness })
}

/// A redirect config with AWS's `#{…}` defaults filled in.
pub fn redirect(r: &Value) -> Result<Value> {
    let get = |k: &str, d: &str| str_of(r, k).unwrap_or(d).to_string();
    let protocol = get("Protocol", "#{protocol}");
    let port = get("Port", "#{port}");
    let host = get("Host", "#{host}");
    let path = get("Path", "/#{path}");
    let query = get("Query", "#{query}");
    let status = str_of(r, "StatusCode").unwrap_or_default().to_string();
    if !matches!(protocol.as_str(), "HTTP" | "HTTPS" | "#{protocol}") {
        return Err(invalid(
            "RedirectConfig.Protocol",
            format!("Redirect protocol '{protocol}' must be HTTP, HTTPS or #{{protocol}}"),
        ));
    }
    if port != "#{port}" && !port.parse::<u16>().is_ok_and(|p| p >= 1) {
        return Err(invalid(
            "RedirectConfig.Port",
            format!("Redirect port '{port}' must be between 1 and 65535 or #{{port}}"),
        ));
    }
    if !path.starts_with('/') {
        return Err(invalid("RedirectConfig.Path", format!("Redirect path '{path}' must start with a '/' character")));
    }
    if host.is_empty() || host.contains('/') {
        return Err(invalid("RedirectConfig.Host", format!("Redirect host '{host}' is not valid")));
    }
    if protocol == "#{protocol}" && port == "#{port}" && host == "#{host}" && path == "/#{path}" {
        return Err(action_error(
            "The redirect configuration is not valid: it must change at least one of protocol, port, host or path, \
             or it would loop",
        ));
    }
    Ok(json!({"Protocol": protocol, "Port": port, "Host": host, "Path": path, "Query": query, "StatusCode": status}))
}

/// A fixed-response config: status 2XX/4XX/5XX, a content type from ALB's list, a body of at
/// most 1024 characters.
pub fn fixed_response(f: &Value) -> Result<Value> {
    let status = str_of(f, "StatusCode").unwrap_or_default();
    let b = status.as_bytes();
    if b.len() != 3 || !matches!(b[0], b'2' | b'4' | b'5') || !b.iter().all(u8::is_ascii_digit) {
        return Err(invalid(
            "FixedResponseConfig.StatusCode",
            format!("Fixed response status code '{status}' must be a 2XX, 4XX or 5XX code"),
        ));
    }
    let mut o = Map::new();
    if let Some(ct) = str_of(f, "ContentType") {
        if !CONTENT_TYPES.contains(&ct) {
            return Err(invalid(
                "FixedResponseConfig.ContentType",
                format!("Content type '{ct}' must be one of {}", CONTENT_TYPES.join(", ")),
            ));
        }
        o.insert("ContentType".into(), json!(ct));
    }
    if let Some(body) = str_of(f, "MessageBody") {
        if body.chars().count() > 1024 {
            return Err(invalid(
                "FixedResponseConfig.MessageBody",
                "A fixed response body can be at most 1024 characters",
            ));
        }
        o.insert("MessageBody".into(), json!(body));
    }
    o.insert("StatusCode".into(), json!(status));
    Ok(Value::Object(o))
}

const MAX_CONDITION_VALUES: usize = 5;
const FIELDS: &[(&str, &str)] = &[
    ("host-header", "HostHeaderConfig"),
    ("path-pattern", "PathPatternConfig"),
    ("http-header", "HttpHeaderConfig"),
    ("http-request-method", "HttpRequestMethodConfig"),
    ("query-string", "QueryStringConfig"),
    ("source-ip", "SourceIpConfig"),
];

/// Checks and normalises rule conditions: for `host-header` and `path-pattern`, the values
/// are kept both as `Values` and in the `*Config` (as AWS describes them); at most one
/// condition of each field except `http-header` and `query-string`; at most five values in
/// the whole rule.
pub fn conditions(input: &[Value]) -> Result<Vec<Condition>> {
    if input.is_empty() {
        return Err(invalid("Conditions", "A rule must have at least one condition"));
    }
    let mut seen = BTreeSet::new();
    let mut total = 0;
    let mut out = Vec::new();
    for c in input {
        let (cond, n) = condition(c)?;
        if !matches!(cond.field.as_str(), "http-header" | "query-string") && !seen.insert(cond.field.clone()) {
            return Err(invalid("Conditions", format!("A rule can have only one '{}' condition", cond.field)));
        }
        total += n;
        out.push(cond);
    }
    if total > MAX_CONDITION_VALUES {
        return Err(invalid(
            "Conditions",
            format!("A rule can have at most {MAX_CONDITION_VALUES} condition values in total, not {total}"),
        ));
    }
    Ok(out)
}

fn value_chars(field: &str, v: &str, ok: impl Fn(char) -> bool) -> Result<()> {
    if v.is_empty() || v.chars().count() > 128 || !v.chars().all(ok) {
        return Err(invalid("Conditions", format!("Condition value '{v}' is not valid for field '{field}'")));
    }
    Ok(())
}

fn condition(c: &Value) -> Result<(Condition, usize)> {
    let field = str_of(c, "Field").ok_or_else(|| invalid("Conditions", "A condition's Field must be specified"))?;
    let Some((_, config_name)) = FIELDS.iter().find(|(f, _)| *f == field) else {
        let names: Vec<&str> = FIELDS.iter().map(|(f, _)| *f).collect();
        return Err(invalid("Conditions", format!("Condition field '{field}' must be one of {}", names.join(", "))));
    };
    if c.get("RegexValues").is_some()
        || FIELDS.iter().any(|(_, cfg)| c.get(*cfg).and_then(|x| x.get("RegexValues")).is_some())
    {
        return Err(invalid("Conditions", "Regular-expression condition values (RegexValues) are not supported"));
    }
    if let Some((_, other)) = FIELDS.iter().find(|(_, cfg)| cfg != config_name && c.get(*cfg).is_some()) {
        return Err(invalid("Conditions", format!("{other} cannot be specified for a condition on field '{field}'")));
    }
    let plain = c.get("Values").map(|_| strings_of(c, "Values"));
    let config = c.get(*config_name);
    if plain.is_some() && config.is_some() {
        return Err(invalid("Conditions", format!("Values and {config_name} cannot both be specified")));
    }
    let mut extra = Map::new();
    let mut values = Vec::new();
    let n;
    match field {
        "host-header" | "path-pattern" => {
            let vals = match (plain, config) {
                (Some(v), _) => v,
                (None, Some(cfg)) => strings_of(cfg, "Values"),
                (None, None) => return Err(invalid("Conditions", format!("A '{field}' condition requires values"))),
            };
            if vals.is_empty() {
                return Err(invalid("Conditions", format!("A '{field}' condition requires at least one value")));
            }
            for v in &vals {
                if field == "host-header" {
                    value_chars(field, v, |ch| ch.is_ascii_alphanumeric() || "-.*?".contains(ch))?;
                } else {
                    value_chars(field, v, |ch| ch.is_ascii_alphanumeric() || "_-.$/~\"'@:+&*?".contains(ch))?;
                }
            }
            n = vals.len();
            extra.insert(config_name.to_string(), json!({"Values": vals}));
            values = vals;
        }
        _ if plain.is_some() => {
            return Err(invalid("Conditions", format!("A '{field}' condition takes {config_name}, not Values")));
        }
        _ => {
            let cfg =
                config.ok_or_else(|| invalid("Conditions", format!("A '{field}' condition requires {config_name}")))?;
            let stored;
            match field {
                "http-header" => {
                    let name = str_of(cfg, "HttpHeaderName").unwrap_or_default();
                    if name.is_empty()
                        || name.len() > 40
                        || !name.chars().all(|ch| ch.is_ascii_alphanumeric() || "-_!#$%&'*+.^`|~".contains(ch))
                    {
                        return Err(invalid("Conditions", format!("HTTP header name '{name}' is not valid")));
                    }
                    let vals = strings_of(cfg, "Values");
                    for v in &vals {
                        value_chars(field, v, |ch| !ch.is_control())?;
                    }
                    n = vals.len();
                    stored = json!({"HttpHeaderName": name, "Values": vals});
                }
                "http-request-method" => {
                    let vals = strings_of(cfg, "Values");
                    for v in &vals {
                        if v.is_empty()
                            || v.len() > 40
                            || !v.chars().all(|ch| ch.is_ascii_uppercase() || ch == '_' || ch == '-')
                        {
                            return Err(invalid("Conditions", format!("HTTP request method '{v}' is not valid")));
                        }
                    }
                    n = vals.len();
                    stored = json!({"Values": vals});
                }
                "query-string" => {
                    let mut pairs = Vec::new();
                    for p in list_of(cfg, "Values") {
                        let value = str_of(p, "Value")
                            .ok_or_else(|| invalid("Conditions", "A query-string condition value requires Value"))?;
                        value_chars(field, value, |ch| !ch.is_control())?;
                        let mut o = Map::new();
                        if let Some(k) = str_of(p, "Key") {
                            value_chars(field, k, |ch| !ch.is_control())?;
                            o.insert("Key".into(), json!(k));
                        }
                        o.insert("Value".into(), json!(value));
                        pairs.push(Value::Object(o));
                    }
                    n = pairs.len();
                    stored = json!({"Values": pairs});
                }
                _ => {
                    let vals = strings_of(cfg, "Values");
                    for v in &vals {
                        cidr(v)?;
                    }
                    n = vals.len();
                    stored = json!({"Values": vals});
                }
            }
            if n == 0 {
                return Err(invalid("Conditions", format!("A '{field}' condition requires at least one value")));
            }
            extra.insert(config_name.to_string(), stored);
        }
    }
    Ok((Condition { field: field.into(), values, extra }, n))
}

/// An IPv4 or IPv6 CIDR block (`10.0.0.0/8`, `2001:db8::/32`).
pub fn cidr(v: &str) -> Result<()> {
    let bad = || invalid("Conditions", format!("Source IP '{v}' must be a CIDR block such as 10.0.0.0/8"));
    let (ip, len) = v.split_once('/').ok_or_else(bad)?;
    let ip: IpAddr = ip.parse().map_err(|_| bad())?;
    let len: u8 = len.parse().map_err(|_| bad())?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if len > max { Err(bad()) } else { Ok(()) }
}

/// An `ip` target: an IPv4 address a host could route to (not unspecified, broadcast or
/// multicast).
pub fn ip_target(id: &str) -> Result<Ipv4Addr> {
    match id.parse::<Ipv4Addr>() {
        Ok(ip) if !ip.is_unspecified() && !ip.is_broadcast() && !ip.is_multicast() => Ok(ip),
        _ => Err(Error::invalid_input(
            Invalid::Target,
            format!("The IP address '{id}' is not a valid IPv4 target address"),
        )),
    }
}

/// An `instance` target id's form: `i-` and 8 or 17 lowercase hex digits.
pub fn instance_id_form(id: &str) -> bool {
    id.strip_prefix("i-").is_some_and(|h| {
        (h.len() == 8 || h.len() == 17) && h.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn code(e: Error) -> &'static str {
        wharf_protocol::wire_error(&e, crate::ELBV2.name(), wharf_protocol::Protocol::Query).code
    }

    #[test]
    fn names() {
        assert!(name("Name", "Load balancer", "web-1").is_ok());
        assert!(name("Name", "Load balancer", &"a".repeat(32)).is_ok());
        for bad in ["", "-a", "a-", "a_b", &"a".repeat(33), "internal-x"] {
            assert!(name("Name", "Load balancer", bad).is_err(), "{bad}");
        }
        assert!(name("Name", "Target group", "internal-x").is_ok());
    }

    #[test]
    fn matcher_codes() {
        for ok in ["200", "200,202", "200-299", "499", "200-499"] {
            assert!(http_code(ok).is_ok(), "{ok}");
        }
        for bad in ["", "199", "500", "200-", "299-200", "2xx", "200,", "20", "0200"] {
            assert!(http_code(bad).is_err(), "{bad}");
        }
        assert!(grpc_code("0-99").is_ok());
        assert!(grpc_code("12").is_ok());
        assert!(grpc_code("100").is_err());
    }

    #[test]
    fn health_check_defaults_and_ranges() {
        let mut hc = default_health_check("HTTP", "HTTP1");
        assert_eq!((hc.interval_seconds, hc.timeout_seconds, hc.http_code.as_str()), (30, 5, "200"));
        apply_health_check(&mut hc, &json!({"HealthCheckIntervalSeconds": 10, "HealthCheckTimeoutSeconds": 9}), None)
            .unwrap();
        let e = apply_health_check(&mut hc, &json!({"HealthCheckTimeoutSeconds": 10}), None).unwrap_err();
        assert!(e.to_string().contains("interval must be greater than the timeout"));
        assert_eq!(hc.timeout_seconds, 9, "a refused change leaves the settings as they were");
        assert!(apply_health_check(&mut hc, &json!({"HealthCheckPath": "health"}), None).is_err());
        assert!(apply_health_check(&mut hc, &json!({"HealthCheckPort": "0"}), None).is_err());
        assert!(apply_health_check(&mut hc, &json!({"HealthCheckProtocol": "TCP"}), None).is_err());
        assert!(apply_health_check(&mut hc, &json!({"Matcher": {"GrpcCode": "1"}}), None).is_err());
        assert!(apply_health_check(&mut hc, &json!({"Matcher": {"GrpcCode": "1"}}), Some("GRPC")).is_ok());
    }

    #[test]
    fn target_group_attributes_ranges() {
        assert!(target_group_attribute("deregistration_delay.timeout_seconds", "0").is_ok());
        assert!(target_group_attribute("deregistration_delay.timeout_seconds", "3601").is_err());
        assert!(target_group_attribute("slow_start.duration_seconds", "0").is_ok());
        assert!(target_group_attribute("slow_start.duration_seconds", "29").is_err());
        assert!(target_group_attribute("slow_start.duration_seconds", "900").is_ok());
        assert!(target_group_attribute("stickiness.type", "app_cookie").is_err());
        assert!(target_group_attribute("stickiness.lb_cookie.duration_seconds", "604801").is_err());
        assert!(target_group_attribute("stickiness.enabled", "yes").is_err());
        assert!(target_group_attribute("load_balancing.algorithm.type", "least_outstanding_requests").is_ok());
        assert!(target_group_attribute("load_balancing.algorithm.type", "random").is_err());
        assert!(target_group_attribute("nope", "1").is_err());
        let mut all = target_group_attribute_defaults();
        assert!(target_group_attributes(&all).is_ok());
        all.insert("slow_start.duration_seconds".into(), "30".into());
        all.insert("load_balancing.algorithm.type".into(), "least_outstanding_requests".into());
        assert_eq!(code(target_group_attributes(&all).unwrap_err()), "InvalidConfigurationRequest");
    }

    #[test]
    fn load_balancer_attributes_ranges() {
        assert!(load_balancer_attribute("idle_timeout.timeout_seconds", "4000").is_ok());
        assert!(load_balancer_attribute("idle_timeout.timeout_seconds", "0").is_err());
        assert!(load_balancer_attribute("deletion_protection.enabled", "true").is_ok());
        assert!(load_balancer_attribute("access_logs.s3.enabled", "false").is_ok());
        assert!(load_balancer_attribute("access_logs.s3.enabled", "true").is_err());
        assert!(load_balancer_attribute("routing.http2.enabled", "false").is_err());
        assert!(load_balancer_attribute("routing.http.xff_header_processing.mode", "drop").is_err());
        assert!(load_balancer_attribute("x", "y").is_err());
        for (k, v) in load_balancer_attribute_defaults() {
            assert!(load_balancer_attribute(&k, &v).is_ok(), "{k}");
        }
    }

    #[test]
    fn forward_actions_are_normalised_and_checked() {
        let a = actions("DefaultActions", &[json!({"Type": "forward", "TargetGroupArn": "arn:tg"})]).unwrap();
        let fc = a[0].forward_config.as_ref().unwrap();
        assert_eq!(fc.target_groups, vec![WeightedTargetGroup { target_group_arn: "arn:tg".into(), weight: Some(1) }]);
        assert_eq!(a[0].target_group_arn.as_deref(), Some("arn:tg"));
        let weighted = json!({"Type": "forward", "ForwardConfig": {"TargetGroups": [
            {"TargetGroupArn": "a", "Weight": 3}, {"TargetGroupArn": "b", "Weight": 0}]}});
        let a = actions("DefaultActions", &[weighted]).unwrap();
        assert_eq!(a[0].target_group_arn, None);
        let over =
            json!({"Type": "forward", "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": "a", "Weight": 1000}]}});
        assert_eq!(code(actions("A", &[over]).unwrap_err()), "ValidationError");
        let dup = json!({"Type": "forward", "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": "a"}, {"TargetGroupArn": "a"}]}});
        assert!(actions("A", &[dup]).is_err());
        let sticky = json!({"Type": "forward", "ForwardConfig": {"TargetGroups": [{"TargetGroupArn": "a"}],
            "TargetGroupStickinessConfig": {"Enabled": true, "DurationSeconds": 604801}}});
        assert!(actions("A", &[sticky]).is_err());
        assert_eq!(code(actions("A", &[json!({"Type": "forward"})]).unwrap_err()), "InvalidLoadBalancerAction");
        assert_eq!(code(actions("A", &[]).unwrap_err()), "ValidationError");
        let two =
            [json!({"Type": "forward", "TargetGroupArn": "a"}), json!({"Type": "forward", "TargetGroupArn": "b"})];
        assert_eq!(code(actions("A", &two).unwrap_err()), "TooManyActions");
        let oidc = json!({"Type": "authenticate-oidc"});
        assert_eq!(code(actions("A", &[oidc]).unwrap_err()), "UnsupportedProtocol");
    }

    #[test]
    fn redirects_get_defaults_and_never_loop() {
        let r = redirect(&json!({"Protocol": "HTTPS", "Port": "443", "StatusCode": "HTTP_301"})).unwrap();
        assert_eq!(r["Host"], "#{host}");
        assert_eq!(r["Path"], "/#{path}");
        assert_eq!(r["Query"], "#{query}");
        assert_eq!(code(redirect(&json!({"StatusCode": "HTTP_302"})).unwrap_err()), "InvalidLoadBalancerAction");
        assert!(redirect(&json!({"Port": "70000", "StatusCode": "HTTP_301"})).is_err());
        assert!(redirect(&json!({"Path": "x", "StatusCode": "HTTP_301"})).is_err());
    }

    #[test]
    fn fixed_responses() {
        assert!(
            fixed_response(&json!({"StatusCode": "503", "ContentType": "text/plain", "MessageBody": "down"})).is_ok()
        );
        for bad in ["302", "600", "20", "2x0"] {
            assert!(fixed_response(&json!({"StatusCode": bad})).is_err(), "{bad}");
        }
        assert!(fixed_response(&json!({"StatusCode": "200", "ContentType": "image/png"})).is_err());
        assert!(fixed_response(&json!({"StatusCode": "200", "MessageBody": "x".repeat(1025)})).is_err());
    }

    #[test]
    fn conditions_forms_and_limits() {
        let c = conditions(&[json!({"Field": "path-pattern", "Values": ["/api/*"]})]).unwrap();
        assert_eq!(c[0].values, vec!["/api/*"]);
        assert_eq!(c[0].extra["PathPatternConfig"], json!({"Values": ["/api/*"]}));
        let c =
            conditions(&[json!({"Field": "host-header", "HostHeaderConfig": {"Values": ["*.example.com"]}})]).unwrap();
        assert_eq!(c[0].values, vec!["*.example.com"]);
        assert!(conditions(&[]).is_err());
        assert!(conditions(&[json!({"Field": "cookie", "Values": ["x"]})]).is_err());
        assert!(conditions(&[json!({"Field": "source-ip", "Values": ["10.0.0.0/8"]})]).is_err());
        assert!(conditions(&[json!({"Field": "source-ip", "SourceIpConfig": {"Values": ["10.0.0.0/33"]}})]).is_err());
        assert!(
            conditions(&[json!({"Field": "source-ip", "SourceIpConfig": {"Values": ["10.0.0.0/8", "::1/128"]}})])
                .is_ok()
        );
        assert!(
            conditions(&[json!({"Field": "http-request-method", "HttpRequestMethodConfig": {"Values": ["get"]}})])
                .is_err()
        );
        assert!(
            conditions(&[
                json!({"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": "X-Env", "Values": ["a"]}})
            ])
            .is_ok()
        );
        assert!(
            conditions(&[json!({"Field": "query-string", "QueryStringConfig": {"Values": [{"Key": "v"}]}})]).is_err()
        );
        let six = json!({"Field": "path-pattern", "Values": ["/a", "/b", "/c", "/d", "/e", "/f"]});
        assert!(conditions(&[six]).is_err());
        let twice =
            [json!({"Field": "path-pattern", "Values": ["/a"]}), json!({"Field": "path-pattern", "Values": ["/b"]})];
        assert!(conditions(&twice).is_err());
        let headers = [
            json!({"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": "A", "Values": ["1"]}}),
            json!({"Field": "http-header", "HttpHeaderConfig": {"HttpHeaderName": "B", "Values": ["2"]}}),
        ];
        assert!(conditions(&headers).is_ok());
        assert!(conditions(&[json!({"Field": "path-pattern", "Values": ["/a b"]})]).is_err());
        assert!(conditions(&[json!({"Field": "path-pattern", "HostHeaderConfig": {"Values": ["a"]}})]).is_err());
    }

    #[test]
    fn targets() {
        assert!(ip_target("172.17.0.2").is_ok());
        assert!(ip_target("0.0.0.0").is_err());
        assert!(ip_target("224.0.0.1").is_err());
        assert!(ip_target("i-0123").is_err());
        assert!(instance_id_form("i-0123456789abcdef0"));
        assert!(instance_id_form("i-01234567"));
        assert!(!instance_id_form("i-XYZ"));
        assert!(!instance_id_form("10.0.0.1"));
        assert!(cidr("10.0.0.0/8").is_ok());
        assert!(cidr("10.0.0.0").is_err());
    }
}
