//! ECR's lifecycle policies in the domain: the expiry step the lifecycle controller runs, and
//! deleting an image with its tags. Parsing and evaluation are `wharf_registry::lifecycle`'s.

use crate::Db;
use crate::db::Versioned;
use serde::{Deserialize, Serialize};
use wharf_registry::lifecycle::{Candidate, Policy, evaluate};
use wharf_registry::{Image, Repository, keys};
use wharf_store::{Compare, Op, Txn};
use wharf_types::{Error, Result};

/// Where the lifecycle controller notes when it last evaluated a repository's policy
/// (`lastEvaluatedAt`). Outside the prefixes the controller watches, so noting it never
/// wakes the controller again.
pub fn evaluated_key(account: &str, region: &str, repo: &str) -> String {
    format!("/ecr/lifecycle-evaluated/{account}/{region}/{repo}")
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Evaluated {
    pub last_evaluated_at: f64,
}

/// What evaluation needs from each image.
pub fn candidates(images: &[Versioned<Image>]) -> Vec<Candidate> {
    images
        .iter()
        .map(|i| Candidate {
            digest: i.doc.image_digest.clone(),
            tags: i.doc.image_tags.clone(),
            pushed_at: i.doc.image_pushed_at,
            last_pulled_at: i.doc.last_recorded_pull_time,
        })
        .collect()
}

/// The transaction that deletes `image` and every tag on it, if nothing changed it since it
/// was read (its document changes whenever one of its tags moves).
pub fn delete_image_txn(account: &str, region: &str, image: &Versioned<Image>) -> Txn {
    let repo = &image.doc.repository_name;
    let mut ops = vec![Op::delete(image.key.clone())];
    ops.extend(image.doc.image_tags.iter().map(|t| Op::delete(keys::tag(account, region, repo, t))));
    Txn { compares: vec![Compare::ModRevision(image.key.clone(), image.rev)], ops }
}

/// Expires what repository `repo` (stored at `repo_key`) has past its lifecycle policy:
/// each image with its tags in one transaction that holds only if the image is unchanged
/// since evaluation. Returns how many images were expired. A policy that no longer parses
/// (it was validated on put) expires nothing.
pub async fn expire(db: &Db, repo_key: &str, repo: &Repository) -> Result<usize> {
    let Some(text) = &repo.lifecycle_policy else { return Ok(0) };
    let Ok(policy) = Policy::parse(text) else { return Ok(0) };
    // `/ecr/repo/<account>/<region>/<name>`
    let mut parts = repo_key.trim_start_matches("/ecr/repo/").splitn(3, '/');
    let (Some(account), Some(region), Some(name)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(Error::Internal(format!("unexpected repository key {repo_key}")));
    };
    let images = db.list::<Image>(&keys::images(account, region, name)).await?;
    let now = wharf_types::now();
    let expiries = evaluate(&policy, &candidates(&images), now);
    let mut n = 0;
    for e in expiries {
        let Some(image) = images.iter().find(|i| i.doc.image_digest == e.digest) else { continue };
        // Never expire a manifest an index of the repository still references.
        if images.iter().any(|i| i.doc.image_digest != e.digest && i.doc.references.contains(&e.digest)) {
            continue;
        }
        // A lost race (a push re-tagged it) skips the image; the next activation re-evaluates.
        if db.commit(delete_image_txn(account, region, image)).await? {
            tracing::info!(repository = name, digest = %e.digest, rule = e.rule_priority, "lifecycle policy expired image");
            n += 1;
        }
    }
    let noted = Evaluated { last_evaluated_at: now };
    db.commit(wharf_store::Txn {
        compares: vec![],
        ops: vec![Op::put(evaluated_key(account, region, name), crate::db::encode(&noted)?)],
    })
    .await?;
    Ok(n)
}
