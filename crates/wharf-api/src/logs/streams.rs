//! Log streams: create, delete, describe.

use super::store::{Stream, StreamKey, StreamListing, StreamOrder, stream_key};
use super::{check_group_name, check_stream_name, group_arn, group_ref, input, now_ms};
use crate::Ctx;
use crate::paging::{after_key, token_for, with_token};
use serde::Deserialize;
use serde_json::{Value, json};
use wharf_types::{Error, Result};

const BY_NAME: &str = "logs/streams/name/";
const BY_TIME: &str = "logs/streams/time/";

/// The `uploadSequenceToken`/`nextSequenceToken` of a stream at `sequence` (ignored on input
/// by CloudWatch Logs today, but still reported): a 56-digit number, as AWS's are.
pub fn sequence_token(sequence: i64) -> String {
    format!("{sequence:056}")
}

fn render(ctx: &Ctx, group: &str, s: &Stream) -> Value {
    let mut v = json!({
        "logStreamName": s.name,
        "creationTime": s.creation_time,
        "arn": format!("{}:log-stream:{}", group_arn(ctx, group), s.name),
        "uploadSequenceToken": sequence_token(s.sequence),
        // Reported as zero for streams since 2019, as AWS does.
        "storedBytes": 0,
    });
    if let Some(obj) = v.as_object_mut() {
        for (k, val) in [
            ("firstEventTimestamp", s.first_event),
            ("lastEventTimestamp", s.last_event),
            ("lastIngestionTime", s.last_ingestion),
        ] {
            if let Some(t) = val {
                obj.insert(k.into(), json!(t));
            }
        }
    }
    v
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StreamRequest {
    log_group_name: String,
    log_stream_name: String,
}

pub async fn create(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: StreamRequest = input(v)?;
    check_group_name("logGroupName", &req.log_group_name)?;
    check_stream_name("logStreamName", &req.log_stream_name)?;
    ctx.logs.create_stream(&ctx.scope, &req.log_group_name, &req.log_stream_name, now_ms()).await?;
    Ok(json!({}))
}

pub async fn delete(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: StreamRequest = input(v)?;
    check_group_name("logGroupName", &req.log_group_name)?;
    check_stream_name("logStreamName", &req.log_stream_name)?;
    ctx.logs.delete_stream(&ctx.scope, &req.log_group_name, &req.log_stream_name).await?;
    Ok(json!({}))
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescribeRequest {
    log_group_name: Option<String>,
    log_group_identifier: Option<String>,
    log_stream_name_prefix: Option<String>,
    order_by: Option<String>,
    #[serde(default)]
    descending: bool,
    next_token: Option<String>,
    limit: Option<i64>,
}

/// Page tokens carry the sort key of the last stream returned, in the listing's order.
fn token(order: StreamOrder, s: &Stream) -> String {
    match order {
        StreamOrder::Name => token_for(&format!("{BY_NAME}{}", s.name)),
        StreamOrder::LastEventTime => {
            let k = stream_key(s);
            token_for(&format!("{BY_TIME}{:020}/{}", k.last_event, k.name))
        }
    }
}

fn parse_token(order: StreamOrder, token: Option<&str>) -> Result<Option<StreamKey>> {
    let bad = || Error::invalid("nextToken", "The specified nextToken is not valid.");
    Ok(match order {
        StreamOrder::Name => {
            after_key(token, BY_NAME)?.map(|k| StreamKey { last_event: -1, name: k[BY_NAME.len()..].to_string() })
        }
        StreamOrder::LastEventTime => match after_key(token, BY_TIME)? {
            None => None,
            Some(k) => {
                let rest = &k[BY_TIME.len()..];
                let (t, name) = rest.split_at_checked(20).ok_or_else(bad)?;
                let name = name.strip_prefix('/').ok_or_else(bad)?;
                Some(StreamKey { last_event: t.parse().map_err(|_| bad())?, name: name.to_string() })
            }
        },
    })
}

pub async fn describe(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DescribeRequest = input(v)?;
    let group = group_ref(ctx, req.log_group_name, req.log_group_identifier)?;
    let order = match req.order_by.as_deref() {
        Some("LastEventTime") => StreamOrder::LastEventTime,
        _ => StreamOrder::Name,
    };
    if order == StreamOrder::LastEventTime && req.log_stream_name_prefix.is_some() {
        return Err(Error::invalid("orderBy", "Cannot order by LastEventTime with a logStreamNamePrefix."));
    }
    if let Some(p) = &req.log_stream_name_prefix {
        check_stream_name("logStreamNamePrefix", p)?;
    }
    let query = StreamListing {
        prefix: req.log_stream_name_prefix,
        order,
        descending: req.descending,
        after: parse_token(order, req.next_token.as_deref())?,
        limit: req.limit.unwrap_or(50).clamp(1, 50) as usize,
    };
    let (streams, more) = ctx.logs.list_streams(&ctx.scope, &group, query).await?;
    let next = if more { streams.last().map(|s| token(order, s)) } else { None };
    let rendered: Vec<Value> = streams.iter().map(|s| render(ctx, &group, s)).collect();
    Ok(with_token(json!({ "logStreams": rendered }), next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_in_their_order_only() {
        let s = Stream {
            name: "ecs/web/a1".into(),
            creation_time: 1,
            first_event: Some(5),
            last_event: Some(1_700_000_000_000),
            last_ingestion: Some(9),
            sequence: 3,
        };
        let t = token(StreamOrder::LastEventTime, &s);
        assert_eq!(
            parse_token(StreamOrder::LastEventTime, Some(&t)).unwrap(),
            Some(StreamKey { last_event: 1_700_000_000_000, name: "ecs/web/a1".into() })
        );
        assert!(parse_token(StreamOrder::Name, Some(&t)).is_err());
        let empty = Stream { last_event: None, ..s };
        let t = token(StreamOrder::LastEventTime, &empty);
        assert_eq!(parse_token(StreamOrder::LastEventTime, Some(&t)).unwrap().unwrap().last_event, -1);
        let t = token(StreamOrder::Name, &empty);
        assert_eq!(parse_token(StreamOrder::Name, Some(&t)).unwrap().unwrap().name, "ecs/web/a1");
    }
}
