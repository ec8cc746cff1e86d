//! The log store: CloudWatch Logs groups, streams and events, kept outside the resource
//! store in their own SQLite file (`<data-dir>/logs.db`).
//!
//! Log events are high-volume, append-mostly and never part of a resource's desired state, so
//! they do not belong in the etcd-shaped store (whose in-memory mirror holds every key).
//! Here they are rows with indexes for the two read paths: one stream in time order
//! (`GetLogEvents`: `(stream, timestamp, id)`) and one group in time order (`FilterLogEvents`,
//! retention: `(group, timestamp, id)`). Groups carry the account and region, so everything is
//! partitioned by the caller's scope like the rest of Wharf.
//!
//! Concurrency: a [`SideDb`] (one writer, one reader, never on the async runtime). Every
//! `PutLogEvents` batch is one transaction.
//!
//! Durability: WAL with `synchronous=FULL`, as the resource store: an acknowledged
//! `PutLogEvents` survives a power loss. Batching makes this cheap (one fsync per batch, and a
//! busy container sends batches of thousands of lines); see the throughput test in
//! `tests/logs.rs`.

use super::filter::Pattern;
use crate::sidedb::{R, SideDb};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params, params_from_iter};
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;
use std::path::Path;
use wharf_types::{Error, Resource, Result, Scope};

/// Milliseconds in a day (retention periods are whole days).
pub const DAY_MS: i64 = 86_400_000;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS log_group (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    name TEXT NOT NULL,
    creation_time INTEGER NOT NULL,
    retention_days INTEGER,
    stored_bytes INTEGER NOT NULL DEFAULT 0,
    class TEXT NOT NULL DEFAULT 'STANDARD',
    kms_key_id TEXT,
    deletion_protection INTEGER NOT NULL DEFAULT 0,
    tags TEXT NOT NULL DEFAULT '{}',
    UNIQUE (account, region, name)
);
CREATE TABLE IF NOT EXISTS log_stream (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id INTEGER NOT NULL,
    name TEXT NOT NULL,
    creation_time INTEGER NOT NULL,
    first_event INTEGER,
    last_event INTEGER,
    last_ingestion INTEGER,
    sequence INTEGER NOT NULL DEFAULT 0,
    UNIQUE (group_id, name)
);
CREATE TABLE IF NOT EXISTS log_event (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id INTEGER NOT NULL,
    stream_id INTEGER NOT NULL,
    timestamp INTEGER NOT NULL,
    ingestion_time INTEGER NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS log_event_by_stream ON log_event (stream_id, timestamp);
CREATE INDEX IF NOT EXISTS log_event_by_group ON log_event (group_id, timestamp);
";

/// Rows deleted per transaction when enforcing retention, so writers are never held off long.
const PURGE_CHUNK: usize = 5_000;

/// A handle on the log store; cheap to clone.
#[derive(Clone, Debug)]
pub struct LogStore {
    db: SideDb,
}

pub fn group_not_found() -> Error {
    Error::NotFound { resource: Resource::Other, message: "The specified log group does not exist.".into() }
}

pub fn stream_not_found() -> Error {
    Error::NotFound { resource: Resource::Other, message: "The specified log stream does not exist.".into() }
}

/// A log group as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub name: String,
    pub creation_time: i64,
    pub retention_days: Option<i64>,
    pub stored_bytes: i64,
    pub class: String,
    pub kms_key_id: Option<String>,
    pub deletion_protection: bool,
    pub tags: BTreeMap<String, String>,
}

/// A log stream as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Stream {
    pub name: String,
    pub creation_time: i64,
    pub first_event: Option<i64>,
    pub last_event: Option<i64>,
    pub last_ingestion: Option<i64>,
    pub sequence: i64,
}

/// An event to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    pub timestamp: i64,
    pub message: String,
}

/// A stored event. `id` is unique in the store and grows with every insert: with the
/// timestamp it orders a stream totally, and it is the `eventId` of `FilterLogEvents`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub id: i64,
    pub timestamp: i64,
    pub ingestion_time: i64,
    pub message: String,
}

/// A position between two events of the `(timestamp, id)` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cursor {
    pub timestamp: i64,
    pub id: i64,
}

impl Cursor {
    pub fn at(e: &Event) -> Cursor {
        Cursor { timestamp: e.timestamp, id: e.id }
    }
    pub const FIRST: Cursor = Cursor { timestamp: i64::MIN, id: i64::MIN };
    pub const LAST: Cursor = Cursor { timestamp: i64::MAX, id: i64::MAX };
}

/// Where a stream read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    /// The first events of the range.
    Head,
    /// The last events of the range.
    Tail,
    /// Events after the cursor, oldest first.
    After(Cursor),
    /// Events before the cursor, the nearest ones.
    Before(Cursor),
}

/// A `GetLogEvents` read of one stream. Events come back oldest first.
#[derive(Debug, Clone)]
pub struct StreamRead {
    /// Inclusive.
    pub start: Option<i64>,
    /// Exclusive.
    pub end: Option<i64>,
    pub position: Position,
    pub limit: usize,
    /// Page budget: the sum of message bytes plus 26 per event.
    pub max_bytes: usize,
}

/// Which streams a `FilterLogEvents` searches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamSelection {
    All,
    Names(Vec<String>),
    Prefix(String),
}

/// A `FilterLogEvents` search of one group.
#[derive(Debug, Clone)]
pub struct GroupSearch {
    pub streams: StreamSelection,
    /// Inclusive.
    pub start: Option<i64>,
    /// Inclusive.
    pub end: Option<i64>,
    pub pattern: Pattern,
    pub after: Option<Cursor>,
    pub ascending: bool,
    pub limit: usize,
    pub max_bytes: usize,
    /// Events examined before answering with what matched so far and a token.
    pub scan_budget: usize,
}

/// An event found by a group search, with the stream it is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub stream: String,
    pub event: Event,
}

/// Filters of `DescribeLogGroups`.
#[derive(Debug, Clone, Default)]
pub struct GroupListing {
    pub prefix: Option<String>,
    /// Case-sensitive substring.
    pub pattern: Option<String>,
    pub names: Option<Vec<String>>,
    pub classes: Option<Vec<String>>,
    /// Names strictly after this one.
    pub after: Option<String>,
    pub limit: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamOrder {
    Name,
    LastEventTime,
}

/// Where a `DescribeLogStreams` page resumes: the sort key of the last stream returned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamKey {
    pub last_event: i64,
    pub name: String,
}

#[derive(Debug, Clone)]
pub struct StreamListing {
    pub prefix: Option<String>,
    pub order: StreamOrder,
    pub descending: bool,
    pub after: Option<StreamKey>,
    pub limit: usize,
}

/// What to create.
#[derive(Debug, Clone)]
pub struct NewGroup {
    pub name: String,
    pub class: String,
    pub kms_key_id: Option<String>,
    pub deletion_protection: bool,
    pub tags: BTreeMap<String, String>,
}

/// How a stored event sorts for the `LastEventTime` order (streams without events first).
pub fn stream_key(s: &Stream) -> StreamKey {
    StreamKey { last_event: s.last_event.unwrap_or(-1), name: s.name.clone() }
}

/// Events before this are expired under a retention of `days`.
pub fn retention_cutoff(days: Option<i64>, now: i64) -> Option<i64> {
    days.map(|d| now.saturating_sub(d.saturating_mul(DAY_MS)))
}

impl LogStore {
    /// Opens (creating if needed) the log database at `path`.
    pub fn open(path: &Path) -> std::result::Result<LogStore, rusqlite::Error> {
        Ok(LogStore { db: SideDb::open(path, SCHEMA, "log store")? })
    }

    /// A private in-memory store (tests).
    pub fn open_in_memory() -> std::result::Result<LogStore, rusqlite::Error> {
        Ok(LogStore { db: SideDb::open_in_memory(SCHEMA, "log store")? })
    }

    async fn write<T: Send + 'static>(&self, f: impl FnOnce(&mut Connection) -> R<T> + Send + 'static) -> Result<T> {
        self.db.write(f).await
    }

    async fn read<T: Send + 'static>(&self, f: impl FnOnce(&mut Connection) -> R<T> + Send + 'static) -> Result<T> {
        self.db.read(f).await
    }

    pub async fn create_group(&self, scope: &Scope, g: NewGroup, now: i64) -> Result<()> {
        let scope = scope.clone();
        self.write(move |c| {
            let tags = serde_json::to_string(&g.tags).map_err(|e| Error::Internal(e.to_string()))?;
            let n = c.execute(
                "INSERT INTO log_group (account, region, name, creation_time, class, kms_key_id, deletion_protection, tags)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT DO NOTHING",
                params![scope.account, scope.region, g.name, now, g.class, g.kms_key_id, g.deletion_protection, tags],
            )?;
            if n == 0 {
                return Err(Error::already_exists(Resource::Other, "The specified log group already exists").into());
            }
            Ok(())
        })
        .await
    }

    /// Deletes a group with its streams and events. `check` sees the group first and may
    /// refuse (deletion protection).
    pub async fn delete_group(
        &self,
        scope: &Scope,
        name: &str,
        check: impl FnOnce(&Group) -> Result<()> + Send + 'static,
    ) -> Result<()> {
        let (scope, name) = (scope.clone(), name.to_string());
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (id, group) = find_group(&tx, &scope, &name)?.ok_or_else(group_not_found)?;
            check(&group)?;
            tx.execute("DELETE FROM log_event WHERE group_id = ?1", [id])?;
            tx.execute("DELETE FROM log_stream WHERE group_id = ?1", [id])?;
            tx.execute("DELETE FROM log_group WHERE id = ?1", [id])?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub async fn group(&self, scope: &Scope, name: &str) -> Result<Group> {
        let (scope, name) = (scope.clone(), name.to_string());
        self.read(move |c| Ok(find_group(c, &scope, &name)?.ok_or_else(group_not_found)?.1)).await
    }

    /// One page of groups in name order; `true` when more may follow.
    pub async fn list_groups(&self, scope: &Scope, q: GroupListing) -> Result<(Vec<Group>, bool)> {
        let scope = scope.clone();
        self.read(move |c| {
            let mut sql = format!("SELECT {GROUP_COLUMNS} FROM log_group WHERE account = ?1 AND region = ?2");
            let mut args: Vec<SqlValue> = vec![scope.account.into(), scope.region.into()];
            if let Some(after) = q.after {
                args.push(after.into());
                sql += &format!(" AND name > ?{}", args.len());
            }
            if let Some(prefix) = q.prefix {
                args.push(prefix.into());
                let n = args.len();
                sql += &format!(" AND substr(name, 1, length(?{n})) = ?{n}");
            }
            if let Some(pattern) = q.pattern {
                args.push(pattern.into());
                sql += &format!(" AND instr(name, ?{}) > 0", args.len());
            }
            sql += " ORDER BY name";
            let mut stmt = c.prepare(&sql)?;
            let mut rows = stmt.query(params_from_iter(args))?;
            let mut out = Vec::new();
            while let Some(row) = rows.next()? {
                let (_, g) = group_row(row)?;
                if q.names.as_ref().is_some_and(|n| !n.contains(&g.name))
                    || q.classes.as_ref().is_some_and(|cl| !cl.contains(&g.class))
                {
                    continue;
                }
                if out.len() == q.limit {
                    return Ok((out, true));
                }
                out.push(g);
            }
            Ok((out, false))
        })
        .await
    }

    /// Read-modify-write of a group's settings (retention, deletion protection, tags) in one
    /// transaction; `f` may refuse the change.
    pub async fn update_group(
        &self,
        scope: &Scope,
        name: &str,
        f: impl FnOnce(&mut Group) -> Result<()> + Send + 'static,
    ) -> Result<()> {
        let (scope, name) = (scope.clone(), name.to_string());
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (id, mut group) = find_group(&tx, &scope, &name)?.ok_or_else(group_not_found)?;
            f(&mut group)?;
            let tags = serde_json::to_string(&group.tags).map_err(|e| Error::Internal(e.to_string()))?;
            tx.execute(
                "UPDATE log_group SET retention_days = ?2, deletion_protection = ?3, tags = ?4 WHERE id = ?1",
                params![id, group.retention_days, group.deletion_protection, tags],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub async fn create_stream(&self, scope: &Scope, group: &str, name: &str, now: i64) -> Result<()> {
        let (scope, group, name) = (scope.clone(), group.to_string(), name.to_string());
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (gid, _) = find_group(&tx, &scope, &group)?.ok_or_else(group_not_found)?;
            let n = tx.execute(
                "INSERT INTO log_stream (group_id, name, creation_time) VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                params![gid, name, now],
            )?;
            if n == 0 {
                return Err(Error::already_exists(Resource::Other, "The specified log stream already exists").into());
            }
            tx.commit()?;
            Ok(())
        })
        .await
    }

    pub async fn delete_stream(&self, scope: &Scope, group: &str, name: &str) -> Result<()> {
        let (scope, group, name) = (scope.clone(), group.to_string(), name.to_string());
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (gid, _) = find_group(&tx, &scope, &group)?.ok_or_else(group_not_found)?;
            let (sid, _) = find_stream(&tx, gid, &name)?.ok_or_else(stream_not_found)?;
            let bytes: i64 = tx.query_row(
                "SELECT COALESCE(SUM(length(CAST(message AS BLOB))), 0) FROM log_event WHERE stream_id = ?1",
                [sid],
                |r| r.get(0),
            )?;
            tx.execute("DELETE FROM log_event WHERE stream_id = ?1", [sid])?;
            tx.execute("DELETE FROM log_stream WHERE id = ?1", [sid])?;
            tx.execute(
                "UPDATE log_group SET stored_bytes = max(0, stored_bytes - ?2) WHERE id = ?1",
                params![gid, bytes],
            )?;
            tx.commit()?;
            Ok(())
        })
        .await
    }

    /// One page of a group's streams; `true` when more may follow.
    pub async fn list_streams(&self, scope: &Scope, group: &str, q: StreamListing) -> Result<(Vec<Stream>, bool)> {
        let (scope, group) = (scope.clone(), group.to_string());
        self.read(move |c| {
            let (gid, _) = find_group(c, &scope, &group)?.ok_or_else(group_not_found)?;
            let (cmp, dir) = if q.descending { ("<", "DESC") } else { (">", "ASC") };
            let mut args: Vec<SqlValue> = vec![gid.into()];
            let mut sql = format!("SELECT {STREAM_COLUMNS} FROM log_stream WHERE group_id = ?1");
            if let Some(prefix) = q.prefix {
                args.push(prefix.into());
                let n = args.len();
                sql += &format!(" AND substr(name, 1, length(?{n})) = ?{n}");
            }
            match (q.order, q.after) {
                (StreamOrder::Name, Some(after)) => {
                    args.push(after.name.into());
                    sql += &format!(" AND name {cmp} ?{}", args.len());
                }
                (StreamOrder::LastEventTime, Some(after)) => {
                    args.push(after.last_event.into());
                    args.push(after.name.into());
                    let n = args.len();
                    sql += &format!(" AND (COALESCE(last_event, -1), name) {cmp} (?{}, ?{n})", n - 1);
                }
                (_, None) => {}
            }
            sql += &match q.order {
                StreamOrder::Name => format!(" ORDER BY name {dir}"),
                StreamOrder::LastEventTime => format!(" ORDER BY COALESCE(last_event, -1) {dir}, name {dir}"),
            };
            args.push(((q.limit + 1) as i64).into());
            sql += &format!(" LIMIT ?{}", args.len());
            let mut stmt = c.prepare(&sql)?;
            let mut out = stmt.query_map(params_from_iter(args), stream_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
            let more = out.len() > q.limit;
            out.truncate(q.limit);
            Ok((out, more))
        })
        .await
    }

    /// Appends a batch to a stream in one transaction. `accept` sees the group's retention and
    /// the events and picks the range to store (the rest are rejected), returning what the
    /// caller reports about the rejects. Answers that report and the stream's new sequence
    /// number.
    pub async fn put_events<T: Send + 'static>(
        &self,
        scope: &Scope,
        group: &str,
        stream: &str,
        events: Vec<NewEvent>,
        now: i64,
        accept: impl FnOnce(Option<i64>, &[NewEvent]) -> Result<(Range<usize>, T)> + Send + 'static,
    ) -> Result<(T, i64)> {
        let (scope, group, stream) = (scope.clone(), group.to_string(), stream.to_string());
        self.write(move |c| {
            let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let (gid, g) = find_group(&tx, &scope, &group)?.ok_or_else(group_not_found)?;
            let (sid, s) = find_stream(&tx, gid, &stream)?.ok_or_else(stream_not_found)?;
            let (range, report) = accept(g.retention_days, &events)?;
            let accepted = events.get(range).unwrap_or_default();
            if accepted.is_empty() {
                return Ok((report, s.sequence));
            }
            let (mut lo, mut hi, mut bytes) = (i64::MAX, i64::MIN, 0i64);
            {
                let mut insert = tx.prepare_cached(
                    "INSERT INTO log_event (group_id, stream_id, timestamp, ingestion_time, message) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for e in accepted {
                    insert.execute(params![gid, sid, e.timestamp, now, e.message])?;
                    lo = lo.min(e.timestamp);
                    hi = hi.max(e.timestamp);
                    bytes += e.message.len() as i64;
                }
            }
            let sequence: i64 = tx.query_row(
                "UPDATE log_stream SET first_event = min(COALESCE(first_event, ?2), ?2),
                     last_event = max(COALESCE(last_event, ?3), ?3), last_ingestion = ?4, sequence = sequence + 1
                 WHERE id = ?1 RETURNING sequence",
                params![sid, lo, hi, now],
                |r| r.get(0),
            )?;
            tx.execute("UPDATE log_group SET stored_bytes = stored_bytes + ?2 WHERE id = ?1", params![gid, bytes])?;
            tx.commit()?;
            Ok((report, sequence))
        })
        .await
    }

    /// Reads one stream (`GetLogEvents`), hiding events past the group's retention.
    pub async fn read_stream(
        &self,
        scope: &Scope,
        group: &str,
        stream: &str,
        q: StreamRead,
        now: i64,
    ) -> Result<Vec<Event>> {
        let (scope, group, stream) = (scope.clone(), group.to_string(), stream.to_string());
        self.read(move |c| {
            let (gid, g) = find_group(c, &scope, &group)?.ok_or_else(group_not_found)?;
            let (sid, _) = find_stream(c, gid, &stream)?.ok_or_else(stream_not_found)?;
            let lo = q.start.unwrap_or(i64::MIN).max(retention_cutoff(g.retention_days, now).unwrap_or(i64::MIN));
            let hi = q.end.unwrap_or(i64::MAX);
            let (cursor, forward) = match q.position {
                Position::Head => (Cursor::FIRST, true),
                Position::After(c) => (c, true),
                Position::Tail => (Cursor::LAST, false),
                Position::Before(c) => (c, false),
            };
            let sql = if forward {
                "SELECT id, timestamp, ingestion_time, message FROM log_event
                 WHERE stream_id = ?1 AND timestamp >= ?2 AND timestamp < ?3 AND (timestamp, id) > (?4, ?5)
                 ORDER BY timestamp, id LIMIT ?6"
            } else {
                "SELECT id, timestamp, ingestion_time, message FROM log_event
                 WHERE stream_id = ?1 AND timestamp >= ?2 AND timestamp < ?3 AND (timestamp, id) < (?4, ?5)
                 ORDER BY timestamp DESC, id DESC LIMIT ?6"
            };
            let mut stmt = c.prepare_cached(sql)?;
            let mut rows = stmt.query(params![sid, lo, hi, cursor.timestamp, cursor.id, q.limit as i64])?;
            let (mut out, mut bytes) = (Vec::new(), 0usize);
            while let Some(row) = rows.next()? {
                let e = event_row(row)?;
                bytes += e.message.len() + 26;
                if bytes > q.max_bytes && !out.is_empty() {
                    break;
                }
                out.push(e);
            }
            if !forward {
                out.reverse();
            }
            Ok(out)
        })
        .await
    }

    /// Searches a group (`FilterLogEvents`), hiding events past its retention. Answers the
    /// matches and, when the search stopped before the end of the range, where to resume.
    pub async fn search_group(
        &self,
        scope: &Scope,
        group: &str,
        q: GroupSearch,
        now: i64,
    ) -> Result<(Vec<Found>, Option<Cursor>)> {
        const CHUNK: usize = 1_000;
        let (scope, group) = (scope.clone(), group.to_string());
        self.read(move |c| {
            let (gid, g) = find_group(c, &scope, &group)?.ok_or_else(group_not_found)?;
            let mut streams: HashMap<i64, String> = HashMap::new();
            {
                let mut stmt = c.prepare_cached("SELECT id, name FROM log_stream WHERE group_id = ?1")?;
                for row in stmt.query_map([gid], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))? {
                    let (id, name) = row?;
                    let keep = match &q.streams {
                        StreamSelection::All => true,
                        StreamSelection::Names(names) => names.contains(&name),
                        StreamSelection::Prefix(p) => name.starts_with(p.as_str()),
                    };
                    if keep {
                        streams.insert(id, name);
                    }
                }
            }
            if streams.is_empty() {
                return Ok((vec![], None));
            }
            let lo = q.start.unwrap_or(i64::MIN).max(retention_cutoff(g.retention_days, now).unwrap_or(i64::MIN));
            let hi = q.end.unwrap_or(i64::MAX);
            let sql = if q.ascending {
                "SELECT id, timestamp, ingestion_time, message, stream_id FROM log_event
                 WHERE group_id = ?1 AND timestamp >= ?2 AND timestamp <= ?3 AND (timestamp, id) > (?4, ?5)
                 ORDER BY timestamp, id LIMIT ?6"
            } else {
                "SELECT id, timestamp, ingestion_time, message, stream_id FROM log_event
                 WHERE group_id = ?1 AND timestamp >= ?2 AND timestamp <= ?3 AND (timestamp, id) < (?4, ?5)
                 ORDER BY timestamp DESC, id DESC LIMIT ?6"
            };
            let mut stmt = c.prepare_cached(sql)?;
            let mut cursor = q.after.unwrap_or(if q.ascending { Cursor::FIRST } else { Cursor::LAST });
            let (mut out, mut bytes, mut scanned) = (Vec::new(), 0usize, 0usize);
            loop {
                let mut rows = stmt.query(params![gid, lo, hi, cursor.timestamp, cursor.id, CHUNK as i64])?;
                let mut n = 0;
                while let Some(row) = rows.next()? {
                    n += 1;
                    scanned += 1;
                    let e = event_row(row)?;
                    let sid: i64 = row.get(4)?;
                    let here = Cursor::at(&e);
                    if let Some(stream) = streams.get(&sid)
                        && q.pattern.matches(&e.message)
                    {
                        let size = e.message.len() + 26;
                        if bytes + size > q.max_bytes && !out.is_empty() {
                            // Resume with this event on the next page.
                            return Ok((out, Some(cursor)));
                        }
                        bytes += size;
                        out.push(Found { stream: stream.clone(), event: e });
                    }
                    cursor = here;
                    if out.len() == q.limit || scanned >= q.scan_budget {
                        // More may follow unless this was provably the range's last event.
                        let more = rows.next()?.is_some() || n == CHUNK;
                        return Ok((out, more.then_some(cursor)));
                    }
                }
                if n < CHUNK {
                    return Ok((out, None));
                }
            }
        })
        .await
    }

    /// Deletes every event older than its group's retention at `now`. Answers how many.
    /// Works in chunks of [`PURGE_CHUNK`] rows, each its own transaction, taking the writer
    /// per chunk so `PutLogEvents` batches interleave with a large purge.
    pub async fn purge_expired(&self, now: i64) -> Result<u64> {
        let groups: Vec<(i64, i64)> = self
            .read(|c| {
                let mut stmt =
                    c.prepare("SELECT id, retention_days FROM log_group WHERE retention_days IS NOT NULL")?;
                Ok(stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<rusqlite::Result<_>>()?)
            })
            .await?;
        let mut deleted = 0u64;
        for (gid, days) in groups {
            let cutoff = now.saturating_sub(days.saturating_mul(DAY_MS));
            loop {
                let n = self.write(move |c| purge_chunk(c, gid, cutoff)).await?;
                deleted += n as u64;
                if n < PURGE_CHUNK {
                    break;
                }
            }
        }
        Ok(deleted)
    }
}

/// Deletes up to [`PURGE_CHUNK`] events of group `gid` stamped before `cutoff`.
fn purge_chunk(c: &mut Connection, gid: i64, cutoff: i64) -> R<usize> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let victims: Vec<(i64, i64)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT id, length(CAST(message AS BLOB)) FROM log_event WHERE group_id = ?1 AND timestamp < ?2 LIMIT ?3",
        )?;
        stmt.query_map(params![gid, cutoff, PURGE_CHUNK as i64], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?
    };
    if victims.is_empty() {
        return Ok(0);
    }
    let bytes: i64 = victims.iter().map(|(_, b)| b).sum();
    {
        let mut del = tx.prepare_cached("DELETE FROM log_event WHERE id = ?1")?;
        for (id, _) in &victims {
            del.execute([id])?;
        }
    }
    tx.execute("UPDATE log_group SET stored_bytes = max(0, stored_bytes - ?2) WHERE id = ?1", params![gid, bytes])?;
    tx.commit()?;
    Ok(victims.len())
}

const GROUP_COLUMNS: &str =
    "id, name, creation_time, retention_days, stored_bytes, class, kms_key_id, deletion_protection, tags";
const STREAM_COLUMNS: &str = "id, name, creation_time, first_event, last_event, last_ingestion, sequence";

fn group_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, Group)> {
    let tags: String = r.get(8)?;
    Ok((
        r.get(0)?,
        Group {
            name: r.get(1)?,
            creation_time: r.get(2)?,
            retention_days: r.get(3)?,
            stored_bytes: r.get(4)?,
            class: r.get(5)?,
            kms_key_id: r.get(6)?,
            deletion_protection: r.get(7)?,
            tags: serde_json::from_str(&tags).unwrap_or_default(),
        },
    ))
}

fn stream_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Stream> {
    Ok(Stream {
        name: r.get(1)?,
        creation_time: r.get(2)?,
        first_event: r.get(3)?,
        last_event: r.get(4)?,
        last_ingestion: r.get(5)?,
        sequence: r.get(6)?,
    })
}

fn event_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Event> {
    Ok(Event { id: r.get(0)?, timestamp: r.get(1)?, ingestion_time: r.get(2)?, message: r.get(3)? })
}

fn find_group(c: &Connection, scope: &Scope, name: &str) -> rusqlite::Result<Option<(i64, Group)>> {
    c.prepare_cached(&format!(
        "SELECT {GROUP_COLUMNS} FROM log_group WHERE account = ?1 AND region = ?2 AND name = ?3"
    ))?
    .query_row(params![scope.account, scope.region, name], group_row)
    .optional()
}

fn find_stream(c: &Connection, group_id: i64, name: &str) -> rusqlite::Result<Option<(i64, Stream)>> {
    c.prepare_cached(&format!("SELECT {STREAM_COLUMNS} FROM log_stream WHERE group_id = ?1 AND name = ?2"))?
        .query_row(params![group_id, name], |r| Ok((r.get(0)?, stream_row(r)?)))
        .optional()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope::new("123456789012", "us-east-1")
    }

    fn new_group(name: &str) -> NewGroup {
        NewGroup {
            name: name.into(),
            class: "STANDARD".into(),
            kms_key_id: None,
            deletion_protection: false,
            tags: BTreeMap::new(),
        }
    }

    async fn seeded(store: &LogStore, n: i64) {
        store.create_group(&scope(), new_group("g"), 0).await.unwrap();
        store.create_stream(&scope(), "g", "s", 0).await.unwrap();
        let events = (0..n).map(|i| NewEvent { timestamp: 1000 + i, message: format!("m{i}") }).collect();
        store.put_events(&scope(), "g", "s", events, 5000, |_, ev| Ok((0..ev.len(), ()))).await.unwrap();
    }

    #[tokio::test]
    async fn file_store_reads_what_was_written_through_its_reader() {
        let dir = std::env::temp_dir().join(format!("wharf-logs-{}", wharf_types::hex_id(12)));
        std::fs::create_dir_all(&dir).unwrap();
        let store = LogStore::open(&dir.join("logs.db")).unwrap();
        seeded(&store, 5).await;
        let q = StreamRead { start: None, end: None, position: Position::Head, limit: 100, max_bytes: 1 << 20 };
        let got = store.read_stream(&scope(), "g", "s", q, 5000).await.unwrap();
        assert_eq!(got.iter().map(|e| e.message.as_str()).collect::<Vec<_>>(), ["m0", "m1", "m2", "m3", "m4"]);
        drop(store);
        // Reopening finds everything again.
        let store = LogStore::open(&dir.join("logs.db")).unwrap();
        assert_eq!(store.group(&scope(), "g").await.unwrap().stored_bytes, 10);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn positions_page_both_ways() {
        let store = LogStore::open_in_memory().unwrap();
        seeded(&store, 10).await;
        let read = |position, limit| {
            let store = store.clone();
            async move {
                let q = StreamRead { start: None, end: None, position, limit, max_bytes: 1 << 20 };
                store.read_stream(&scope(), "g", "s", q, 5000).await.unwrap()
            }
        };
        let head = read(Position::Head, 3).await;
        assert_eq!(head.iter().map(|e| e.timestamp).collect::<Vec<_>>(), [1000, 1001, 1002]);
        let tail = read(Position::Tail, 3).await;
        assert_eq!(tail.iter().map(|e| e.timestamp).collect::<Vec<_>>(), [1007, 1008, 1009]);
        let next = read(Position::After(Cursor::at(&head[2])), 3).await;
        assert_eq!(next[0].timestamp, 1003);
        let prev = read(Position::Before(Cursor::at(&tail[0])), 2).await;
        assert_eq!(prev.iter().map(|e| e.timestamp).collect::<Vec<_>>(), [1005, 1006]);
        assert!(read(Position::After(Cursor::at(&tail[2])), 3).await.is_empty());
    }

    #[tokio::test]
    async fn byte_budget_cuts_pages_but_never_to_nothing() {
        let store = LogStore::open_in_memory().unwrap();
        seeded(&store, 10).await;
        let q = StreamRead { start: None, end: None, position: Position::Head, limit: 100, max_bytes: 2 * 28 };
        assert_eq!(store.read_stream(&scope(), "g", "s", q.clone(), 5000).await.unwrap().len(), 2);
        let q = StreamRead { max_bytes: 1, ..q };
        assert_eq!(store.read_stream(&scope(), "g", "s", q, 5000).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn purge_deletes_only_what_retention_expired() {
        let store = LogStore::open_in_memory().unwrap();
        seeded(&store, 10).await;
        store
            .update_group(&scope(), "g", |g| {
                g.retention_days = Some(1);
                Ok(())
            })
            .await
            .unwrap();
        // At 1005 + one day, events stamped before 1005 are expired.
        let now = 1005 + DAY_MS;
        let q = StreamRead { start: None, end: None, position: Position::Head, limit: 100, max_bytes: 1 << 20 };
        let visible = store.read_stream(&scope(), "g", "s", q.clone(), now).await.unwrap();
        assert_eq!(visible.first().map(|e| e.timestamp), Some(1005));
        assert_eq!(store.purge_expired(now).await.unwrap(), 5);
        assert_eq!(store.purge_expired(now).await.unwrap(), 0);
        let all = store.read_stream(&scope(), "g", "s", q, 0).await.unwrap();
        assert_eq!(all.len(), 5);
        assert_eq!(store.group(&scope(), "g").await.unwrap().stored_bytes, 10);
    }

    #[tokio::test]
    async fn groups_are_partitioned_by_scope() {
        let store = LogStore::open_in_memory().unwrap();
        store.create_group(&scope(), new_group("g"), 0).await.unwrap();
        let other = Scope::new("123456789012", "eu-west-1");
        assert!(matches!(store.group(&other, "g").await, Err(Error::NotFound { .. })));
        store.create_group(&other, new_group("g"), 0).await.unwrap();
        assert!(matches!(store.create_group(&other, new_group("g"), 0).await, Err(Error::AlreadyExists { .. })));
    }

    #[tokio::test]
    async fn reads_use_the_indexes() {
        let store = LogStore::open_in_memory().unwrap();
        let plans = store
            .read(|c| {
                let mut out = vec![];
                for sql in [
                    "SELECT id FROM log_event WHERE stream_id = 1 AND timestamp >= 0 AND timestamp < 9 AND (timestamp, id) > (0, 0) ORDER BY timestamp, id LIMIT 5",
                    "SELECT id FROM log_event WHERE group_id = 1 AND timestamp >= 0 AND timestamp <= 9 AND (timestamp, id) < (0, 0) ORDER BY timestamp DESC, id DESC LIMIT 5",
                ] {
                    let mut stmt = c.prepare(&format!("EXPLAIN QUERY PLAN {sql}"))?;
                    let rows: Vec<String> =
                        stmt.query_map([], |r| r.get::<_, String>(3))?.collect::<rusqlite::Result<_>>()?;
                    out.push(rows.join("; "));
                }
                Ok(out)
            })
            .await
            .unwrap();
        assert!(plans[0].contains("log_event_by_stream") && !plans[0].contains("TEMP B-TREE"), "{}", plans[0]);
        assert!(plans[1].contains("log_event_by_group") && !plans[1].contains("TEMP B-TREE"), "{}", plans[1]);
    }
}
