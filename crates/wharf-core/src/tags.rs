//! Tags of ECS resources, stored beside the resource under `tags/<arn>`.

use crate::Scoped;
use crate::db::encode;
use crate::keys::Keys;
use wharf_store::Op;
use wharf_types::Result;
use wharf_types::ecs::Tag;

/// The op that stores `tags` for a new resource, if any.
pub fn put_op(s: &Scoped, arn: &str, tags: &[Tag]) -> Result<Option<Op>> {
    if tags.is_empty() {
        return Ok(None);
    }
    Ok(Some(Op::put(Keys::new(s).tags(arn), encode(&tags)?)))
}

pub async fn read(s: &Scoped, arn: &str) -> Result<Vec<Tag>> {
    Ok(s.db.get::<Vec<Tag>>(&Keys::new(s).tags(arn)).await?.map(|v| v.doc).unwrap_or_default())
}
