//! Log events: `PutLogEvents`, `GetLogEvents`, `FilterLogEvents`.

use super::filter::Pattern;
use super::store::{Cursor, Event, GroupSearch, NewEvent, Position, StreamRead, StreamSelection, retention_cutoff};
use super::streams::sequence_token;
use super::{check_group_name, check_stream_name, group_ref, input, now_ms};
use crate::Ctx;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use wharf_types::{Error, Result};

/// A batch may carry this many bytes: message bytes plus [`EVENT_OVERHEAD`] per event.
pub const MAX_BATCH_BYTES: usize = 1_048_576;
/// What each event adds to a batch's size.
pub const EVENT_OVERHEAD: usize = 26;
/// A response page holds at most this many bytes of events, counted the same way.
pub const MAX_PAGE_BYTES: usize = 1_048_576;
/// Events older than this (before ingestion) are rejected as too old.
pub const MAX_AGE_MS: i64 = 14 * 86_400_000;
/// Events further than this in the future are rejected as too new.
pub const MAX_FUTURE_MS: i64 = 2 * 3_600_000;
/// The valid events of one batch may span at most this long.
pub const MAX_SPAN_MS: i64 = 24 * 3_600_000;
/// The default and largest `limit` of event reads.
pub const MAX_EVENTS: usize = 10_000;
/// Events one `FilterLogEvents` call examines before answering with a token.
const SCAN_BUDGET: usize = 100_000;
/// `startFromHead=false` needs a `startTime` on or after 2024-01-01T00:00:00Z.
const DESCENDING_SINCE: i64 = 1_704_067_200_000;

#[derive(Deserialize)]
struct InputEvent {
    timestamp: i64,
    message: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PutRequest {
    log_group_name: String,
    log_stream_name: String,
    log_events: Vec<InputEvent>,
}

/// Which events of a sorted batch CloudWatch Logs takes at `now`: the range to store and the
/// `rejectedLogEventsInfo` for the rest (`None` when all are taken).
pub fn classify(
    timestamps: &[i64],
    retention_days: Option<i64>,
    now: i64,
) -> Result<(std::ops::Range<usize>, Option<Value>)> {
    let too_old_end = timestamps.partition_point(|&t| t < now - MAX_AGE_MS);
    let expired_end = retention_cutoff(retention_days, now).map_or(0, |cut| timestamps.partition_point(|&t| t < cut));
    let too_new_start = timestamps.partition_point(|&t| t <= now + MAX_FUTURE_MS);
    let start = too_old_end.max(expired_end);
    let end = too_new_start.max(start);
    if end > start && timestamps[end - 1] - timestamps[start] > MAX_SPAN_MS {
        return Err(Error::invalid(
            "logEvents",
            "The batch of log events in a single PutLogEvents request cannot span more than 24 hours.",
        ));
    }
    let mut info = Map::new();
    if too_old_end > 0 {
        info.insert("tooOldLogEventEndIndex".into(), json!(too_old_end));
    }
    if expired_end > 0 {
        info.insert("expiredLogEventEndIndex".into(), json!(expired_end));
    }
    if too_new_start < timestamps.len() {
        info.insert("tooNewLogEventStartIndex".into(), json!(too_new_start));
    }
    Ok((start..end, (!info.is_empty()).then_some(Value::Object(info))))
}

pub async fn put(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: PutRequest = input(v)?;
    check_group_name("logGroupName", &req.log_group_name)?;
    check_stream_name("logStreamName", &req.log_stream_name)?;
    let size: usize = req.log_events.iter().map(|e| e.message.len() + EVENT_OVERHEAD).sum();
    if size > MAX_BATCH_BYTES {
        return Err(Error::invalid(
            "logEvents",
            format!("Upload too large: {size} bytes exceeds limit of {MAX_BATCH_BYTES}"),
        ));
    }
    if req.log_events.windows(2).any(|w| w[0].timestamp > w[1].timestamp) {
        return Err(Error::invalid(
            "logEvents",
            "Log events in a single PutLogEvents request must be in chronological order.",
        ));
    }
    let now = now_ms();
    let events: Vec<NewEvent> =
        req.log_events.into_iter().map(|e| NewEvent { timestamp: e.timestamp, message: e.message }).collect();
    let (rejected, sequence) = ctx
        .logs
        .put_events(&ctx.scope, &req.log_group_name, &req.log_stream_name, events, now, move |retention, events| {
            let timestamps: Vec<i64> = events.iter().map(|e| e.timestamp).collect();
            classify(&timestamps, retention, now)
        })
        .await?;
    let mut out = json!({ "nextSequenceToken": sequence_token(sequence) });
    if let (Some(info), Some(obj)) = (rejected, out.as_object_mut()) {
        obj.insert("rejectedLogEventsInfo".into(), info);
    }
    Ok(out)
}

/// `GetLogEvents` tokens: `f/` (read forward from here) or `b/` (read backward from here),
/// then the position between events as 56 digits (28 of timestamp, 28 of event id), then `/s`
/// — the shape of AWS's tokens. Clients treat them as opaque.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamToken {
    Forward(Cursor),
    Backward(Cursor),
}

impl StreamToken {
    pub fn encode(&self) -> String {
        let (d, c) = match self {
            StreamToken::Forward(c) => ('f', c),
            StreamToken::Backward(c) => ('b', c),
        };
        format!("{d}/{:028}{:028}/s", c.timestamp.max(0), c.id.max(0))
    }

    pub fn decode(token: &str) -> Result<StreamToken> {
        let bad = || Error::invalid("nextToken", "The specified nextToken is not valid.");
        let (dir, rest) = token.split_at_checked(2).ok_or_else(bad)?;
        let digits = rest.strip_suffix("/s").ok_or_else(bad)?;
        if digits.len() != 56 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let (t, i) = digits.split_at(28);
        let c = Cursor { timestamp: t.parse().map_err(|_| bad())?, id: i.parse().map_err(|_| bad())? };
        match dir {
            "f/" => Ok(StreamToken::Forward(c)),
            "b/" => Ok(StreamToken::Backward(c)),
            _ => Err(bad()),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GetRequest {
    log_group_name: Option<String>,
    log_group_identifier: Option<String>,
    log_stream_name: String,
    start_time: Option<i64>,
    end_time: Option<i64>,
    next_token: Option<String>,
    limit: Option<i64>,
    #[serde(default)]
    start_from_head: bool,
}

fn render_event(e: &Event) -> Value {
    json!({ "timestamp": e.timestamp, "message": e.message, "ingestionTime": e.ingestion_time })
}

/// The tokens a `GetLogEvents` page answers with. With events, forward continues after the
/// last and backward before the first. Without, the token the caller passed comes back
/// unchanged (that is how followers and paginators know they reached the end) and the
/// other direction starts from the same place.
pub fn page_tokens(events: &[Event], asked: Option<StreamToken>, origin: Cursor) -> (StreamToken, StreamToken) {
    match (events.first(), events.last()) {
        (Some(first), Some(last)) => (StreamToken::Forward(Cursor::at(last)), StreamToken::Backward(Cursor::at(first))),
        _ => match asked {
            Some(t @ StreamToken::Forward(c)) => (t, StreamToken::Backward(c)),
            Some(t @ StreamToken::Backward(c)) => (StreamToken::Forward(c), t),
            None => (StreamToken::Forward(origin), StreamToken::Backward(origin)),
        },
    }
}

pub async fn get(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: GetRequest = input(v)?;
    let group = group_ref(ctx, req.log_group_name, req.log_group_identifier)?;
    check_stream_name("logStreamName", &req.log_stream_name)?;
    let asked = req.next_token.as_deref().map(StreamToken::decode).transpose()?;
    let position = match asked {
        Some(StreamToken::Forward(c)) => Position::After(c),
        Some(StreamToken::Backward(c)) => Position::Before(c),
        None if req.start_from_head => Position::Head,
        None => Position::Tail,
    };
    let q = StreamRead {
        start: req.start_time,
        end: req.end_time,
        position,
        limit: req.limit.map_or(MAX_EVENTS, |l| l.clamp(1, MAX_EVENTS as i64) as usize),
        max_bytes: MAX_PAGE_BYTES,
    };
    let events = ctx.logs.read_stream(&ctx.scope, &group, &req.log_stream_name, q, now_ms()).await?;
    // An empty stream read from the start: the forward token picks up everything that comes.
    let origin = Cursor { timestamp: req.start_time.unwrap_or(0), id: 0 };
    let (forward, backward) = page_tokens(&events, asked, origin);
    let rendered: Vec<Value> = events.iter().map(render_event).collect();
    let mut out = json!({ "events": rendered });
    if let Some(obj) = out.as_object_mut() {
        // The caller's own token string when it comes back unchanged (byte for byte).
        let same = |t: StreamToken| match (&req.next_token, asked) {
            (Some(s), Some(a)) if a == t => s.clone(),
            _ => t.encode(),
        };
        obj.insert("nextForwardToken".into(), json!(same(forward)));
        obj.insert("nextBackwardToken".into(), json!(same(backward)));
    }
    Ok(out)
}

/// `FilterLogEvents` tokens: direction and the position of the last event examined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchToken {
    pub ascending: bool,
    pub cursor: Cursor,
}

impl SearchToken {
    pub fn encode(&self) -> String {
        let d = if self.ascending { 'a' } else { 'd' };
        format!("wharf1{d}{:020}{:020}", self.cursor.timestamp.max(0), self.cursor.id.max(0))
    }

    pub fn decode(token: &str) -> Result<SearchToken> {
        let bad = || Error::invalid("nextToken", "The specified nextToken is not valid.");
        let rest = token.strip_prefix("wharf1").ok_or_else(bad)?;
        let (d, digits) = rest.split_at_checked(1).ok_or_else(bad)?;
        if digits.len() != 40 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        let (t, i) = digits.split_at(20);
        let cursor = Cursor { timestamp: t.parse().map_err(|_| bad())?, id: i.parse().map_err(|_| bad())? };
        match d {
            "a" => Ok(SearchToken { ascending: true, cursor }),
            "d" => Ok(SearchToken { ascending: false, cursor }),
            _ => Err(bad()),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct FilterRequest {
    log_group_name: Option<String>,
    log_group_identifier: Option<String>,
    log_stream_names: Option<Vec<String>>,
    log_stream_name_prefix: Option<String>,
    start_time: Option<i64>,
    end_time: Option<i64>,
    filter_pattern: Option<String>,
    next_token: Option<String>,
    limit: Option<i64>,
    start_from_head: Option<bool>,
}

/// The `eventId` of `FilterLogEvents`: the event's store id as 56 digits, unique per event
/// and stable, so followers can de-duplicate by it.
pub fn event_id(e: &Event) -> String {
    format!("{:056}", e.id)
}

pub async fn filter(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: FilterRequest = input(v)?;
    let group = group_ref(ctx, req.log_group_name, req.log_group_identifier)?;
    let streams = match (req.log_stream_names, req.log_stream_name_prefix) {
        (Some(_), Some(_)) => {
            return Err(Error::invalid(
                "logStreamNamePrefix",
                "logStreamNames and logStreamNamePrefix are mutually exclusive parameters.",
            ));
        }
        (Some(names), None) => {
            for n in &names {
                check_stream_name("logStreamNames", n)?;
            }
            StreamSelection::Names(names)
        }
        (None, Some(p)) => {
            check_stream_name("logStreamNamePrefix", &p)?;
            StreamSelection::Prefix(p)
        }
        (None, None) => StreamSelection::All,
    };
    let pattern = Pattern::parse(req.filter_pattern.as_deref().unwrap_or(""))?;
    let token = req.next_token.as_deref().map(SearchToken::decode).transpose()?;
    let ascending = match token {
        Some(t) => t.ascending,
        None => req.start_from_head.unwrap_or(true),
    };
    if !ascending && req.start_time.is_some_and(|t| t < DESCENDING_SINCE) {
        return Err(Error::invalid(
            "startFromHead",
            "startFromHead=false is supported only when startTime is on or after Jan 1, 2024 00:00:00 UTC.",
        ));
    }
    let q = GroupSearch {
        streams,
        start: req.start_time,
        end: req.end_time,
        pattern,
        after: token.map(|t| t.cursor),
        ascending,
        limit: req.limit.map_or(MAX_EVENTS, |l| l.clamp(1, MAX_EVENTS as i64) as usize),
        max_bytes: MAX_PAGE_BYTES,
        scan_budget: SCAN_BUDGET,
    };
    let (found, next) = ctx.logs.search_group(&ctx.scope, &group, q, now_ms()).await?;
    let events: Vec<Value> = found
        .iter()
        .map(|f| {
            json!({
                "logStreamName": f.stream,
                "timestamp": f.event.timestamp,
                "message": f.event.message,
                "ingestionTime": f.event.ingestion_time,
                "eventId": event_id(&f.event),
            })
        })
        .collect();
    // `searchedLogStreams` has been an empty list since 2020.
    let mut out = json!({ "events": events, "searchedLogStreams": [] });
    if let (Some(cursor), Some(obj)) = (next, out.as_object_mut()) {
        obj.insert("nextToken".into(), json!(SearchToken { ascending, cursor }.encode()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_750_000_000_000;
    const HOUR: i64 = 3_600_000;
    const DAY: i64 = 24 * HOUR;

    #[test]
    fn stream_tokens_round_trip_and_refuse_garbage() {
        for t in [
            StreamToken::Forward(Cursor { timestamp: NOW, id: 42 }),
            StreamToken::Backward(Cursor { timestamp: 0, id: 0 }),
        ] {
            let s = t.encode();
            assert_eq!(s.len(), 2 + 56 + 2, "{s}");
            assert_eq!(StreamToken::decode(&s).unwrap(), t);
        }
        for bad in ["", "f/", "f/123/s", "x/00000000000000000000000000000000000000000000000000000000/s", "f/abc"] {
            assert!(matches!(StreamToken::decode(bad), Err(Error::InvalidParameter { .. })), "{bad}");
        }
    }

    #[test]
    fn search_tokens_round_trip_and_refuse_garbage() {
        let t = SearchToken { ascending: false, cursor: Cursor { timestamp: NOW, id: 7 } };
        assert_eq!(SearchToken::decode(&t.encode()).unwrap(), t);
        assert!(SearchToken::decode("wharf1x0000").is_err());
        assert!(SearchToken::decode(&StreamToken::Forward(t.cursor).encode()).is_err());
    }

    fn ev(id: i64, timestamp: i64) -> Event {
        Event { id, timestamp, ingestion_time: timestamp, message: "m".into() }
    }

    #[test]
    fn page_tokens_repeat_the_callers_token_at_the_end() {
        let origin = Cursor { timestamp: 0, id: 0 };
        let events = [ev(3, 10), ev(4, 11)];
        let (f, b) = page_tokens(&events, None, origin);
        assert_eq!(f, StreamToken::Forward(Cursor { timestamp: 11, id: 4 }));
        assert_eq!(b, StreamToken::Backward(Cursor { timestamp: 10, id: 3 }));
        // Nothing after the forward token: it comes back unchanged.
        let (f2, b2) = page_tokens(&[], Some(f), origin);
        assert_eq!(f2, f);
        assert_eq!(b2, StreamToken::Backward(Cursor { timestamp: 11, id: 4 }));
        // Nothing before the backward token: it comes back unchanged.
        let (f3, b3) = page_tokens(&[], Some(b), origin);
        assert_eq!(b3, b);
        assert_eq!(f3, StreamToken::Forward(Cursor { timestamp: 10, id: 3 }));
        // An empty first read still hands out a forward token that will see new events.
        assert_eq!(page_tokens(&[], None, origin).0, StreamToken::Forward(origin));
    }

    #[test]
    fn batches_reject_too_old_expired_and_too_new_events_at_the_edges() {
        let ts = [NOW - 15 * DAY, NOW - 20 * HOUR, NOW - HOUR, NOW, NOW + HOUR, NOW + 3 * HOUR];
        let (range, info) = classify(&ts, None, NOW).unwrap();
        assert_eq!(range, 1..5);
        assert_eq!(info.unwrap(), json!({"tooOldLogEventEndIndex": 1, "tooNewLogEventStartIndex": 5}));
        let ts = [NOW - 15 * DAY, NOW - 2 * DAY, NOW - HOUR, NOW, NOW + HOUR, NOW + 3 * HOUR];
        let (range, info) = classify(&ts, Some(1), NOW).unwrap();
        assert_eq!(range, 2..5);
        assert_eq!(
            info.unwrap(),
            json!({"tooOldLogEventEndIndex": 1, "expiredLogEventEndIndex": 2, "tooNewLogEventStartIndex": 5})
        );
        let (range, info) = classify(&[NOW - HOUR, NOW], Some(7), NOW).unwrap();
        assert_eq!((range, info), (0..2, None));
        // Everything rejected is still an answer, not an error.
        let (range, _) = classify(&[NOW + 5 * HOUR], None, NOW).unwrap();
        assert!(range.is_empty());
    }

    #[test]
    fn valid_events_may_not_span_more_than_a_day() {
        assert!(classify(&[NOW - 2 * DAY, NOW], None, NOW).is_err());
        assert!(classify(&[NOW - DAY, NOW], None, NOW).is_ok());
        // Rejected events do not count toward the span.
        assert!(classify(&[NOW - 20 * DAY, NOW - HOUR, NOW], None, NOW).is_ok());
    }
}
