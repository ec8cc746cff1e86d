//! `nextToken`/`maxResults` pagination shared by every List operation. A token is the hex of
//! the last key returned, so pages are stable under concurrent writes and cost O(page).

use wharf_types::{Error, Result};

pub fn token_for(key: &str) -> String {
    key.bytes().map(|b| format!("{b:02x}")).collect()
}

/// Decodes a token and checks it points inside `prefix` (a token from another listing is
/// refused rather than silently misread).
pub fn after_key(token: Option<&str>, prefix: &str) -> Result<Option<String>> {
    let Some(token) = token else { return Ok(None) };
    let bad = || Error::invalid("nextToken", "The specified nextToken is not valid.");
    if token.len() % 2 != 0 || token.len() > 4096 {
        return Err(bad());
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| token.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(bad)?;
    let key = String::from_utf8(bytes).map_err(|_| bad())?;
    if !key.starts_with(prefix) {
        return Err(bad());
    }
    Ok(Some(key))
}

/// `maxResults` within `1..=max`, or `default` when absent.
pub fn max_results(v: Option<i64>, default: usize, max: usize) -> Result<usize> {
    match v {
        None => Ok(default),
        Some(n) if n >= 1 && n as usize <= max => Ok(n as usize),
        Some(_) => Err(Error::invalid("maxResults", format!("maxResults must be between 1 and {max}."))),
    }
}

/// One page of a List operation: walks documents under `prefix` from the caller's token,
/// keeps what `pick` maps to `Some`, and stops at `limit`. The next token is set only when
/// more documents may follow.
pub async fn scan<T, O>(
    db: &crate::Db,
    prefix: &str,
    token: Option<&str>,
    limit: usize,
    descending: bool,
    mut pick: impl FnMut(&T) -> Option<O>,
) -> Result<(Vec<O>, Option<String>)>
where
    T: serde::de::DeserializeOwned,
{
    let after = after_key(token, prefix)?;
    scan_from(db, prefix, after, limit, descending, |t| Ok(pick(t))).await
}

/// [`scan`] from an already decoded position (services whose token member is spelled
/// otherwise decode it themselves), with a `pick` that may refuse the request.
pub async fn scan_from<T, O>(
    db: &crate::Db,
    prefix: &str,
    mut after: Option<String>,
    limit: usize,
    descending: bool,
    mut pick: impl FnMut(&T) -> Result<Option<O>>,
) -> Result<(Vec<O>, Option<String>)>
where
    T: serde::de::DeserializeOwned,
{
    const CHUNK: usize = 256;
    let mut out = Vec::new();
    loop {
        // Decode no more than a page (plus one, to know whether more follow) unless the
        // filter drops documents and another round is needed.
        let (page, more) = db.range::<T>(prefix, after.clone(), (limit + 1).min(CHUNK), descending).await?;
        let n = page.len();
        for (i, d) in page.into_iter().enumerate() {
            if let Some(o) = pick(&d.doc)? {
                out.push(o);
                if out.len() == limit {
                    let follows = more || i + 1 < n;
                    return Ok((out, follows.then(|| token_for(&d.key))));
                }
            }
            after = Some(d.key);
        }
        if !more {
            return Ok((out, None));
        }
    }
}

/// Adds `nextToken` to a List output when there is one.
pub fn with_token(mut out: serde_json::Value, next: Option<String>) -> serde_json::Value {
    if let (Some(t), Some(obj)) = (next, out.as_object_mut()) {
        obj.insert("nextToken".into(), serde_json::Value::String(t));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_stay_in_their_listing() {
        let t = token_for("/a/b/c");
        assert_eq!(after_key(Some(&t), "/a/").unwrap().as_deref(), Some("/a/b/c"));
        assert!(after_key(Some(&t), "/x/").is_err());
        assert!(after_key(Some("zz"), "/").is_err());
        assert!(after_key(Some("abc"), "/").is_err());
        assert_eq!(after_key(None, "/").unwrap(), None);
    }
}
