//! Fargate capacity: the hosts that serve FARGATE tasks for an account (the agent of
//! `wharf up`) keep their agent sessions under one reserved "cluster" name.

use crate::Scoped;
use crate::keys::Keys;
use wharf_types::Result;

/// The session "cluster" under which Fargate hosts keep their session keys.
pub const SESSIONS: &str = "_fargate";

/// The connected Fargate hosts of a scope (their session keys' last segment).
pub async fn hosts(s: &Scoped) -> Result<Vec<String>> {
    let prefix = Keys::new(s).agent_sessions(SESSIONS);
    Ok(s.db.keys(&prefix, 0).await?.into_iter().filter_map(|k| k.strip_prefix(&prefix).map(str::to_string)).collect())
}
