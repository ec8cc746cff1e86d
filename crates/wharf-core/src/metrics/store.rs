//! The metric store: CloudWatch metrics and alarm history, kept outside the resource store in
//! their own SQLite file (`<data-dir>/metrics.db`), like log events.
//!
//! A metric is (namespace, name, dimensions) in one account and region. Its datapoints are
//! statistic sets (sample count, sum, minimum, maximum) per unit, aggregated into buckets: one
//! second wide while they are young (so an alarm on a 10-second period, or a `wharf up
//! --metrics-period` clock faster than AWS's minute, has the resolution it needs), then rolled
//! up as CloudWatch retains them — 1-minute buckets after 3 hours, 5-minute after 15 days,
//! 1-hour after 63 days, gone after 455 days. A query aggregates buckets into its period, so
//! every statistic CloudWatch computes from statistic sets is exact at any period the stored
//! resolution allows (percentiles are not: they need distributions, which are not kept).
//!
//! It must never hold desired state: alarms and scaling policies are resources, in the store.

use crate::sidedb::{R, SideDb};
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use std::collections::HashMap;
use std::path::Path;
use wharf_types::{Result, Scope};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS metric (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name TEXT NOT NULL,
    dims TEXT NOT NULL,
    last_put INTEGER NOT NULL,
    UNIQUE (account, region, namespace, name, dims)
);
CREATE TABLE IF NOT EXISTS point (
    metric_id INTEGER NOT NULL,
    ts INTEGER NOT NULL,
    unit TEXT NOT NULL,
    count REAL NOT NULL,
    sum REAL NOT NULL,
    min REAL NOT NULL,
    max REAL NOT NULL,
    PRIMARY KEY (metric_id, ts, unit)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS point_by_time ON point (ts);
CREATE TABLE IF NOT EXISTS alarm_history (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    account TEXT NOT NULL,
    region TEXT NOT NULL,
    alarm TEXT NOT NULL,
    alarm_type TEXT NOT NULL,
    ts INTEGER NOT NULL,
    item_type TEXT NOT NULL,
    summary TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS alarm_history_by_alarm ON alarm_history (account, region, alarm, ts);
CREATE INDEX IF NOT EXISTS alarm_history_by_time ON alarm_history (account, region, ts);
";

const SECOND_MS: i64 = 1_000;
const MINUTE_MS: i64 = 60_000;
const HOUR_MS: i64 = 3_600_000;
const DAY_MS: i64 = 86_400_000;

/// How long datapoints are kept at each resolution, as CloudWatch retains them: (age after
/// which buckets are rolled up, the width they are rolled up to). Older than the last age,
/// they are deleted.
const ROLLUPS: [(i64, i64); 3] = [(3 * HOUR_MS, MINUTE_MS), (15 * DAY_MS, 5 * MINUTE_MS), (63 * DAY_MS, HOUR_MS)];
const RETENTION_MS: i64 = 455 * DAY_MS;
/// Alarm history is kept for two weeks.
const HISTORY_MS: i64 = 14 * DAY_MS;

/// The unit of a datum put without one.
pub const NO_UNIT: &str = "None";

/// A metric's identity: namespace, name and dimensions (kept sorted by name, so the same set
/// in any order is the same metric).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MetricKey {
    pub namespace: String,
    pub name: String,
    dimensions: Vec<(String, String)>,
}

impl MetricKey {
    pub fn new(namespace: impl Into<String>, name: impl Into<String>, mut dimensions: Vec<(String, String)>) -> Self {
        dimensions.sort();
        MetricKey { namespace: namespace.into(), name: name.into(), dimensions }
    }

    /// The dimensions, sorted by name.
    pub fn dimensions(&self) -> &[(String, String)] {
        &self.dimensions
    }

    fn dims_text(&self) -> String {
        serde_json::to_string(&self.dimensions).unwrap_or_default()
    }
}

/// A statistic set: what a bucket keeps and what a query returns per period.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatSet {
    pub count: f64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl StatSet {
    /// One value, `count` times (a `Values`/`Counts` pair expands to these).
    pub fn repeated(value: f64, count: f64) -> Self {
        StatSet { count, sum: value * count, min: value, max: value }
    }

    pub fn merge(&mut self, o: &StatSet) {
        self.count += o.count;
        self.sum += o.sum;
        self.min = self.min.min(o.min);
        self.max = self.max.max(o.max);
    }

    pub fn average(&self) -> f64 {
        if self.count > 0.0 { self.sum / self.count } else { 0.0 }
    }
}

/// One of the five statistics CloudWatch computes from statistic sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Statistic {
    SampleCount,
    Average,
    Sum,
    Minimum,
    Maximum,
}

impl Statistic {
    pub fn parse(s: &str) -> Option<Statistic> {
        Some(match s {
            "SampleCount" => Statistic::SampleCount,
            "Average" => Statistic::Average,
            "Sum" => Statistic::Sum,
            "Minimum" => Statistic::Minimum,
            "Maximum" => Statistic::Maximum,
            _ => return None,
        })
    }

    pub fn of(self, s: &StatSet) -> f64 {
        match self {
            Statistic::SampleCount => s.count,
            Statistic::Average => s.average(),
            Statistic::Sum => s.sum,
            Statistic::Minimum => s.min,
            Statistic::Maximum => s.max,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Statistic::SampleCount => "SampleCount",
            Statistic::Average => "Average",
            Statistic::Sum => "Sum",
            Statistic::Minimum => "Minimum",
            Statistic::Maximum => "Maximum",
        }
    }
}

/// One datum to store.
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    pub key: MetricKey,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    pub unit: String,
    pub stats: StatSet,
}

/// A query's aggregate over one period.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket {
    /// The period's start, milliseconds since the epoch.
    pub start: i64,
    pub unit: String,
    pub stats: StatSet,
}

/// A time range and period to aggregate a metric over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    /// Inclusive, milliseconds.
    pub start: i64,
    /// Exclusive, milliseconds.
    pub end: i64,
    /// Bucket width, milliseconds (> 0). Buckets are aligned to `start`.
    pub period: i64,
    /// Only datapoints put with this unit; all units (each its own buckets) when `None`.
    pub unit: Option<String>,
}

/// Filters of `ListMetrics`.
#[derive(Debug, Clone, Default)]
pub struct MetricListing {
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// Each dimension must be present; with a value, that value.
    pub dimensions: Vec<(String, Option<String>)>,
    /// Only metrics with a datum at or after this time (milliseconds).
    pub active_since: Option<i64>,
    /// Metrics after this one (the previous page's last).
    pub after: Option<i64>,
    pub limit: usize,
}

/// A state change or action of an alarm, as `DescribeAlarmHistory` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryItem {
    pub alarm: String,
    pub alarm_type: String,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    /// `ConfigurationUpdate`, `StateUpdate`, `Action`.
    pub item_type: String,
    pub summary: String,
    pub data: String,
}

/// Filters of `DescribeAlarmHistory`.
#[derive(Debug, Clone, Default)]
pub struct HistoryQuery {
    pub alarm: Option<String>,
    pub item_type: Option<String>,
    pub start: Option<i64>,
    pub end: Option<i64>,
    pub newest_first: bool,
    /// Items after this id (the previous page's last).
    pub after: Option<i64>,
    pub limit: usize,
}

/// A handle on the metric store; cheap to clone.
#[derive(Clone, Debug)]
pub struct MetricStore {
    db: SideDb,
}

impl MetricStore {
    /// Opens (creating if needed) the metric database at `path`.
    pub fn open(path: &Path) -> std::result::Result<MetricStore, rusqlite::Error> {
        Ok(MetricStore { db: SideDb::open(path, SCHEMA, "metric store")? })
    }

    /// A private in-memory store (tests).
    pub fn open_in_memory() -> std::result::Result<MetricStore, rusqlite::Error> {
        Ok(MetricStore { db: SideDb::open_in_memory(SCHEMA, "metric store")? })
    }

    /// Stores `data` in one transaction: every datum or none.
    pub async fn put(&self, scope: &Scope, data: Vec<Datum>) -> Result<()> {
        if data.is_empty() {
            return Ok(());
        }
        let scope = scope.clone();
        self.db
            .write(move |c| {
                let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
                let mut ids: HashMap<MetricKey, i64> = HashMap::new();
                {
                    let mut find = tx.prepare_cached(
                        "SELECT id FROM metric WHERE account = ?1 AND region = ?2 AND namespace = ?3 AND name = ?4 AND dims = ?5",
                    )?;
                    let mut create = tx.prepare_cached(
                        "INSERT INTO metric (account, region, namespace, name, dims, last_put) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                    )?;
                    let mut touch = tx.prepare_cached("UPDATE metric SET last_put = max(last_put, ?2) WHERE id = ?1")?;
                    let mut point = tx.prepare_cached(
                        "INSERT INTO point (metric_id, ts, unit, count, sum, min, max) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                         ON CONFLICT DO UPDATE SET count = count + excluded.count, sum = sum + excluded.sum,
                             min = min(min, excluded.min), max = max(max, excluded.max)",
                    )?;
                    for d in data {
                        let id = match ids.get(&d.key) {
                            Some(&id) => id,
                            None => {
                                let dims = d.key.dims_text();
                                let k = &d.key;
                                let found: Option<i64> = find
                                    .query_row(params![scope.account, scope.region, k.namespace, k.name, dims], |r| {
                                        r.get(0)
                                    })
                                    .optional()?;
                                let id = match found {
                                    Some(id) => id,
                                    None => {
                                        create.execute(params![
                                            scope.account,
                                            scope.region,
                                            k.namespace,
                                            k.name,
                                            dims,
                                            d.timestamp
                                        ])?;
                                        tx.last_insert_rowid()
                                    }
                                };
                                ids.insert(d.key.clone(), id);
                                id
                            }
                        };
                        touch.execute(params![id, d.timestamp])?;
                        let ts = d.timestamp.div_euclid(SECOND_MS) * SECOND_MS;
                        let s = d.stats;
                        point.execute(params![id, ts, d.unit, s.count, s.sum, s.min, s.max])?;
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }

    /// Aggregates `key`'s datapoints over `window`, oldest first. Empty periods are absent.
    pub async fn series(&self, scope: &Scope, key: &MetricKey, window: &Window) -> Result<Vec<Bucket>> {
        let (scope, key, w) = (scope.clone(), key.clone(), window.clone());
        self.db.read(move |c| series(c, &scope, &key, &w)).await
    }

    /// Aggregates each of `keys` over the same window in one read (alarm evaluation).
    pub async fn series_many(&self, scope: &Scope, keys: Vec<(MetricKey, Window)>) -> Result<Vec<Vec<Bucket>>> {
        let scope = scope.clone();
        self.db.read(move |c| keys.iter().map(|(k, w)| series(c, &scope, k, w)).collect::<R<Vec<_>>>()).await
    }

    /// The metrics matching `q`, with their row ids (the page cursor), in id order.
    pub async fn list(&self, scope: &Scope, q: MetricListing) -> Result<Vec<(i64, MetricKey)>> {
        let scope = scope.clone();
        self.db
            .read(move |c| {
                let mut stmt = c.prepare_cached(
                    "SELECT id, namespace, name, dims FROM metric
                     WHERE account = ?1 AND region = ?2 AND id > ?3
                       AND (?4 IS NULL OR namespace = ?4) AND (?5 IS NULL OR name = ?5)
                       AND (?6 IS NULL OR last_put >= ?6)
                     ORDER BY id",
                )?;
                let rows = stmt.query_map(
                    params![scope.account, scope.region, q.after.unwrap_or(0), q.namespace, q.name, q.active_since],
                    |r| {
                        Ok((
                            r.get::<_, i64>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                        ))
                    },
                )?;
                let mut out = Vec::new();
                for row in rows {
                    let (id, namespace, name, dims) = row?;
                    let dims: Vec<(String, String)> = serde_json::from_str(&dims).unwrap_or_default();
                    let matches = q
                        .dimensions
                        .iter()
                        .all(|(n, v)| dims.iter().any(|(dn, dv)| dn == n && v.as_ref().is_none_or(|v| v == dv)));
                    if matches {
                        out.push((id, MetricKey { namespace, name, dimensions: dims }));
                        if out.len() >= q.limit {
                            break;
                        }
                    }
                }
                Ok(out)
            })
            .await
    }

    /// Records alarm history items.
    pub async fn record(&self, scope: &Scope, items: Vec<HistoryItem>) -> Result<()> {
        let scope = scope.clone();
        self.db
            .write(move |c| {
                let tx = c.transaction()?;
                {
                    let mut ins = tx.prepare_cached(
                        "INSERT INTO alarm_history (account, region, alarm, alarm_type, ts, item_type, summary, data)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                    )?;
                    for i in items {
                        ins.execute(params![
                            scope.account,
                            scope.region,
                            i.alarm,
                            i.alarm_type,
                            i.timestamp,
                            i.item_type,
                            i.summary,
                            i.data
                        ])?;
                    }
                }
                tx.commit()?;
                Ok(())
            })
            .await
    }

    /// Alarm history matching `q`, with the items' ids (the page cursor).
    pub async fn history(&self, scope: &Scope, q: HistoryQuery) -> Result<Vec<(i64, HistoryItem)>> {
        let scope = scope.clone();
        self.db
            .read(move |c| {
                let order = if q.newest_first { "DESC" } else { "ASC" };
                let cmp = if q.newest_first { "<" } else { ">" };
                let sql = format!(
                    "SELECT id, alarm, alarm_type, ts, item_type, summary, data FROM alarm_history
                     WHERE account = ?1 AND region = ?2 AND (?3 IS NULL OR alarm = ?3) AND (?4 IS NULL OR item_type = ?4)
                       AND (?5 IS NULL OR ts >= ?5) AND (?6 IS NULL OR ts <= ?6) AND (?7 IS NULL OR id {cmp} ?7)
                     ORDER BY ts {order}, id {order} LIMIT ?8"
                );
                let mut stmt = c.prepare_cached(&sql)?;
                let rows = stmt.query_map(
                    params![scope.account, scope.region, q.alarm, q.item_type, q.start, q.end, q.after, q.limit as i64],
                    |r| {
                        Ok((
                            r.get(0)?,
                            HistoryItem {
                                alarm: r.get(1)?,
                                alarm_type: r.get(2)?,
                                timestamp: r.get(3)?,
                                item_type: r.get(4)?,
                                summary: r.get(5)?,
                                data: r.get(6)?,
                            },
                        ))
                    },
                )?;
                Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
            })
            .await
    }

    /// Deletes an alarm's history (`DeleteAlarms`).
    pub async fn forget(&self, scope: &Scope, alarm: &str) -> Result<()> {
        let (scope, alarm) = (scope.clone(), alarm.to_string());
        self.db
            .write(move |c| {
                c.execute(
                    "DELETE FROM alarm_history WHERE account = ?1 AND region = ?2 AND alarm = ?3",
                    params![scope.account, scope.region, alarm],
                )?;
                Ok(())
            })
            .await
    }

    /// Rolls datapoints up to coarser buckets as they age and deletes what retention expired;
    /// returns the number of rows removed. Idempotent: run it every few minutes.
    pub async fn compact(&self, now: i64) -> Result<usize> {
        self.db
            .write(move |c| {
                let mut removed = 0;
                for (age, width) in ROLLUPS {
                    removed += roll_up(c, now - age, width)?;
                }
                let tx = c.transaction()?;
                removed += tx.execute("DELETE FROM point WHERE ts < ?1", [now - RETENTION_MS])?;
                tx.execute("DELETE FROM alarm_history WHERE ts < ?1", [now - HISTORY_MS])?;
                tx.execute(
                    "DELETE FROM metric WHERE last_put < ?1 AND NOT EXISTS (SELECT 1 FROM point WHERE metric_id = metric.id)",
                    [now - RETENTION_MS],
                )?;
                tx.commit()?;
                Ok(removed)
            })
            .await
    }
}

fn series(c: &Connection, scope: &Scope, key: &MetricKey, w: &Window) -> R<Vec<Bucket>> {
    let id: Option<i64> = c
        .prepare_cached(
            "SELECT id FROM metric WHERE account = ?1 AND region = ?2 AND namespace = ?3 AND name = ?4 AND dims = ?5",
        )?
        .query_row(params![scope.account, scope.region, key.namespace, key.name, key.dims_text()], |r| r.get(0))
        .optional()?;
    let Some(id) = id else { return Ok(Vec::new()) };
    let period = w.period.max(1);
    let mut stmt = c.prepare_cached(
        "SELECT (ts - ?2) / ?4 AS slot, unit, sum(count), sum(sum), min(min), max(max) FROM point
         WHERE metric_id = ?1 AND ts >= ?2 AND ts < ?3 AND (?5 IS NULL OR unit = ?5)
         GROUP BY slot, unit ORDER BY slot, unit",
    )?;
    let rows = stmt.query_map(params![id, w.start, w.end, period, w.unit], |r| {
        Ok(Bucket {
            start: w.start + r.get::<_, i64>(0)? * period,
            unit: r.get(1)?,
            stats: StatSet { count: r.get(2)?, sum: r.get(3)?, min: r.get(4)?, max: r.get(5)? },
        })
    })?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

/// Merges buckets older than `cutoff` that are not aligned to `width` into `width`-wide ones.
fn roll_up(c: &mut Connection, cutoff: i64, width: i64) -> R<usize> {
    let tx = c.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.execute(
        "INSERT INTO point (metric_id, ts, unit, count, sum, min, max)
         SELECT metric_id, ts - ts % ?2 AS t, unit, sum(count), sum(sum), min(min), max(max) FROM point
         WHERE ts < ?1 AND ts % ?2 != 0 GROUP BY metric_id, t, unit
         ON CONFLICT DO UPDATE SET count = count + excluded.count, sum = sum + excluded.sum,
             min = min(min, excluded.min), max = max(max, excluded.max)",
        params![cutoff, width],
    )?;
    let n = tx.execute("DELETE FROM point WHERE ts < ?1 AND ts % ?2 != 0", params![cutoff, width])?;
    tx.commit()?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope() -> Scope {
        Scope::new("123456789012", "ap-northeast-2")
    }

    fn key(svc: &str) -> MetricKey {
        MetricKey::new(
            "AWS/ECS",
            "CPUUtilization",
            vec![("ServiceName".into(), svc.into()), ("ClusterName".into(), "c".into())],
        )
    }

    fn datum(svc: &str, t: i64, v: f64) -> Datum {
        Datum { key: key(svc), timestamp: t, unit: "Percent".into(), stats: StatSet::repeated(v, 1.0) }
    }

    #[tokio::test]
    async fn queries_aggregate_into_periods_exactly() {
        let s = MetricStore::open_in_memory().unwrap();
        let t0 = 1_700_000_040_000;
        let data = (0..120).map(|i| datum("web", t0 + i * 1_000, i as f64)).collect();
        s.put(&scope(), data).await.unwrap();
        let w = Window { start: t0, end: t0 + 120_000, period: 60_000, unit: None };
        let b = s.series(&scope(), &key("web"), &w).await.unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].start, t0);
        assert_eq!(b[0].stats, StatSet { count: 60.0, sum: (0..60).sum::<i64>() as f64, min: 0.0, max: 59.0 });
        assert_eq!(b[1].stats.max, 119.0);
        // Another service's metric and another scope are other series.
        assert!(s.series(&scope(), &key("api"), &w).await.unwrap().is_empty());
        assert!(s.series(&Scope::new("123456789012", "us-east-1"), &key("web"), &w).await.unwrap().is_empty());
        // Dimension order does not make another metric.
        let swapped = MetricKey::new(
            "AWS/ECS",
            "CPUUtilization",
            vec![("ClusterName".into(), "c".into()), ("ServiceName".into(), "web".into())],
        );
        assert_eq!(s.series(&scope(), &swapped, &w).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn roll_ups_keep_every_statistic() {
        let s = MetricStore::open_in_memory().unwrap();
        let now = 1_800_000_000_000;
        let t0 = now - 5 * HOUR_MS - (now - 5 * HOUR_MS) % MINUTE_MS;
        let data = (0..90).map(|i| datum("web", t0 + i * 1_000, (i % 7) as f64)).collect();
        s.put(&scope(), data).await.unwrap();
        let w = Window { start: t0, end: t0 + 120_000, period: 60_000, unit: Some("Percent".into()) };
        let before = s.series(&scope(), &key("web"), &w).await.unwrap();
        let removed = s.compact(now).await.unwrap();
        assert_eq!(removed, 88, "two one-minute buckets remain of 90 one-second ones");
        assert_eq!(s.series(&scope(), &key("web"), &w).await.unwrap(), before);
        s.compact(now).await.unwrap();
        assert_eq!(s.series(&scope(), &key("web"), &w).await.unwrap(), before, "compaction is idempotent");
        s.compact(now + RETENTION_MS).await.unwrap();
        assert!(s.series(&scope(), &key("web"), &w).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn lists_filter_by_dimension_and_activity() {
        let s = MetricStore::open_in_memory().unwrap();
        s.put(&scope(), vec![datum("web", 1_000_000, 1.0), datum("api", 5_000_000, 1.0)]).await.unwrap();
        let all = s.list(&scope(), MetricListing { limit: 10, ..Default::default() }).await.unwrap();
        assert_eq!(all.len(), 2);
        let web = MetricListing {
            dimensions: vec![("ServiceName".into(), Some("web".into()))],
            limit: 10,
            ..Default::default()
        };
        assert_eq!(s.list(&scope(), web).await.unwrap()[0].1, key("web"));
        let recent = MetricListing { active_since: Some(2_000_000), limit: 10, ..Default::default() };
        assert_eq!(s.list(&scope(), recent).await.unwrap()[0].1, key("api"));
        let page = MetricListing { after: Some(all[0].0), limit: 10, ..Default::default() };
        assert_eq!(s.list(&scope(), page).await.unwrap().len(), 1);
    }
}
