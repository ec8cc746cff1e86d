//! CloudWatch Logs through the real handlers and model validation, on a file-backed log
//! store: throughput (10,000 lines delivered with none lost, read back in order), concurrent
//! writers, pagination to the end, and arbitrary requests never causing a server fault.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use std::time::Instant;
use wharf_api::{Ctx, Db, LOGS, LogStore, State};
use wharf_types::Error;
use wharf_types::Scope;

fn ctx_with(logs: LogStore) -> Ctx {
    let store = wharf_store::SqliteStore::open_in_memory().unwrap();
    let registry = wharf_registry::Registry::ephemeral(store.clone()).unwrap();
    let metrics = wharf_api::MetricStore::open_in_memory().unwrap();
    let state = State { db: Db::new(store), logs, metrics, registry, vault: wharf_api::Vault::ephemeral() };
    state.context(Scope::new("123456789012", "us-east-1"), "AKIA".into())
}

async fn try_call(ctx: &Ctx, op: &str, body: Value) -> Result<Value, Error> {
    let input = LOGS.model.validate(op, body)?;
    wharf_api::call(&LOGS, ctx, op, input).await.expect("implemented")
}

async fn call(ctx: &Ctx, op: &str, body: Value) -> Value {
    match try_call(ctx, op, body).await {
        Ok(v) => v,
        Err(e) => panic!("{op} failed: {e:?}"),
    }
}

fn now_ms() -> i64 {
    wharf_api::logs::now_ms()
}

async fn group_and_stream(ctx: &Ctx, group: &str, stream: &str) {
    call(ctx, "CreateLogGroup", json!({"logGroupName": group})).await;
    call(ctx, "CreateLogStream", json!({"logGroupName": group, "logStreamName": stream})).await;
}

/// A line like a web server's access log (~110 bytes).
fn line(i: usize) -> String {
    format!(
        "10.0.{}.{} - - [24/Nov/2025:10:00:00 +0000] \"GET /api/items/{i} HTTP/1.1\" 200 512 \"-\" \"curl/8.5\" seq={i}",
        i % 250,
        i % 200
    )
}

/// Every event of a stream, following `nextForwardToken` until it comes back unchanged.
async fn read_all(ctx: &Ctx, group: &str, stream: &str, limit: Option<i64>) -> (Vec<Value>, usize) {
    let mut token: Option<String> = None;
    let (mut events, mut pages) = (Vec::new(), 0);
    loop {
        let mut body = json!({"logGroupName": group, "logStreamName": stream, "startFromHead": true});
        if let Some(l) = limit {
            body["limit"] = json!(l);
        }
        if let Some(t) = &token {
            body["nextToken"] = json!(t);
        }
        let out = call(ctx, "GetLogEvents", body).await;
        pages += 1;
        events.extend(out["events"].as_array().unwrap().iter().cloned());
        let next = out["nextForwardToken"].as_str().unwrap().to_string();
        if token.as_deref() == Some(next.as_str()) {
            return (events, pages);
        }
        token = Some(next);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_lines_are_delivered_with_none_lost_and_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx_with(LogStore::open(&dir.path().join("logs.db")).unwrap());
    group_and_stream(&ctx, "/ecs/web", "ecs/web/0123456789abcdef").await;
    let base = now_ms() - 60_000;
    let started = Instant::now();
    for batch in 0..10 {
        let events: Vec<Value> = (0..1000)
            .map(|j| {
                let i = batch * 1000 + j;
                // Several lines per millisecond, as a busy container writes them.
                json!({"timestamp": base + (i / 4) as i64, "message": line(i)})
            })
            .collect();
        let out = call(
            &ctx,
            "PutLogEvents",
            json!({"logGroupName": "/ecs/web", "logStreamName": "ecs/web/0123456789abcdef", "logEvents": events}),
        )
        .await;
        assert!(out.get("rejectedLogEventsInfo").is_none(), "{out}");
    }
    let wrote = started.elapsed();

    let started = Instant::now();
    let (events, pages) = read_all(&ctx, "/ecs/web", "ecs/web/0123456789abcdef", None).await;
    let read = started.elapsed();
    assert_eq!(events.len(), 10_000);
    for (i, e) in events.iter().enumerate() {
        assert_eq!(e["message"], json!(line(i)), "event {i} out of place");
    }
    // The same with small pages: every event exactly once, in order.
    let (small, small_pages) = read_all(&ctx, "/ecs/web", "ecs/web/0123456789abcdef", Some(777)).await;
    assert_eq!(small, events);
    assert_eq!(small_pages, 10_000 / 777 + 2);
    eprintln!(
        "throughput: wrote 10,000 lines in 10 PutLogEvents batches in {wrote:?} ({:.0} lines/s); \
         read them back with GetLogEvents in {read:?} ({pages} calls, the last one answering no events)",
        10_000.0 / wrote.as_secs_f64()
    );

    // FilterLogEvents walks the whole group to the end, too.
    let mut token: Option<String> = None;
    let mut seen = Vec::new();
    loop {
        let mut body = json!({"logGroupName": "/ecs/web", "limit": 3000});
        if let Some(t) = &token {
            body["nextToken"] = json!(t);
        }
        let out = call(&ctx, "FilterLogEvents", body).await;
        seen.extend(out["events"].as_array().unwrap().iter().map(|e| e["message"].clone()));
        match out.get("nextToken").and_then(Value::as_str) {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
    }
    assert_eq!(seen.len(), 10_000);
    assert!(seen.iter().zip(&events).all(|(a, b)| *a == b["message"]));

    let group = call(&ctx, "DescribeLogGroups", json!({"logGroupNamePrefix": "/ecs/web"})).await;
    let stored: usize = (0..10_000).map(|i| line(i).len()).sum();
    assert_eq!(group["logGroups"][0]["storedBytes"], json!(stored));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_to_one_stream_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = ctx_with(LogStore::open(&dir.path().join("logs.db")).unwrap());
    group_and_stream(&ctx, "g", "s").await;
    let base = now_ms() - 10_000;
    let writers: Vec<_> = (0..8)
        .map(|w| {
            let ctx = ctx.clone();
            tokio::spawn(async move {
                for b in 0..5 {
                    let events: Vec<Value> = (0..100)
                        .map(|i| json!({"timestamp": base + i, "message": format!("w{w} b{b} e{i}")}))
                        .collect();
                    call(&ctx, "PutLogEvents", json!({"logGroupName": "g", "logStreamName": "s", "logEvents": events}))
                        .await;
                }
            })
        })
        .collect();
    // Readers run alongside the writers.
    let reader = {
        let ctx = ctx.clone();
        tokio::spawn(async move {
            for _ in 0..20 {
                call(&ctx, "GetLogEvents", json!({"logGroupName": "g", "logStreamName": "s", "limit": 50})).await;
            }
        })
    };
    for w in writers {
        w.await.unwrap();
    }
    reader.await.unwrap();
    let (events, _) = read_all(&ctx, "g", "s", Some(1000)).await;
    assert_eq!(events.len(), 8 * 5 * 100);
    let mut messages: Vec<&str> = events.iter().map(|e| e["message"].as_str().unwrap()).collect();
    messages.sort_unstable();
    messages.dedup();
    assert_eq!(messages.len(), 4000);
    let ts: Vec<i64> = events.iter().map(|e| e["timestamp"].as_i64().unwrap()).collect();
    assert!(ts.windows(2).all(|w| w[0] <= w[1]), "events come back in timestamp order");
    let stream = call(&ctx, "DescribeLogStreams", json!({"logGroupName": "g"})).await;
    assert_eq!(stream["logStreams"][0]["firstEventTimestamp"], json!(base));
    assert_eq!(stream["logStreams"][0]["lastEventTimestamp"], json!(base + 99));
}

#[tokio::test]
async fn batches_follow_the_putlogevents_rules() {
    let ctx = ctx_with(LogStore::open_in_memory().unwrap());
    group_and_stream(&ctx, "g", "s").await;
    let now = now_ms();
    let put = |events: Value| {
        try_call(&ctx, "PutLogEvents", json!({"logGroupName": "g", "logStreamName": "s", "logEvents": events}))
    };
    let unsorted = json!([{"timestamp": now, "message": "b"}, {"timestamp": now - 1, "message": "a"}]);
    assert!(matches!(put(unsorted).await, Err(Error::InvalidParameter { .. })));
    let wide = json!([{"timestamp": now - 30 * 3_600_000, "message": "a"}, {"timestamp": now, "message": "b"}]);
    assert!(matches!(put(wide).await, Err(Error::InvalidParameter { .. })));
    let big = "x".repeat(100_000);
    let too_large: Vec<Value> = (0..11).map(|_| json!({"timestamp": now, "message": big})).collect();
    let err = put(json!(too_large)).await.unwrap_err();
    assert!(err.to_string().contains("exceeds limit of 1048576"), "{err}");
    let empty_message = json!([{"timestamp": now, "message": ""}]);
    assert!(matches!(put(empty_message).await, Err(Error::InvalidParameter { .. })));
    let too_many: Vec<Value> = (0..10_001).map(|_| json!({"timestamp": now, "message": "m"})).collect();
    assert!(matches!(put(json!(too_many)).await, Err(Error::InvalidParameter { .. })));
    // Rejections at both ends; the middle is stored.
    let mixed = json!([
        {"timestamp": now - 15 * 86_400_000i64, "message": "ancient"},
        {"timestamp": now - 1000, "message": "kept"},
        {"timestamp": now + 3 * 3_600_000, "message": "future"},
    ]);
    let out = put(mixed).await.unwrap();
    assert_eq!(out["rejectedLogEventsInfo"], json!({"tooOldLogEventEndIndex": 1, "tooNewLogEventStartIndex": 2}));
    let (events, _) = read_all(&ctx, "g", "s", None).await;
    assert_eq!(events.iter().map(|e| e["message"].as_str().unwrap()).collect::<Vec<_>>(), ["kept"]);
    let missing = try_call(
        &ctx,
        "PutLogEvents",
        json!({"logGroupName": "g", "logStreamName": "nope", "logEvents": [{"timestamp": now, "message": "m"}]}),
    )
    .await;
    assert!(
        matches!(missing, Err(Error::NotFound { ref message, .. }) if message == "The specified log stream does not exist.")
    );
    let missing = try_call(
        &ctx,
        "PutLogEvents",
        json!({"logGroupName": "nope", "logStreamName": "s", "logEvents": [{"timestamp": now, "message": "m"}]}),
    )
    .await;
    assert!(
        matches!(missing, Err(Error::NotFound { ref message, .. }) if message == "The specified log group does not exist.")
    );
}

/// Arbitrary JSON biased toward CloudWatch Logs member names.
fn arb_json() -> impl Strategy<Value = Value> {
    let names = prop::sample::select(vec![
        "logGroupName",
        "logStreamName",
        "logGroupIdentifier",
        "logEvents",
        "timestamp",
        "message",
        "limit",
        "nextToken",
        "startTime",
        "endTime",
        "startFromHead",
        "filterPattern",
        "logStreamNames",
        "logStreamNamePrefix",
        "logGroupNamePrefix",
        "logGroupNamePattern",
        "orderBy",
        "descending",
        "retentionInDays",
        "tags",
        "tagKeys",
        "resourceArn",
        "logGroupClass",
        "logGroupIdentifiers",
        "deletionProtectionEnabled",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        (-5i64..4000).prop_map(|n| json!(n)),
        Just(json!(now_ms())),
        "[a-zA-Z0-9:/_*?\" -]{0,12}".prop_map(Value::String),
        Just(json!("g")),
        Just(json!("s")),
        Just(json!("LastEventTime")),
        Just(json!("f/00000000000000000000000000000000000000000000000000000000/s")),
        Just(json!("arn:aws:logs:us-east-1:123456789012:log-group:g")),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((names.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Map<_, _>>())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn any_logs_request_is_answered_without_a_server_fault(
        op in prop::sample::select(LOGS.operations.to_vec()),
        body in arb_json(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let ctx = ctx_with(LogStore::open_in_memory().unwrap());
            group_and_stream(&ctx, "g", "s").await;
            if let Err(e) = try_call(&ctx, op, body).await {
                prop_assert!(e.is_client_fault(), "{op}: server fault {e:?}");
            }
            Ok(())
        })?;
    }
}
