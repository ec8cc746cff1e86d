//! AWS Signature Version 4 verification for every API request.
//!
//! Recomputes the signature the client made (canonical request → string to sign →
//! derived signing key → HMAC) and compares in constant time. It decides who is calling
//! and from which region; it must never look at what is being asked.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const TERMINATOR: &str = "aws4_request";
const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// AWS tolerates this much clock difference between client and server.
const MAX_SKEW_SECS: i64 = 15 * 60;
/// AWS refuses presigned URLs that claim to live longer than a week.
const MAX_PRESIGN_EXPIRES: i64 = 7 * 24 * 60 * 60;
/// Distinct (secret, day, region, service) tuples are few; the bound only guards memory.
const KEY_CACHE_CAPACITY: usize = 1024;
/// Presigned-URL parameters; the first three mark a request as presigned at all.
const PRESIGN_PARAMS: [&str; 6] =
    ["X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Signature", "X-Amz-Date", "X-Amz-SignedHeaders", "X-Amz-Expires"];

/// The parts of an HTTP request that SigV4 covers, borrowed from whatever server type holds them.
#[derive(Debug, Clone, Copy)]
pub struct RequestParts<'a> {
    pub method: &'a str,
    /// Raw path as received, still percent-encoded, without the query.
    pub path: &'a str,
    /// Raw query string without the leading `?`.
    pub query: Option<&'a str>,
    /// Must contain `host`: clients always sign it.
    pub headers: &'a http::HeaderMap,
    pub body: &'a [u8],
}

/// What the server knows about an access key.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    pub secret_access_key: String,
    pub account_id: String,
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("secret_access_key", &"<redacted>")
            .field("account_id", &self.account_id)
            .finish()
    }
}

/// Source of secrets, e.g. the IAM store.
pub trait CredentialLookup {
    fn lookup(&self, access_key_id: &str) -> Option<Credential>;
}

impl<T: CredentialLookup + ?Sized> CredentialLookup for &T {
    fn lookup(&self, access_key_id: &str) -> Option<Credential> {
        (**self).lookup(access_key_id)
    }
}

impl<T: CredentialLookup + ?Sized> CredentialLookup for Arc<T> {
    fn lookup(&self, access_key_id: &str) -> Option<Credential> {
        (**self).lookup(access_key_id)
    }
}

impl CredentialLookup for HashMap<String, Credential> {
    fn lookup(&self, access_key_id: &str) -> Option<Credential> {
        self.get(access_key_id).cloned()
    }
}

/// The authenticated caller and the scope the request was signed for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub access_key_id: String,
    pub account_id: String,
    pub region: String,
    pub service: String,
}

/// Why a request was not authenticated; `Display` is the AWS JSON-protocol message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("Missing Authentication Token")]
    Missing,
    #[error("{0}")]
    Incomplete(String),
    #[error("The security token included in the request is invalid.")]
    UnknownAccessKey,
    #[error(
        "The request signature we calculated does not match the signature you provided. \
         Check your AWS Secret Access Key and signing method. \
         Consult the service documentation for details."
    )]
    SignatureMismatch,
    #[error("{0}")]
    Expired(String),
}

impl AuthError {
    /// Error code for AWS JSON 1.0/1.1 services.
    pub fn json_code(&self) -> &'static str {
        match self {
            Self::Missing => "MissingAuthenticationTokenException",
            Self::Incomplete(_) => "IncompleteSignatureException",
            Self::UnknownAccessKey => "UnrecognizedClientException",
            Self::SignatureMismatch | Self::Expired(_) => "InvalidSignatureException",
        }
    }

    /// Error code for Query services (STS, ELBv2).
    pub fn query_code(&self) -> &'static str {
        match self {
            Self::Missing => "MissingAuthenticationToken",
            Self::Incomplete(_) => "IncompleteSignature",
            Self::UnknownAccessKey => "InvalidClientTokenId",
            Self::SignatureMismatch | Self::Expired(_) => "SignatureDoesNotMatch",
        }
    }

    /// The message AWS JSON services send.
    pub fn message(&self) -> String {
        self.to_string()
    }

    /// The message AWS Query services send; only the missing-token wording differs.
    pub fn query_message(&self) -> String {
        match self {
            Self::Missing => "Request is missing Authentication Token".to_owned(),
            other => other.to_string(),
        }
    }
}

/// Verifies SigV4 requests against a [`CredentialLookup`].
pub struct Verifier<L> {
    lookup: L,
    /// Derived signing keys change once a day per scope, and deriving one costs four HMACs.
    keys: Mutex<HashMap<KeyId, [u8; 32]>>,
}

impl<L> fmt::Debug for Verifier<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier").finish_non_exhaustive()
    }
}

impl<L: CredentialLookup> Verifier<L> {
    pub fn new(lookup: L) -> Self {
        Self { lookup, keys: Mutex::new(HashMap::new()) }
    }

    pub fn lookup(&self) -> &L {
        &self.lookup
    }

    /// Verifies a request at time `now` (`SystemTime::now()` in production).
    ///
    /// Checks run in AWS's order: missing → malformed → clock → access key → signature.
    /// Everything [`Verifier::verify`] checks that does not need the body: the algorithm,
    /// the credential scope, the clock skew (or expiry) and that the access key exists. A
    /// server runs it before reading a body, so an unauthenticated client cannot make it
    /// read megabytes first.
    /// Returns the service the request is signed for (its credential scope's service name).
    pub fn precheck(
        &self,
        headers: &http::HeaderMap,
        query: Option<&str>,
        now: SystemTime,
    ) -> Result<String, AuthError> {
        let query: Vec<(Cow<'_, str>, Cow<'_, str>)> =
            form_urlencoded::parse(query.unwrap_or_default().as_bytes()).collect();
        let claim = Claim::parse(headers, &query)?;
        let scope = Scope::parse(&claim)?;
        check_clock(&claim, scope.timestamp, unix_secs(now))?;
        self.lookup.lookup(scope.access_key_id).ok_or(AuthError::UnknownAccessKey)?;
        Ok(scope.service.to_string())
    }

    pub fn verify(&self, req: &RequestParts<'_>, now: SystemTime) -> Result<Identity, AuthError> {
        let query: Vec<(Cow<'_, str>, Cow<'_, str>)> =
            form_urlencoded::parse(req.query.unwrap_or_default().as_bytes()).collect();
        let claim = Claim::parse(req.headers, &query)?;
        let scope = Scope::parse(&claim)?;
        check_clock(&claim, scope.timestamp, unix_secs(now))?;
        let credential = self.lookup.lookup(scope.access_key_id).ok_or(AuthError::UnknownAccessKey)?;

        let body_hash = hex::encode(Sha256::digest(req.body));
        let payload_hashes = match req.headers.get("x-amz-content-sha256") {
            Some(declared) => {
                let declared = String::from_utf8_lossy(declared.as_bytes()).into_owned();
                // A hex value is a claim about the body, which the signature alone does not prove.
                let is_digest = declared.len() == 64 && declared.bytes().all(|b| b.is_ascii_hexdigit());
                if is_digest && !declared.eq_ignore_ascii_case(&body_hash) {
                    return Err(AuthError::SignatureMismatch);
                }
                vec![declared]
            }
            // Presigners disagree: S3-style ones use UNSIGNED-PAYLOAD, botocore's and the
            // Rust SDK's generic ones hash the (usually empty) body.
            None if claim.expires.is_some() => vec![body_hash, UNSIGNED_PAYLOAD.to_owned()],
            None => vec![body_hash],
        };

        let key = self.signing_key(&credential.secret_access_key, &scope);
        let prefix = canonical_request_prefix(req, &query, &claim);
        let matched = payload_hashes.iter().fold(false, |matched, payload_hash| {
            let canonical_hash = Sha256::new().chain_update(&prefix).chain_update(payload_hash).finalize();
            let string_to_sign =
                format!("{ALGORITHM}\n{}\n{}\n{}", claim.amz_date, scope.scope, hex::encode(canonical_hash));
            let signature = hex::encode(hmac_sha256(&key, string_to_sign.as_bytes()));
            matched | bool::from(signature.as_bytes().ct_eq(claim.signature.as_bytes()))
        });
        if !matched {
            return Err(AuthError::SignatureMismatch);
        }

        // Cache only keys that produced a valid signature, so junk scopes cannot evict them.
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        if keys.len() >= KEY_CACHE_CAPACITY {
            keys.clear();
        }
        keys.insert(cache_id(&credential.secret_access_key, &scope), key);
        Ok(Identity {
            access_key_id: scope.access_key_id.to_owned(),
            account_id: credential.account_id,
            region: scope.region.to_owned(),
            service: scope.service.to_owned(),
        })
    }

    fn signing_key(&self, secret: &str, scope: &Scope<'_>) -> [u8; 32] {
        let cached = self.keys.lock().unwrap_or_else(PoisonError::into_inner).get(&cache_id(secret, scope)).copied();
        cached.unwrap_or_else(|| {
            let k_date = hmac_sha256(format!("AWS4{secret}").as_bytes(), scope.date.as_bytes());
            let k_region = hmac_sha256(&k_date, scope.region.as_bytes());
            let k_service = hmac_sha256(&k_region, scope.service.as_bytes());
            hmac_sha256(&k_service, TERMINATOR.as_bytes())
        })
    }
}

/// (secret, date, region, service): everything a signing key is derived from.
type KeyId = (String, String, String, String);

fn cache_id(secret: &str, scope: &Scope<'_>) -> KeyId {
    let own = str::to_owned;
    (own(secret), own(scope.date), own(scope.region), own(scope.service))
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// What the client says it signed, from the `Authorization` header or a presigned query.
struct Claim {
    credential: String,
    signed_headers: String,
    signature: String,
    amz_date: String,
    /// `X-Amz-Expires` of a presigned URL; `None` for header auth.
    expires: Option<i64>,
}

impl Claim {
    fn parse(headers: &http::HeaderMap, query: &[(Cow<'_, str>, Cow<'_, str>)]) -> Result<Self, AuthError> {
        if let Some(value) = headers.get(http::header::AUTHORIZATION) {
            return Self::from_header(&String::from_utf8_lossy(value.as_bytes()), headers);
        }
        let found = PRESIGN_PARAMS.map(|name| {
            let value = query.iter().find(|(k, _)| k == name).map(|(_, v)| v.to_string());
            (name, value)
        });
        if found[..3].iter().all(|(_, value)| value.is_none()) {
            return Err(AuthError::Missing);
        }
        let [algorithm, credential, signature, amz_date, signed_headers, expires] = require(
            found,
            |name| format!("AWS query-string parameters must include '{name}'. "),
            "Re-examine the query-string parameters.",
        )?;
        if algorithm != ALGORITHM {
            return Err(unsupported_algorithm(&algorithm));
        }
        let expires = expires.parse().ok().filter(|secs| (0..=MAX_PRESIGN_EXPIRES).contains(secs));
        let Some(expires) = expires else {
            return Err(AuthError::Incomplete(format!(
                "X-Amz-Expires must be less than a week (in seconds) that is {MAX_PRESIGN_EXPIRES}"
            )));
        };
        Ok(Self { credential, signed_headers, signature, amz_date, expires: Some(expires) })
    }

    fn from_header(raw: &str, headers: &http::HeaderMap) -> Result<Self, AuthError> {
        let raw = raw.trim();
        let (algorithm, params) = raw.split_once(' ').unwrap_or((raw, ""));
        let date = headers.get("x-amz-date").map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let mut found = [
            ("'Credential' parameter", None),
            ("'Signature' parameter", None),
            ("'SignedHeaders' parameter", None),
            ("existence of either a 'X-Amz-Date' or a 'Date' header", date),
        ];
        // botocore and the Rust SDK write ", " between parameters, others ","; accept any mix.
        for param in params.split([',', ' ']) {
            let (slot, value) = match param.split_once('=') {
                Some(("Credential", value)) => (0, value),
                Some(("Signature", value)) => (1, value),
                Some(("SignedHeaders", value)) => (2, value),
                _ => continue,
            };
            found[slot].1.get_or_insert_with(|| value.to_owned());
        }
        let [credential, signature, signed_headers, amz_date] =
            require(found, |what| format!("Authorization header requires {what}. "), &format!("Authorization={raw}"))?;
        if algorithm != ALGORITHM {
            return Err(unsupported_algorithm(algorithm));
        }
        Ok(Self { credential, signed_headers, signature, amz_date, expires: None })
    }
}

/// Unwraps all parts or reports every missing one at once, as AWS does.
fn require<const N: usize>(
    found: [(&str, Option<String>); N],
    describe: impl Fn(&str) -> String,
    trailer: &str,
) -> Result<[String; N], AuthError> {
    let missing: String = found.iter().filter(|(_, v)| v.is_none()).map(|(name, _)| describe(name)).collect();
    if !missing.is_empty() {
        return Err(AuthError::Incomplete(format!("{missing}{trailer}")));
    }
    Ok(found.map(|(_, value)| value.unwrap_or_default()))
}

fn unsupported_algorithm(algorithm: &str) -> AuthError {
    AuthError::Incomplete(format!("Unsupported AWS 'algorithm': '{algorithm}'."))
}

/// The credential scope, validated against the claimed date.
struct Scope<'a> {
    access_key_id: &'a str,
    /// `date/region/service/aws4_request`, as it appears in the string to sign.
    scope: &'a str,
    date: &'a str,
    region: &'a str,
    service: &'a str,
    timestamp: i64,
}

impl<'a> Scope<'a> {
    fn parse(claim: &'a Claim) -> Result<Self, AuthError> {
        let incomplete = |message: String| Err(AuthError::Incomplete(message));
        let (access_key_id, scope) = claim.credential.split_once('/').unwrap_or((&claim.credential, ""));
        let parts: Vec<&str> = scope.split('/').collect();
        let terminator = parts.last().copied().unwrap_or_default();
        if terminator != TERMINATOR {
            return incomplete(format!(
                "Credential should be scoped with a valid terminator: '{TERMINATOR}', not '{terminator}'."
            ));
        }
        let &[date, region, service, _] = parts.as_slice() else {
            return incomplete(format!(
                "Credential should have 5 slash-separated parts (key/date/region/service/{TERMINATOR}), not '{}'.",
                claim.credential
            ));
        };
        if region.is_empty() {
            return incomplete("Credential should be scoped to a valid region.".to_owned());
        }
        if service.is_empty() {
            return incomplete("Credential should be scoped to correct service.".to_owned());
        }
        let Some(timestamp) = parse_amz_date(&claim.amz_date) else {
            return incomplete(format!(
                "Date must be in ISO-8601 'basic format'. Got '{}'. See http://en.wikipedia.org/wiki/ISO_8601",
                claim.amz_date
            ));
        };
        let day = claim.amz_date.get(..8).unwrap_or_default();
        if date != day {
            return incomplete(format!(
                "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: \
                 '{date}' != '{day}', from '{}'.",
                claim.amz_date
            ));
        }
        if !claim.signed_headers.split(';').any(|h| h.eq_ignore_ascii_case("host")) {
            return incomplete("'Host' must be a 'SignedHeader' in the AWS Authorization.".to_owned());
        }
        Ok(Self { access_key_id, scope, date, region, service, timestamp })
    }
}

fn check_clock(claim: &Claim, signed_at: i64, now: i64) -> Result<(), AuthError> {
    let (at, now_str) = (&claim.amz_date, format_amz_date(now));
    if signed_at > now.saturating_add(MAX_SKEW_SECS) {
        let limit = format_amz_date(now.saturating_add(MAX_SKEW_SECS));
        return Err(AuthError::Expired(format!(
            "Signature not yet current: {at} is still later than {limit} ({now_str} + 15 min.)"
        )));
    }
    let (oldest, allowance) = match claim.expires {
        Some(expires) => (now.saturating_sub(expires), format!("{expires} sec.")),
        None => (now.saturating_sub(MAX_SKEW_SECS), "15 min.".to_owned()),
    };
    if signed_at < oldest {
        let limit = format_amz_date(oldest);
        return Err(AuthError::Expired(format!(
            "Signature expired: {at} is now earlier than {limit} ({now_str} - {allowance})"
        )));
    }
    Ok(())
}

/// Everything in the canonical request up to (excluding) the payload hash.
fn canonical_request_prefix(req: &RequestParts<'_>, query: &[(Cow<'_, str>, Cow<'_, str>)], claim: &Claim) -> String {
    // Non-S3 services sign the normalized path percent-encoded once more (a sent `%3A` is
    // signed as `%253A`): botocore quotes it with safe='/~', aws-sigv4 double-encodes.
    let path = uri_encode(&normalize_path(req.path), true);
    let mut pairs: Vec<(String, String)> = query
        .iter()
        .filter(|(name, _)| claim.expires.is_none() || name != "X-Amz-Signature")
        .map(|(name, value)| (uri_encode(name, false), uri_encode(value, false)))
        .collect();
    pairs.sort();
    let query: Vec<String> = pairs.into_iter().map(|(name, value)| format!("{name}={value}")).collect();
    let mut headers = String::new();
    for name in claim.signed_headers.split(';').map(str::to_ascii_lowercase) {
        let values: Vec<String> = match http::HeaderName::from_bytes(name.as_bytes()) {
            Ok(header) => {
                req.headers.get_all(header).iter().map(|v| trim_all(&String::from_utf8_lossy(v.as_bytes()))).collect()
            }
            Err(_) => Vec::new(),
        };
        headers += &format!("{name}:{}\n", values.join(","));
    }
    format!("{}\n{path}\n{}\n{headers}\n{}\n", req.method, query.join("&"), claim.signed_headers)
}

/// Trims spaces and collapses inner runs of them to one (SigV4's "Trimall").
fn trim_all(value: &str) -> String {
    value.split(' ').filter(|word| !word.is_empty()).collect::<Vec<_>>().join(" ")
}

/// RFC 3986 dot-segment removal plus dropping empty segments, as both SDKs do.
fn normalize_path(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => drop(segments.pop()),
            other => segments.push(other),
        }
    }
    let trailing = !segments.is_empty() && ["/", "/.", "/.."].iter().any(|end| path.ends_with(end));
    format!("/{}{}", segments.join("/"), if trailing { "/" } else { "" })
}

/// Percent-encodes every byte outside RFC 3986's unreserved set (and `/` if asked).
fn uri_encode(value: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || (keep_slash && b == b'/') {
            out.push(char::from(b));
        } else {
            out += &format!("%{b:02X}");
        }
    }
    out
}

fn unix_secs(time: SystemTime) -> i64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => i64::try_from(after.as_secs()).unwrap_or(i64::MAX),
        Err(before) => i64::try_from(before.duration().as_secs()).map_or(i64::MIN, |s| -s),
    }
}

/// Parses `YYYYMMDD'T'HHMMSS'Z'`; the round trip rejects out-of-range fields like month 13.
fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    let digits = |range: std::ops::Range<usize>| -> Option<i64> {
        let field = b.get(range)?;
        field.iter().try_fold(0, |acc, &d| d.is_ascii_digit().then(|| acc * 10 + i64::from(d - b'0')))
    };
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let days = wharf_types::days_from_civil(digits(0..4)?, digits(4..6)?, digits(6..8)?);
    let secs = days * 86_400 + digits(9..11)? * 3600 + digits(11..13)? * 60 + digits(13..15)?;
    (format_amz_date(secs) == s).then_some(secs)
}

fn format_amz_date(secs: i64) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = wharf_types::civil_from_days(days);
    format!("{y:04}{m:02}{d:02}T{:02}{:02}{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amz_dates_round_trip() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20261124T120000Z"), Some(1_795_521_600));
        assert_eq!(format_amz_date(1_795_521_600), "20261124T120000Z");
        assert_eq!(parse_amz_date("20240229T235959Z").map(format_amz_date).as_deref(), Some("20240229T235959Z"));
        for bad in [
            "20230229T000000Z",
            "20261324T120000Z",
            "20261124T246000Z",
            "2026112xT120000Z",
            "+0261124T120000Z",
            "20261124T120000",
            "",
        ] {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
        }
    }

    #[test]
    fn paths_normalize_like_the_sdks() {
        for (input, expected) in [
            ("", "/"),
            ("/", "/"),
            ("//a//b/", "/a/b/"),
            ("/a/./b/../c", "/a/c"),
            ("/a/..", "/"),
            ("/a/b/..", "/a/"),
            ("/../x", "/x"),
        ] {
            assert_eq!(normalize_path(input), expected, "{input}");
        }
        assert_eq!(uri_encode("/v2/a%3Ab/x y~", true), "/v2/a%253Ab/x%20y~");
        assert_eq!(uri_encode("a/b+é", false), "a%2Fb%2B%C3%A9");
    }

    #[test]
    fn header_values_are_trimmed() {
        assert_eq!(trim_all("  a   b\tc  "), "a b\tc");
    }
}
