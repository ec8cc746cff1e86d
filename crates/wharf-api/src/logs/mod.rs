//! Amazon CloudWatch Logs (`Logs_20140328`): log groups, log streams and log events, for
//! the `awslogs` log driver and the tools that read what it wrote (`aws logs get-log-events`,
//! `filter-log-events`, followers that poll them).
//!
//! Events live in the log store ([`LogStore`], `<data-dir>/logs.db`), outside the resource
//! store: see `store.rs` for the layout. Retention is enforced twice: reads never show an
//! event past its group's retention, and `purge_expired` (driven periodically by the
//! `log-retention` controller) deletes them.

mod events;
mod groups;
mod streams;

pub use wharf_core::logs::{LogStore, filter, now_ms, store};

use crate::{Ctx, input};
use wharf_types::{Arn, Error, Result};

/// The `X-Amz-Target` prefix of CloudWatch Logs requests.
pub const TARGET_PREFIX: &str = "Logs_20140328";

/// The largest `PutLogEvents` body. A batch may hold 1,048,576 bytes of messages; its JSON is
/// larger (field names, escaping of control characters up to six bytes each).
pub const PUT_LOG_EVENTS_BODY_BYTES: usize = 8 << 20;

operations! {
    "CreateLogGroup" => groups::create,
    "DeleteLogGroup" => groups::delete,
    "DescribeLogGroups" => groups::describe,
    "PutRetentionPolicy" => groups::put_retention,
    "DeleteRetentionPolicy" => groups::delete_retention,
    "PutLogGroupDeletionProtection" => groups::put_deletion_protection,
    "TagResource" => groups::tag_resource,
    "UntagResource" => groups::untag_resource,
    "ListTagsForResource" => groups::list_tags_for_resource,
    "TagLogGroup" => groups::tag_log_group,
    "UntagLogGroup" => groups::untag_log_group,
    "ListTagsLogGroup" => groups::list_tags_log_group,
    "CreateLogStream" => streams::create,
    "DeleteLogStream" => streams::delete,
    "DescribeLogStreams" => streams::describe,
    "PutLogEvents" => events::put,
    "GetLogEvents" => events::get,
    "FilterLogEvents" => events::filter,
}

/// A model constraint the validator does not check (patterns), worded as AWS words it.
fn pattern_error(field: &str, value: &str, pattern: &str) -> Error {
    Error::invalid(
        field,
        format!(
            "1 validation error detected: Value '{value}' at '{field}' failed to satisfy constraint: Member must satisfy regular expression pattern: {pattern}"
        ),
    )
}

fn is_group_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '/' | '#')
}

/// `LogGroupName`: 1-512 of `[\.\-_/#A-Za-z0-9]` (lengths are the model's).
fn check_group_name(field: &str, name: &str) -> Result<()> {
    if !name.is_empty() && name.chars().all(is_group_name_char) {
        Ok(())
    } else {
        Err(pattern_error(field, name, r"[\.\-_/#A-Za-z0-9]+"))
    }
}

/// `LogStreamName`: anything but `:` and `*`.
fn check_stream_name(field: &str, name: &str) -> Result<()> {
    if name.contains([':', '*']) { Err(pattern_error(field, name, "[^:*]*")) } else { Ok(()) }
}

/// The group named by `logGroupName` or `logGroupIdentifier` (a name or an ARN, with or
/// without the trailing `:*`): exactly one of the two.
fn group_ref(ctx: &Ctx, name: Option<String>, identifier: Option<String>) -> Result<String> {
    match (name, identifier) {
        (Some(_), Some(_)) => Err(Error::invalid(
            "logGroupIdentifier",
            "LogGroupName and LogGroupIdentifier are mutually exclusive parameters.",
        )),
        (None, None) => {
            Err(Error::invalid("logGroupName", "Should provide either logGroupName or logGroupIdentifier."))
        }
        (Some(n), None) => {
            check_group_name("logGroupName", &n)?;
            Ok(n)
        }
        (None, Some(id)) => group_identifier(ctx, &id, "logGroupIdentifier"),
    }
}

/// A log group name from a name or a log group ARN of the caller's account and region.
fn group_identifier(ctx: &Ctx, value: &str, field: &str) -> Result<String> {
    if !value.starts_with("arn:") {
        check_group_name(field, value)?;
        return Ok(value.to_string());
    }
    let arn = Arn::parse_in(value, &ctx.scope, "logs", field)?;
    let name = arn.resource.strip_prefix("log-group:").map(|n| n.strip_suffix(":*").unwrap_or(n));
    match name {
        Some(n) if !n.is_empty() && n.chars().all(is_group_name_char) => Ok(n.to_string()),
        _ => Err(Error::invalid(field, format!("The ARN '{value}' in {field} is not a log group ARN."))),
    }
}

/// `arn:aws:logs:<region>:<account>:log-group:<name>` (no trailing `:*`).
fn group_arn(ctx: &Ctx, name: &str) -> String {
    ctx.scope.arn("logs", format!("log-group:{name}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Ctx {
        Ctx::in_memory("123456789012", "us-east-1")
    }

    #[test]
    fn group_references_accept_names_and_arns() {
        let c = ctx();
        let name = |n: Option<&str>, id: Option<&str>| group_ref(&c, n.map(Into::into), id.map(Into::into));
        assert_eq!(name(Some("/ecs/web"), None).unwrap(), "/ecs/web");
        assert_eq!(name(None, Some("/ecs/web")).unwrap(), "/ecs/web");
        let arn = "arn:aws:logs:us-east-1:123456789012:log-group:/ecs/web";
        assert_eq!(name(None, Some(arn)).unwrap(), "/ecs/web");
        assert_eq!(name(None, Some(&format!("{arn}:*"))).unwrap(), "/ecs/web");
        for bad in [
            (Some("/a"), Some("/a")),
            (None, None),
            (Some("a b"), None),
            (None, Some("arn:aws:logs:eu-west-1:123456789012:log-group:x")),
            (None, Some("arn:aws:logs:us-east-1:123456789012:destination:x")),
        ] {
            assert!(matches!(name(bad.0, bad.1), Err(Error::InvalidParameter { .. })), "{bad:?}");
        }
    }

    #[test]
    fn stream_names_refuse_colons_and_stars() {
        assert!(check_stream_name("logStreamName", "ecs/web/0123abcd").is_ok());
        assert!(check_stream_name("logStreamName", "a:b").is_err());
        assert!(check_stream_name("logStreamName", "a*").is_err());
    }
}
