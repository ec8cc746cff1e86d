//! Model-driven fuzzing of every implemented operation of every service: requests generated
//! from the botocore models (plausible ones, so handlers are reached) and mutated (a required
//! member dropped, a member of the wrong type, a huge string, an enum value that does not
//! exist, deep nesting, numbers out of range, an unknown member), through model validation and
//! the real handler on an in-memory store. Nothing may panic and nothing may be a server fault:
//! every refusal is the caller's (a 4xx with an AWS code).
//!
//! `WHARF_FUZZ_CASES` (default 48) sets the requests per operation; `-- --nocapture` prints
//! the figures per operation.
#![allow(clippy::unwrap_used)]

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Map, Value, json};
use wharf_api::{Ctx, Service};
use wharf_protocol::model::{Model, Shape};

/// Strings handlers often look up, so generated requests reach past "not found".
const WORDS: &[&str] = &["default", "web", "app", "/app/db", "prod/api", "AWSCURRENT", "my-repo", "g", "s"];

fn generate(model: &Model, shape: &str, depth: usize, rng: &mut StdRng) -> Value {
    let Some(s) = model.shape(shape) else { return Value::Null };
    match s {
        Shape::Structure { members, required } => {
            let mut out = Map::new();
            if depth > 6 {
                return Value::Object(out);
            }
            for (name, r) in members {
                if required.contains(name) || rng.random_bool(0.3) {
                    out.insert(name.clone(), generate(model, &r.shape, depth + 1, rng));
                }
            }
            Value::Object(out)
        }
        Shape::List { member, min, .. } => {
            let n = (min.unwrap_or(0.0) as usize).max(if depth > 6 { 0 } else { rng.random_range(0..3) });
            Value::Array((0..n.min(4)).map(|_| generate(model, &member.shape, depth + 1, rng)).collect())
        }
        Shape::Map { key, value, .. } => {
            let mut out = Map::new();
            if depth <= 6 {
                for _ in 0..rng.random_range(0..3) {
                    let k = generate(model, &key.shape, depth + 1, rng).as_str().unwrap_or("k").to_string();
                    out.insert(k, generate(model, &value.shape, depth + 1, rng));
                }
            }
            Value::Object(out)
        }
        Shape::String { enum_values: Some(values), .. } if !values.is_empty() => {
            json!(values[rng.random_range(0..values.len())])
        }
        Shape::String { min, max, .. } => {
            let min = min.unwrap_or(0.0) as usize;
            let max = max.map_or(64, |m| m as usize).min(64).max(min);
            let mut s = WORDS[rng.random_range(0..WORDS.len())].to_string();
            while s.len() < min {
                s.push('x');
            }
            s.truncate(max);
            json!(s)
        }
        Shape::Integer { min, max } => {
            let lo = min.unwrap_or(0.0) as i64;
            let hi = max.map_or(lo + 100, |m| m as i64).max(lo);
            json!(rng.random_range(lo..=hi))
        }
        Shape::Float => json!(rng.random_range(0.0..100.0)),
        Shape::Boolean => json!(rng.random_bool(0.5)),
        Shape::Timestamp => json!(1_700_000_000.0 + rng.random_range(0.0..1e6)),
        Shape::Blob => json!("aGVsbG8gd29ybGQ="),
    }
}

/// The paths (member names from the root) of every member in `v`.
fn paths(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if let Value::Object(m) = v {
        for (k, child) in m {
            prefix.push(k.clone());
            out.push(prefix.clone());
            paths(child, prefix, out);
            prefix.pop();
        }
    }
}

fn at<'a>(v: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    path.iter().try_fold(v, |cur, k| cur.as_object_mut()?.get_mut(k))
}

fn deep(levels: usize) -> Value {
    (0..levels).fold(json!("bottom"), |inner, _| json!({"a": inner}))
}

/// One mutation of a generated request.
fn mutate(mut v: Value, rng: &mut StdRng) -> Value {
    let mut all = vec![];
    paths(&v, &mut vec![], &mut all);
    let kind = rng.random_range(0..8);
    if all.is_empty() || kind == 7 {
        if let Some(o) = v.as_object_mut() {
            o.insert("notAMember".into(), json!(1));
        }
        return v;
    }
    let path = all[rng.random_range(0..all.len())].clone();
    if kind == 0 {
        // Drop a member (a required one, often).
        if let Some((last, parent)) = path.split_last()
            && let Some(p) = at(&mut v, parent).and_then(Value::as_object_mut)
        {
            p.remove(last);
        }
        return v;
    }
    if let Some(slot) = at(&mut v, &path) {
        *slot = match kind {
            1 => match slot {
                Value::String(_) => json!(12345),
                Value::Number(_) => json!("not a number"),
                Value::Bool(_) => json!("yes"),
                Value::Array(_) => json!({"not": "a list"}),
                _ => json!(["not", "a", "structure"]),
            },
            2 => json!("x".repeat(100_000)),
            3 => json!("NOT_A_VALID_ENUM_VALUE_\u{1F680}"),
            4 => deep(200),
            5 => json!(i64::MAX),
            _ => json!(-1),
        };
    }
    v
}

#[derive(Default, Debug)]
struct Figures {
    sent: usize,
    accepted: usize,
    refused: usize,
}

async fn seed(ctx: &Ctx, service: &Service) {
    if service.name() == "ecs" {
        let v = service.model.validate("CreateCluster", json!({"clusterName": "default"})).unwrap();
        service.call(ctx, "CreateCluster", v).await.unwrap().unwrap();
    }
}

#[test]
fn generated_and_mutated_requests_for_every_operation_get_no_server_fault() {
    let cases: usize = std::env::var("WHARF_FUZZ_CASES").ok().and_then(|c| c.parse().ok()).unwrap_or(48);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let mut rng = StdRng::seed_from_u64(0x5747_4152_4620);
    let mut table = vec![];
    for service in wharf_api::services() {
        for op in service.operations {
            let ctx = Ctx::in_memory("123456789012", "us-east-1");
            rt.block_on(seed(&ctx, service));
            let input = service.model.operation(op).and_then(|o| o.input.as_ref()).map(|r| r.shape.clone());
            let mut f = Figures::default();
            for i in 0..cases {
                let base = input.as_deref().map_or(json!({}), |s| generate(service.model, s, 0, &mut rng));
                // A quarter as generated, the rest mutated.
                let body = if i % 4 == 0 { base } else { mutate(base, &mut rng) };
                let shown = body.to_string();
                let result = rt.block_on(async {
                    match service.model.validate(op, body) {
                        Ok(input) => service.call(&ctx, op, input).await.expect("implemented"),
                        Err(e) => Err(e),
                    }
                });
                f.sent += 1;
                match result {
                    Ok(_) => f.accepted += 1,
                    Err(e) => {
                        assert!(
                            e.is_client_fault(),
                            "{} {op}: server fault {e:?} for {}",
                            service.name(),
                            &shown[..shown.len().min(600)]
                        );
                        // The wire mapping of every refusal is a 4xx with a code.
                        let wire = wharf_protocol::codes::wire_error(&e, service.name(), service.error_codes());
                        assert!(wire.status < 500 && !wire.code.is_empty());
                        f.refused += 1;
                    }
                }
            }
            table.push((service.name().to_string(), op.to_string(), f));
        }
    }
    let (sent, accepted): (usize, usize) = table.iter().fold((0, 0), |(s, a), (_, _, f)| (s + f.sent, a + f.accepted));
    eprintln!("| service | operation | sent | accepted | refused (4xx) | 5xx |");
    eprintln!("| --- | --- | ---: | ---: | ---: | ---: |");
    for (svc, op, f) in &table {
        eprintln!("| {svc} | {op} | {} | {} | {} | 0 |", f.sent, f.accepted, f.refused);
    }
    eprintln!("{} operations, {sent} requests, {accepted} accepted, 0 panics, 0 server faults", table.len());
}
