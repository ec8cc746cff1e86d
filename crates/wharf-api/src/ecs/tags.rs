//! Tags of every taggable ECS resource, kept beside the resource under `tags/<arn>` so one
//! code path serves clusters, services, tasks, task definitions and container instances.

use super::{Keys, input, output, split_ref};
use crate::Ctx;
use serde::Deserialize;
use serde_json::{Value, json};
pub(crate) use wharf_core::tags::{put_op, read};
use wharf_types::ecs::{Cluster, ContainerInstance, Service, Tag, Task, TaskDefinition};
use wharf_types::{Arn, Error, Resource, Result};

const MAX_TAGS: usize = 50;

/// Checks a tag list a client sent (on create or TagResource).
pub(crate) fn validate(tags: &[Tag]) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(Error::invalid("tags", format!("A resource can have at most {MAX_TAGS} tags.")));
    }
    for t in tags {
        if t.key.to_ascii_lowercase().starts_with("aws:") {
            return Err(Error::invalid("tags", format!("Tag key '{}' uses the reserved prefix 'aws:'.", t.key)));
        }
    }
    Ok(())
}

/// Checks the resource an ARN names exists in this scope.
async fn check_exists(ctx: &Ctx, arn: &str) -> Result<()> {
    let not_found =
        || Error::NotFound { resource: Resource::Other, message: "The specified resource could not be found.".into() };
    let parsed = Arn::parse_in(arn, &ctx.scope, "ecs", "resourceArn")?;
    let keys = Keys::new(ctx);
    let found = match parsed.resource_parts() {
        ("cluster", name) => {
            ctx.db.get::<Cluster>(&keys.cluster(name)).await?.is_some_and(|c| c.doc.status != "INACTIVE")
        }
        ("service", _) => {
            let (cluster, name) = split_ref(ctx, arn, "service", "resourceArn")?;
            let cluster = cluster.ok_or_else(not_found)?;
            ctx.db.get::<Service>(&keys.service(&cluster, name)).await?.is_some()
        }
        ("task", _) => {
            let (cluster, id) = split_ref(ctx, arn, "task", "resourceArn")?;
            ctx.db.get::<Task>(&keys.task(&cluster.ok_or_else(not_found)?, id)).await?.is_some()
        }
        ("container-instance", _) => {
            let (cluster, id) = split_ref(ctx, arn, "container-instance", "resourceArn")?;
            ctx.db.get::<ContainerInstance>(&keys.instance(&cluster.ok_or_else(not_found)?, id)).await?.is_some()
        }
        ("task-definition", rest) => match rest.rsplit_once(':').and_then(|(f, r)| Some((f, r.parse::<i64>().ok()?))) {
            Some((family, rev)) => ctx.db.get::<TaskDefinition>(&keys.taskdef(family, rev)).await?.is_some(),
            None => false,
        },
        _ => false,
    };
    if found { Ok(()) } else { Err(not_found()) }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TagRequest {
    resource_arn: String,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(default)]
    tag_keys: Vec<String>,
}

pub async fn tag(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: TagRequest = input(v)?;
    check_exists(ctx, &req.resource_arn).await?;
    let key = Keys::new(ctx).tags(&req.resource_arn);
    ctx.db
        .update(|| async {
            let current = ctx.db.get::<Vec<Tag>>(&key).await?;
            let rev = current.as_ref().map_or(0, |c| c.rev);
            let mut tags = current.map(|c| c.doc).unwrap_or_default();
            for t in &req.tags {
                match tags.iter_mut().find(|x| x.key == t.key) {
                    Some(x) => x.value.clone_from(&t.value),
                    None => tags.push(t.clone()),
                }
            }
            validate(&tags)?;
            Ok((Some(crate::db::cas_put(&key, rev, &tags)?), ()))
        })
        .await?;
    Ok(json!({}))
}

pub async fn untag(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: TagRequest = input(v)?;
    check_exists(ctx, &req.resource_arn).await?;
    let key = Keys::new(ctx).tags(&req.resource_arn);
    ctx.db
        .update(|| async {
            let Some(current) = ctx.db.get::<Vec<Tag>>(&key).await? else { return Ok((None, ())) };
            let tags: Vec<Tag> = current.doc.into_iter().filter(|t| !req.tag_keys.contains(&t.key)).collect();
            Ok((Some(crate::db::cas_put(&key, current.rev, &tags)?), ()))
        })
        .await?;
    Ok(json!({}))
}

pub async fn list(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: TagRequest = input(v)?;
    check_exists(ctx, &req.resource_arn).await?;
    output(json!({ "tags": read(ctx, &req.resource_arn).await? }))
}
