//! Behaviour of the SQLite store through the public `Store` contract.

// Helpers outside `#[test]` fns are not covered by `allow-unwrap-in-tests`.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use std::future::Future;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;
use wharf_store::{Compare, EventKind, KeyValue, Op, RangeRequest, SqliteStore, Store, StoreError, Txn};

fn temp_store() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path().join("wharf.db")).unwrap();
    (dir, store)
}

async fn put(store: &impl Store, key: &str, value: &str) -> i64 {
    let resp = store.txn(Txn { compares: vec![], ops: vec![Op::put(key, value.to_owned())] }).await.unwrap();
    assert!(resp.succeeded);
    resp.revision
}

async fn get(store: &impl Store, key: &str) -> Option<KeyValue> {
    store.get(key).await.unwrap()
}

fn keys(kvs: &[KeyValue]) -> Vec<&str> {
    kvs.iter().map(|kv| kv.key.as_str()).collect()
}

#[tokio::test]
async fn put_get_revisions_versions_and_delete() {
    let (_dir, store) = temp_store();
    assert_eq!(store.current_revision(), 0);
    assert_eq!(put(&store, "/a", "1").await, 1);
    assert_eq!(put(&store, "/b", "x").await, 2);
    assert_eq!(put(&store, "/a", "2").await, 3);

    let a = get(&store, "/a").await.unwrap();
    assert_eq!(a.value, Bytes::from("2"));
    assert_eq!((a.create_revision, a.mod_revision, a.version, a.lease), (1, 3, 2, None));
    assert_eq!(store.current_revision(), 3);

    let resp = store.txn(Txn { compares: vec![], ops: vec![Op::delete("/a")] }).await.unwrap();
    assert_eq!((resp.succeeded, resp.revision), (true, 4));
    assert!(get(&store, "/a").await.is_none());

    // Deleting a missing key and empty transactions change nothing.
    let resp = store.txn(Txn { compares: vec![], ops: vec![Op::delete("/a")] }).await.unwrap();
    assert_eq!((resp.succeeded, resp.revision), (true, 4));
    let resp = store.txn(Txn::default()).await.unwrap();
    assert_eq!((resp.succeeded, resp.revision), (true, 4));

    // Re-creating starts a fresh life.
    assert_eq!(put(&store, "/a", "3").await, 5);
    let a = get(&store, "/a").await.unwrap();
    assert_eq!((a.create_revision, a.mod_revision, a.version), (5, 5, 1));
}

#[tokio::test]
async fn compares_guard_every_op() {
    let (_dir, store) = temp_store();
    let create = |key: &str| Txn {
        compares: vec![Compare::ModRevision(key.into(), 0)],
        ops: vec![Op::put(key, "v"), Op::put("/other", "w")],
    };
    assert!(store.txn(create("/k")).await.unwrap().succeeded);
    let failed = store.txn(create("/k")).await.unwrap();
    assert_eq!((failed.succeeded, failed.revision), (false, 1));
    assert_eq!(get(&store, "/other").await.unwrap().version, 1);

    let empty = |prefix: &str| Txn {
        compares: vec![Compare::PrefixEmpty(prefix.into())],
        ops: vec![Op::put(format!("{prefix}x"), "v")],
    };
    assert!(!store.txn(empty("/k")).await.unwrap().succeeded);
    assert!(store.txn(empty("/j/")).await.unwrap().succeeded);
    assert!(!store.txn(empty("/j/")).await.unwrap().succeeded);
    assert_eq!(store.current_revision(), 2);
}

#[tokio::test]
async fn range_honours_prefix_after_limit_order_and_keys_only() {
    let (_dir, store) = temp_store();
    for key in ["/a", "/b/1", "/b/2", "/b/3", "/b/4", "/b0", "/c"] {
        put(&store, key, "value").await;
    }
    let range = |prefix: &str, after: Option<&str>, limit: usize, descending: bool| RangeRequest {
        prefix: prefix.into(),
        after: after.map(Into::into),
        limit,
        descending,
        keys_only: false,
    };
    let all = store.range(range("/b/", None, 0, false)).await.unwrap();
    assert_eq!(keys(&all.kvs), ["/b/1", "/b/2", "/b/3", "/b/4"]);
    assert!(!all.more);
    assert_eq!(all.revision, 7);

    let page = store.range(range("/b/", None, 2, false)).await.unwrap();
    assert_eq!((keys(&page.kvs), page.more), (vec!["/b/1", "/b/2"], true));
    let page = store.range(range("/b/", Some("/b/2"), 2, false)).await.unwrap();
    assert_eq!((keys(&page.kvs), page.more), (vec!["/b/3", "/b/4"], false));
    let page = store.range(range("/b/", Some("/b/4"), 2, false)).await.unwrap();
    assert!(page.kvs.is_empty() && !page.more);

    let desc = store.range(range("/b/", None, 3, true)).await.unwrap();
    assert_eq!((keys(&desc.kvs), desc.more), (vec!["/b/4", "/b/3", "/b/2"], true));
    let desc = store.range(range("/b/", Some("/b/2"), 3, true)).await.unwrap();
    assert_eq!((keys(&desc.kvs), desc.more), (vec!["/b/1"], false));
    let desc = store.range(range("/b/", Some("/z"), 0, true)).await.unwrap();
    assert_eq!(desc.kvs.len(), 4);
    let desc = store.range(range("/b/", Some("/a"), 0, true)).await.unwrap();
    assert!(desc.kvs.is_empty());

    let everything = store.range(range("", None, 0, true)).await.unwrap();
    assert_eq!(everything.kvs.len(), 7);
    assert_eq!(everything.kvs[0].key, "/c");

    let mut req = range("/b", Some("/b/3"), 0, false);
    req.keys_only = true;
    let keys_only = store.range(req).await.unwrap();
    assert_eq!(keys(&keys_only.kvs), ["/b/4", "/b0"]);
    assert!(keys_only.kvs.iter().all(|kv| kv.value.is_empty() && kv.version == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_cas_increments_lose_no_update() {
    let (_dir, store) = temp_store();
    const TASKS: usize = 8;
    const INCREMENTS: usize = 200;
    let mut tasks = Vec::new();
    for _ in 0..TASKS {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut retries = 0;
            for _ in 0..INCREMENTS {
                loop {
                    let current = store.get("/counter").await.unwrap();
                    let (n, rev) = current.map_or((0, 0), |kv| {
                        (std::str::from_utf8(&kv.value).unwrap().parse::<usize>().unwrap(), kv.mod_revision)
                    });
                    let txn = Txn {
                        compares: vec![Compare::ModRevision("/counter".into(), rev)],
                        ops: vec![Op::put("/counter", (n + 1).to_string())],
                    };
                    if store.txn(txn).await.unwrap().succeeded {
                        break;
                    }
                    retries += 1;
                }
            }
            retries
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let counter = get(&store, "/counter").await.unwrap();
    assert_eq!(counter.value, Bytes::from((TASKS * INCREMENTS).to_string()));
    assert_eq!(counter.version, (TASKS * INCREMENTS) as i64);
    assert_eq!(store.current_revision(), (TASKS * INCREMENTS) as i64);
}

#[tokio::test]
async fn reopen_keeps_keys_revisions_and_counter() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wharf.db");
    let store = SqliteStore::open(&path).unwrap();
    for i in 0..100 {
        put(&store, &format!("/k/{i:03}"), &i.to_string()).await;
    }
    store.txn(Txn { compares: vec![], ops: vec![Op::delete("/k/000")] }).await.unwrap();
    let before = store.range(RangeRequest { prefix: "/".into(), ..Default::default() }).await.unwrap();
    drop(store);

    let store = SqliteStore::open(&path).unwrap();
    let after = store.range(RangeRequest { prefix: "/".into(), ..Default::default() }).await.unwrap();
    assert_eq!(before, after);
    assert_eq!(after.kvs.len(), 99);
    assert_eq!(store.current_revision(), 101);
    assert_eq!(put(&store, "/k/050", "again").await, 102);
    assert_eq!(get(&store, "/k/050").await.unwrap().version, 2);
}

#[tokio::test]
async fn open_failures_are_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no/such/dir/wharf.db");
    let err = SqliteStore::open(&missing).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err:?}");

    let path = dir.path().join("wharf.db");
    let _first = SqliteStore::open(&path).unwrap();
    let err = SqliteStore::open(&path).unwrap_err();
    assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
    assert!(std::error::Error::source(&err).unwrap().to_string().contains("locked"), "{err:?}");
}

#[tokio::test]
async fn close_flushes_queued_writes_then_refuses() {
    let (_dir, store) = temp_store();
    let mut watch = store.watch("/", 0).unwrap();
    // Poll each txn once so it is queued, then close before anyone waits for an answer.
    let mut queued: Vec<_> = (0..20)
        .map(|i| Box::pin(store.txn(Txn { compares: vec![], ops: vec![Op::put(format!("/q/{i}"), "v")] })))
        .collect();
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    for txn in &mut queued {
        assert!(txn.as_mut().poll(&mut cx).is_pending());
    }
    store.clone().close();
    for txn in queued {
        assert!(txn.await.unwrap().succeeded);
    }
    assert_eq!(store.current_revision(), 20);
    assert!(matches!(store.txn(Txn::default()).await, Err(StoreError::Closed)));
    assert!(matches!(store.grant_lease(Duration::from_secs(1)).await, Err(StoreError::Closed)));
    assert!(matches!(store.watch("/", 0), Err(StoreError::Closed)));
    for _ in 0..20 {
        assert!(watch.next().await.unwrap().is_ok());
    }
    assert!(watch.next().await.is_none(), "watches end when the store closes");
    assert!(get(&store, "/q/19").await.is_some(), "reads still work after close");
}

#[tokio::test]
async fn watch_streams_prefix_events_in_revision_order() {
    let (_dir, store) = temp_store();
    let mut watch = store.watch("/w/", 0).unwrap();
    put(&store, "/w/a", "1").await;
    put(&store, "/other", "x").await;
    store.txn(Txn { compares: vec![], ops: vec![Op::put("/w/b", "2"), Op::delete("/w/a")] }).await.unwrap();

    let first = watch.next().await.unwrap().unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].kind.clone(), first[0].kv.mod_revision), (EventKind::Put, 1));
    let second = watch.next().await.unwrap().unwrap();
    assert_eq!(second.len(), 2);
    assert_eq!((second[0].kind.clone(), second[0].kv.key.as_str()), (EventKind::Put, "/w/b"));
    assert_eq!((second[1].kind.clone(), second[1].kv.key.as_str()), (EventKind::Delete, "/w/a"));
    assert!(second.iter().all(|e| e.kv.mod_revision == 3));
    assert!(second[1].kv.value.is_empty());
}

#[tokio::test]
async fn overlapping_watches_each_get_exactly_their_prefix() {
    let (_dir, store) = temp_store();
    let prefixes = ["", "/o", "/o/", "/o/a", "/o/a/key", "/o/b", "/p/", "/o/a/key/deeper"];
    let mut watches: Vec<_> = prefixes.iter().map(|p| store.watch(p, 0).unwrap()).collect();
    // A second watcher of one prefix, dropped before anything is written.
    drop(store.watch("/o/", 0).unwrap());
    let written = ["/o/a/key", "/o/b/x", "/p/1", "/o/a", "/q"];
    store.txn(Txn { compares: vec![], ops: written.iter().map(|k| Op::put(*k, "v")).collect() }).await.unwrap();
    put(&store, "/o/a/key", "again").await;
    for (prefix, watch) in prefixes.iter().zip(&mut watches) {
        let mut expected: Vec<Vec<&str>> = vec![];
        let first: Vec<&str> = written.iter().copied().filter(|k| k.starts_with(prefix)).collect();
        if !first.is_empty() {
            expected.push(first);
        }
        if "/o/a/key".starts_with(prefix) {
            expected.push(vec!["/o/a/key"]);
        }
        for batch in expected {
            let got = watch.next().await.unwrap().unwrap();
            assert_eq!(got.iter().map(|e| e.kv.key.as_str()).collect::<Vec<_>>(), batch, "watch of {prefix:?}");
        }
        // Nothing more is queued for it.
        let more = tokio::time::timeout(Duration::from_millis(20), watch.next()).await;
        assert!(more.is_err(), "watch of {prefix:?} got more: {more:?}");
    }
}

#[tokio::test]
async fn watch_from_the_past_replays_then_follows() {
    let (_dir, store) = temp_store();
    for i in 1..=5 {
        put(&store, &format!("/r/{i}"), "v").await;
    }
    let mut watch = store.watch("/r/", 2).unwrap();
    put(&store, "/r/6", "v").await;
    for expected in 3..=6 {
        let batch = watch.next().await.unwrap().unwrap();
        assert_eq!(batch[0].kv.mod_revision, expected);
    }
    let mut future = store.watch("/r/", 7).unwrap();
    put(&store, "/r/7", "v").await;
    put(&store, "/r/8", "v").await;
    assert_eq!(future.next().await.unwrap().unwrap()[0].kv.key, "/r/8");
}

#[tokio::test]
async fn watch_older_than_history_is_compacted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wharf.db");
    let store = SqliteStore::open(&path).unwrap();
    for i in 0..3 {
        put(&store, &format!("/c/{i}"), "v").await;
    }
    drop(store);
    let store = SqliteStore::open(&path).unwrap();
    let mut watch = store.watch("/c/", 1).unwrap();
    let err = watch.next().await.unwrap().unwrap_err();
    assert!(matches!(err, StoreError::Compacted { requested: 1, oldest: 3 }), "{err:?}");
    assert!(watch.next().await.is_none());
    // From the current revision on, nothing is missing.
    let mut watch = store.watch("/c/", 3).unwrap();
    put(&store, "/c/3", "v").await;
    assert_eq!(watch.next().await.unwrap().unwrap()[0].kv.mod_revision, 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_watcher_is_cut_off_without_blocking_writes() {
    let (_dir, store) = temp_store();
    let mut slow = store.watch("/s/", 0).unwrap();
    let writes: Vec<_> = (0..1500)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move { put(&store, &format!("/s/{i}"), "v").await })
        })
        .collect();
    for write in writes {
        write.await.unwrap();
    }
    let mut received = 0;
    let err = loop {
        match slow.next().await.unwrap() {
            Ok(_) => received += 1,
            Err(err) => break err,
        }
    };
    assert!(matches!(err, StoreError::Compacted { .. }), "{err:?}");
    assert!(received > 0 && received < 1500);
    assert!(slow.next().await.is_none());
}

#[tokio::test]
async fn lease_expiry_deletes_attached_keys_in_one_revision() {
    let (_dir, store) = temp_store();
    let lease = store.grant_lease(Duration::from_millis(200)).await.unwrap();
    let ops = ["/l/a", "/l/b"].map(|key| Op::Put { key: key.into(), value: Bytes::from("v"), lease: Some(lease) });
    store.txn(Txn { compares: vec![], ops: ops.to_vec() }).await.unwrap();
    put(&store, "/l/free", "v").await;
    assert_eq!(get(&store, "/l/a").await.unwrap().lease, Some(lease));
    let mut watch = store.watch("/l/", store.current_revision()).unwrap();

    let batch = tokio::time::timeout(Duration::from_secs(3), watch.next()).await.unwrap().unwrap().unwrap();
    assert_eq!(keys(&batch.iter().map(|e| e.kv.clone()).collect::<Vec<_>>()), ["/l/a", "/l/b"]);
    assert!(batch.iter().all(|e| e.kind == EventKind::Delete && e.kv.mod_revision == 3));
    assert!(get(&store, "/l/a").await.is_none());
    assert!(get(&store, "/l/free").await.is_some());
    assert!(matches!(store.keep_alive(lease).await, Err(StoreError::LeaseNotFound(id)) if id == lease));
}

#[tokio::test]
async fn revoke_and_keep_alive() {
    let (_dir, store) = temp_store();
    let short = store.grant_lease(Duration::from_secs(1)).await.unwrap();
    let revoked = store.grant_lease(Duration::from_secs(60)).await.unwrap();
    assert_ne!(short, revoked);
    for (key, lease) in [("/k/short", short), ("/k/revoked", revoked)] {
        let op = Op::Put { key: key.into(), value: Bytes::from("v"), lease: Some(lease) };
        store.txn(Txn { compares: vec![], ops: vec![op] }).await.unwrap();
    }
    store.revoke_lease(revoked).await.unwrap();
    assert!(get(&store, "/k/revoked").await.is_none());
    assert!(matches!(store.revoke_lease(revoked).await, Err(StoreError::LeaseNotFound(_))));

    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        store.keep_alive(short).await.unwrap();
    }
    assert!(get(&store, "/k/short").await.is_some(), "kept alive past its TTL");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(get(&store, "/k/short").await.is_none(), "expired once no longer kept alive");
}

#[tokio::test]
async fn unknown_lease_fails_the_whole_txn() {
    let (_dir, store) = temp_store();
    let txn = Txn {
        compares: vec![],
        ops: vec![Op::put("/a", "v"), Op::Put { key: "/b".into(), value: Bytes::from("v"), lease: Some(42) }],
    };
    assert!(matches!(store.txn(txn).await, Err(StoreError::LeaseNotFound(42))));
    assert!(get(&store, "/a").await.is_none());
    assert_eq!(store.current_revision(), 0);
}

#[tokio::test]
async fn leases_survive_reopen_with_a_fresh_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wharf.db");
    let store = SqliteStore::open(&path).unwrap();
    let lease = store.grant_lease(Duration::from_secs(60)).await.unwrap();
    let forever = store.grant_lease(Duration::MAX).await.unwrap();
    let op = Op::Put { key: "/leased".into(), value: Bytes::from("v"), lease: Some(lease) };
    store.txn(Txn { compares: vec![], ops: vec![op] }).await.unwrap();
    store.close();

    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(get(&store, "/leased").await.unwrap().lease, Some(lease));
    store.keep_alive(lease).await.unwrap();
    store.keep_alive(forever).await.unwrap();
    let next = store.grant_lease(Duration::from_secs(1)).await.unwrap();
    assert!(next > lease, "lease ids are never reused");
    store.revoke_lease(lease).await.unwrap();
    assert!(get(&store, "/leased").await.is_none());
}

const CRASH_CHILD_ENV: &str = "WHARF_STORE_CRASH_CHILD_DB";

/// Runs as the parent (kills a writer child with SIGKILL, then checks its acknowledged
/// writes) or, when `CRASH_CHILD_ENV` is set, as that child.
#[test]
fn kill_9_keeps_every_acknowledged_write() {
    if let Ok(path) = std::env::var(CRASH_CHILD_ENV) {
        crash_child(&path);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wharf.db");
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "kill_9_keeps_every_acknowledged_write", "--nocapture", "--test-threads=1"])
        .env(CRASH_CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        if let Some(ack) = line.unwrap().strip_prefix("ACK ") {
            let (key, revision) = ack.split_once(' ').unwrap();
            acked.push((key.to_owned(), revision.parse::<i64>().unwrap()));
            if acked.len() == 500 {
                child.kill().unwrap(); // SIGKILL, while other writes are in flight
                break;
            }
        }
    }
    child.wait().unwrap();
    assert_eq!(acked.len(), 500, "the child stopped early");

    let store = SqliteStore::open(&path).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
    for (key, revision) in &acked {
        let kv = runtime.block_on(get(&store, key));
        let kv = kv.unwrap_or_else(|| panic!("acknowledged {key} was lost"));
        assert_eq!(kv.mod_revision, *revision);
    }
    assert!(store.current_revision() >= acked.iter().map(|(_, r)| *r).max().unwrap());
}

fn crash_child(path: &str) -> ! {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    runtime.block_on(async {
        let store = SqliteStore::open(path).unwrap();
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    for i in 0.. {
                        let key = format!("/crash/{w}/{i}");
                        let revision = put(&store, &key, "payload").await;
                        println!("ACK {key} {revision}");
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.unwrap();
        }
    });
    unreachable!("the crash child writes until it is killed")
}
