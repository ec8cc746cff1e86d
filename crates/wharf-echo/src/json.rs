//! Just enough JSON: string quoting for the responses, and pulling one string field out of a
//! document (the task metadata's `TaskARN`).

use std::fmt::Write as _;

/// `s` as a JSON string literal, quotes included.
pub fn string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `Some(s)` as a string literal, `None` as `null`.
pub fn opt_string(s: Option<&str>) -> String {
    s.map_or_else(|| "null".to_owned(), string)
}

/// A JSON object of string values, in the given order.
pub fn object<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut out = String::from("{");
    for (i, (k, v)) in pairs.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&string(k));
        out.push(':');
        out.push_str(&string(v));
    }
    out.push('}');
    out
}

/// The value of the first `"key": "<string>"` in `doc` (at any depth). Best effort: enough for
/// the ECS task metadata document, not a validating parser.
pub fn find_string_field(doc: &str, key: &str) -> Option<String> {
    let needle = string(key);
    let mut rest = doc;
    while let Some(at) = rest.find(&needle) {
        rest = &rest[at + needle.len()..];
        let after = rest.trim_start();
        let Some(after) = after.strip_prefix(':') else { continue };
        if let Some(value) = parse_string(after.trim_start()) {
            return Some(value);
        }
    }
    None
}

/// Parses a JSON string literal at the start of `s`.
fn parse_string(s: &str) -> Option<String> {
    let mut chars = s.strip_prefix('"')?.chars();
    let mut out = String::new();
    loop {
        match chars.next()? {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    let code = u32::from_str_radix(&hex, 16).ok()?;
                    out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                }
                c => out.push(c),
            },
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_and_escapes() {
        assert_eq!(string("a\"b\\c\nd\u{1}"), r#""a\"b\\c\nd\u0001""#);
        assert_eq!(opt_string(None), "null");
        assert_eq!(object([("a", "1"), ("b", "x\"y")]), r#"{"a":"1","b":"x\"y"}"#);
    }

    #[test]
    fn finds_task_arn() {
        let doc = r#"{"Cluster":"default","TaskARN" : "arn:aws:ecs:us-east-1:000000000000:task/default/abc",
            "Containers":[{"TaskARN":"other"}]}"#;
        assert_eq!(
            find_string_field(doc, "TaskARN").as_deref(),
            Some("arn:aws:ecs:us-east-1:000000000000:task/default/abc")
        );
        assert_eq!(
            find_string_field(r#"{"TaskARN":null,"x":{"TaskARN":"y\u0041"}}"#, "TaskARN").as_deref(),
            Some("yA")
        );
        assert_eq!(find_string_field("{}", "TaskARN"), None);
    }
}
