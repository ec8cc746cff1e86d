//! AWS Secrets Manager (`secretsmanager`): secrets with versions and staging labels
//! (`AWSCURRENT`, `AWSPREVIOUS`, custom ones), deletion with a recovery window, and the
//! `GetSecretValue` a task's `secrets[].valueFrom` and `repositoryCredentials` resolve
//! through. Values are sealed by the vault before they are stored.
//!
//! Secrets live at `/secretsmanager/secret/<account>/<region>/<name>`. A secret whose
//! recovery window has passed is removed the next time anything reads it, as AWS removes it
//! some time after its deletion date.

use crate::paging::{after_key, scan_from};
use crate::{Ctx, input};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};
use wharf_store::{Compare, Op, Txn};
use wharf_types::secrets::{Secret, SecretTag, SecretVersion};
use wharf_types::{Arn, Error, Limit, Resource, Result, Timestamp};

operations! {
    "CreateSecret" => create_secret,
    "GetSecretValue" => get_secret_value,
    "PutSecretValue" => put_secret_value,
    "UpdateSecret" => update_secret,
    "DescribeSecret" => describe_secret,
    "ListSecrets" => list_secrets,
    "ListSecretVersionIds" => list_secret_version_ids,
    "UpdateSecretVersionStage" => update_secret_version_stage,
    "DeleteSecret" => delete_secret,
    "RestoreSecret" => restore_secret,
    "TagResource" => tag_resource,
    "UntagResource" => untag_resource,
}

const CURRENT: &str = "AWSCURRENT";
const PREVIOUS: &str = "AWSPREVIOUS";
const MAX_TAGS: usize = 50;
/// Versions without a staging label a secret keeps (AWS keeps about 100 in all).
const MAX_UNSTAGED: usize = 100;
const DAY: f64 = 86_400.0;

fn prefix(ctx: &Ctx) -> String {
    format!("/secretsmanager/secret/{}/{}/", ctx.scope.account, ctx.scope.region)
}

fn key(ctx: &Ctx, name: &str) -> String {
    format!("{}{name}", prefix(ctx))
}

fn not_found() -> Error {
    Error::not_found(Resource::Secret, "Secrets Manager can't find the specified secret.")
}

fn marked_for_deletion() -> Error {
    Error::client("You can't perform this operation on the secret because it was marked for deletion.")
}

/// A secret name: 1-512 of letters, digits and `/_+=.@-`.
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 512
        && name.chars().all(|c| c.is_ascii_alphanumeric() || "/_+=.@-".contains(c));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "Name",
            "Invalid name. Must be a valid name containing alphanumeric characters, or any of the following: -/_+=.@!",
        ))
    }
}

/// A random 6-character suffix, as AWS appends to a secret's ARN.
fn arn_suffix() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    (0..6).map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())])).collect()
}

/// The stored names a `SecretId` may mean: a name, a full ARN (`…:secret:<name>-AbCdEf`) or a
/// partial ARN (`…:secret:<name>`).
fn candidates(ctx: &Ctx, id: &str) -> Result<Vec<String>> {
    let Some(arn) = Arn::parse(id) else { return Ok(vec![id.to_string()]) };
    if arn.service != "secretsmanager" || arn.region != ctx.scope.region || arn.account != ctx.scope.account {
        return Err(not_found());
    }
    let Some(name) = arn.resource.strip_prefix("secret:") else { return Err(not_found()) };
    let mut names = vec![name.to_string()];
    if let Some((base, suffix)) = name.rsplit_once('-')
        && suffix.len() == 6
    {
        names.insert(0, base.to_string());
    }
    Ok(names)
}

/// The secret `id` names, with its revision; a secret past its recovery window is removed
/// and reported missing.
async fn load(ctx: &Ctx, id: &str) -> Result<(String, Secret, i64)> {
    let full_arn = id.starts_with("arn:");
    for name in candidates(ctx, id)? {
        let k = key(ctx, &name);
        let Some(s) = ctx.db.get::<Secret>(&k).await? else { continue };
        // A full ARN must be this secret's (a recreated secret has a new suffix).
        if full_arn && s.doc.arn != id && !s.doc.arn.starts_with(&format!("{id}-")) {
            continue;
        }
        if s.doc.deleted_date.is_some_and(|d| d <= wharf_types::now()) {
            let gone = Txn { compares: vec![Compare::ModRevision(k.clone(), s.rev)], ops: vec![Op::Delete { key: k }] };
            ctx.db.commit(gone).await?;
            return Err(not_found());
        }
        return Ok((k, s.doc, s.rev));
    }
    Err(not_found())
}

/// A secret value from a request: exactly one of `SecretString` and `SecretBinary`.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Payload {
    String(String),
    Binary(Vec<u8>),
}

fn payload(string: Option<String>, binary: Option<String>) -> Result<Option<Payload>> {
    match (string, binary) {
        (Some(_), Some(_)) => Err(Error::invalid(
            "SecretString",
            "You can't specify both a binary secret value and a string secret value in the same secret.",
        )),
        (Some(s), None) => Ok(Some(Payload::String(s))),
        (None, Some(b)) => STANDARD
            .decode(b)
            .map(|b| Some(Payload::Binary(b)))
            .map_err(|_| Error::invalid("SecretBinary", "SecretBinary must be base64.")),
        (None, None) => Ok(None),
    }
}

fn binding(s: &Secret, version_id: &str) -> String {
    format!("{}#{version_id}", s.arn)
}

fn sealed_version(ctx: &Ctx, s: &Secret, id: String, p: &Payload, stages: Vec<String>) -> Result<SecretVersion> {
    let (string, binary) = match p {
        Payload::String(v) => (Some(ctx.vault().seal(&binding(s, &id), v.as_bytes())?), None),
        Payload::Binary(b) => (None, Some(ctx.vault().seal(&binding(s, &id), b)?)),
    };
    Ok(SecretVersion { id, stages, created: wharf_types::now(), string, binary })
}

fn opened(ctx: &Ctx, s: &Secret, v: &SecretVersion) -> Result<Option<Payload>> {
    let b = binding(s, &v.id);
    if let Some(sealed) = &v.string {
        let plain = ctx.vault().open_sealed(&b, sealed)?;
        return String::from_utf8(plain)
            .map(|s| Some(Payload::String(s)))
            .map_err(|_| Error::Internal("a secret string is not UTF-8".into()));
    }
    if let Some(sealed) = &v.binary {
        return Ok(Some(Payload::Binary(ctx.vault().open_sealed(&b, sealed)?)));
    }
    Ok(None)
}

/// Adds a version holding `stages` (moving each stage off any other version; when
/// `AWSCURRENT` moves, the version that had it becomes `AWSPREVIOUS`), keeping idempotency
/// on the client request token. Returns the version id and whether anything changed.
fn add_version(
    ctx: &Ctx,
    s: &mut Secret,
    token: Option<String>,
    p: &Payload,
    stages: Vec<String>,
) -> Result<(String, bool)> {
    if let Some(t) = &token {
        if !(32..=64).contains(&t.len()) {
            return Err(Error::invalid("ClientRequestToken", "ClientRequestToken must be 32-64 characters."));
        }
        if let Some(existing) = s.versions.iter().find(|v| &v.id == t) {
            return if opened(ctx, s, existing)?.as_ref() == Some(p) {
                Ok((t.clone(), false))
            } else {
                Err(Error::already_exists(
                    Resource::Secret,
                    "You can't modify an existing version, you can only create a new version.",
                ))
            };
        }
    }
    let id = token.unwrap_or_else(wharf_types::uuid);
    let version = sealed_version(ctx, s, id.clone(), p, stages.clone())?;
    move_stages(s, &stages, None);
    s.versions.push(version);
    s.last_changed = wharf_types::now();
    // Versions without a stage are deprecated; AWS drops the oldest of them past its quota.
    let unstaged = s.versions.iter().filter(|v| v.stages.is_empty()).count();
    if unstaged > MAX_UNSTAGED
        && let Some(i) = s.versions.iter().position(|v| v.stages.is_empty())
    {
        s.versions.remove(i);
    }
    Ok((id, true))
}

/// Takes `stages` off every version but `keep` (an index); the version losing `AWSCURRENT`
/// takes `AWSPREVIOUS` from whichever had it.
fn move_stages(s: &mut Secret, stages: &[String], keep: Option<usize>) {
    let old_current = s.versions.iter().position(|v| v.stages.iter().any(|x| x == CURRENT));
    let moving_current = stages.iter().any(|x| x == CURRENT) && old_current.is_some() && old_current != keep;
    for (i, v) in s.versions.iter_mut().enumerate() {
        if Some(i) != keep {
            v.stages.retain(|x| !stages.contains(x));
        }
    }
    if moving_current && let Some(i) = old_current {
        for v in s.versions.iter_mut() {
            v.stages.retain(|x| x != PREVIOUS);
        }
        s.versions[i].stages.push(PREVIOUS.into());
    }
}

fn check_tags(tags: &[SecretTag]) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(Error::limit_exceeded(Limit::Tags, "A secret can have no more than 50 tags."));
    }
    if let Some(t) = tags.iter().find(|t| t.key.to_ascii_lowercase().starts_with("aws:")) {
        return Err(Error::invalid("Tags", format!("Tag keys beginning with 'aws:' are reserved: {}", t.key)));
    }
    Ok(())
}

fn secret_value_out(s: &Secret, v: &SecretVersion, p: Option<Payload>) -> Value {
    let mut out = json!({
        "ARN": s.arn,
        "Name": s.name,
        "VersionId": v.id,
        "VersionStages": v.stages,
        "CreatedDate": v.created,
    });
    match p {
        Some(Payload::String(x)) => out["SecretString"] = json!(x),
        Some(Payload::Binary(b)) => out["SecretBinary"] = json!(STANDARD.encode(b)),
        None => {}
    }
    out
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CreateRequest {
    name: String,
    client_request_token: Option<String>,
    description: Option<String>,
    kms_key_id: Option<String>,
    secret_binary: Option<String>,
    secret_string: Option<String>,
    #[serde(default)]
    tags: Vec<SecretTag>,
    #[serde(default)]
    add_replica_regions: Vec<Value>,
}

async fn create_secret(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: CreateRequest = input(v)?;
    check_name(&req.name)?;
    check_tags(&req.tags)?;
    if !req.add_replica_regions.is_empty() {
        return Err(Error::invalid("AddReplicaRegions", "Wharf does not replicate secrets to other regions."));
    }
    let value = payload(req.secret_string.clone(), req.secret_binary.clone())?;
    let k = key(ctx, &req.name);
    ctx.db
        .update(|| async {
            if let Some(existing) = ctx.db.get::<Secret>(&k).await? {
                if existing.doc.deleted_date.is_some() {
                    return Err(Error::client(format!(
                        "You can't create this secret because a secret with this name is already scheduled for deletion: {}",
                        req.name
                    )));
                }
                return Err(Error::already_exists(
                    Resource::Secret,
                    format!("The operation failed because the secret {} already exists.", req.name),
                ));
            }
            let now = wharf_types::now();
            let mut s = Secret {
                name: req.name.clone(),
                arn: ctx.scope.arn("secretsmanager", format!("secret:{}-{}", req.name, arn_suffix())),
                description: req.description.clone(),
                kms_key_id: req.kms_key_id.clone(),
                created: now,
                last_changed: now,
                last_accessed: None,
                deleted_date: None,
                tags: req.tags.clone(),
                versions: vec![],
            };
            let version = match &value {
                Some(p) => Some(add_version(ctx, &mut s, req.client_request_token.clone(), p, vec![CURRENT.into()])?.0),
                None => None,
            };
            let mut out = json!({"ARN": s.arn, "Name": s.name, "ReplicationStatus": []});
            if let Some(id) = version {
                out["VersionId"] = json!(id);
            }
            Ok((Some(crate::db::cas_put(&k, 0, &s)?), out))
        })
        .await
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetValueRequest {
    secret_id: String,
    version_id: Option<String>,
    version_stage: Option<String>,
}

/// The version a `VersionId` / `VersionStage` pair picks (`AWSCURRENT` when neither).
fn pick<'a>(s: &'a Secret, id: Option<&str>, stage: Option<&str>) -> Result<&'a SecretVersion> {
    let stage = stage.or(id.is_none().then_some(CURRENT));
    let found = s
        .versions
        .iter()
        .find(|v| id.is_none_or(|id| v.id == id) && stage.is_none_or(|st| v.stages.iter().any(|x| x == st)));
    found.ok_or_else(|| {
        let what = match (id, stage) {
            (Some(id), _) => format!("VersionId: {id}"),
            (None, Some(st)) => format!("staging label: {st}"),
            (None, None) => String::new(),
        };
        Error::not_found(Resource::Secret, format!("Secrets Manager can't find the specified secret value for {what}"))
    })
}

async fn get_secret_value(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: GetValueRequest = input(v)?;
    let (k, s, rev) = load(ctx, &req.secret_id).await?;
    if s.deleted_date.is_some() {
        return Err(marked_for_deletion());
    }
    let version = pick(&s, req.version_id.as_deref(), req.version_stage.as_deref())?;
    let out = secret_value_out(&s, version, opened(ctx, &s, version)?);
    // AWS records the day a secret was last read; one write a day at most.
    let today = (wharf_types::now() / DAY).floor() * DAY;
    if s.last_accessed != Some(today) {
        let mut touched = s.clone();
        touched.last_accessed = Some(today);
        // Losing this race to a concurrent write only delays the date to the next read.
        ctx.db.commit(crate::db::cas_put(&k, rev, &touched)?).await?;
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutValueRequest {
    secret_id: String,
    client_request_token: Option<String>,
    secret_binary: Option<String>,
    secret_string: Option<String>,
    version_stages: Option<Vec<String>>,
}

async fn put_secret_value(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: PutValueRequest = input(v)?;
    let value = payload(req.secret_string.clone(), req.secret_binary.clone())?
        .ok_or_else(|| Error::invalid("SecretString", "You must provide either SecretString or SecretBinary."))?;
    let stages = req.version_stages.clone().unwrap_or_else(|| vec![CURRENT.into()]);
    ctx.db
        .update(|| async {
            let (k, mut s, rev) = load(ctx, &req.secret_id).await?;
            if s.deleted_date.is_some() {
                return Err(marked_for_deletion());
            }
            let (id, changed) = add_version(ctx, &mut s, req.client_request_token.clone(), &value, stages.clone())?;
            let staged = s.versions.iter().find(|v| v.id == id).map(|v| v.stages.clone()).unwrap_or_default();
            let out = json!({"ARN": s.arn, "Name": s.name, "VersionId": id, "VersionStages": staged});
            Ok((changed.then(|| crate::db::cas_put(&k, rev, &s)).transpose()?, out))
        })
        .await
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UpdateRequest {
    secret_id: String,
    client_request_token: Option<String>,
    description: Option<String>,
    kms_key_id: Option<String>,
    secret_binary: Option<String>,
    secret_string: Option<String>,
}

async fn update_secret(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: UpdateRequest = input(v)?;
    let value = payload(req.secret_string.clone(), req.secret_binary.clone())?;
    ctx.db
        .update(|| async {
            let (k, mut s, rev) = load(ctx, &req.secret_id).await?;
            if s.deleted_date.is_some() {
                return Err(marked_for_deletion());
            }
            let mut changed = false;
            if let Some(d) = &req.description {
                changed |= s.description.as_ref() != Some(d);
                s.description = Some(d.clone());
            }
            if let Some(kms) = &req.kms_key_id {
                changed |= s.kms_key_id.as_ref() != Some(kms);
                s.kms_key_id = Some(kms.clone());
            }
            let mut out = json!({"ARN": s.arn, "Name": s.name});
            if let Some(p) = &value {
                let (id, added) = add_version(ctx, &mut s, req.client_request_token.clone(), p, vec![CURRENT.into()])?;
                changed |= added;
                out["VersionId"] = json!(id);
            } else if changed {
                s.last_changed = wharf_types::now();
            }
            Ok((changed.then(|| crate::db::cas_put(&k, rev, &s)).transpose()?, out))
        })
        .await
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct SecretIdRequest {
    secret_id: String,
}

fn describe(s: &Secret) -> Value {
    let stages: serde_json::Map<String, Value> =
        s.versions.iter().filter(|v| !v.stages.is_empty()).map(|v| (v.id.clone(), json!(v.stages))).collect();
    let mut out = json!({
        "ARN": s.arn,
        "Name": s.name,
        "RotationEnabled": false,
        "LastChangedDate": s.last_changed,
        "CreatedDate": s.created,
        "Tags": s.tags,
        "VersionIdsToStages": stages,
    });
    let optional: [(&str, Option<Value>); 4] = [
        ("Description", s.description.as_ref().map(|d| json!(d))),
        ("KmsKeyId", s.kms_key_id.as_ref().map(|d| json!(d))),
        ("LastAccessedDate", s.last_accessed.map(|d| json!(d))),
        ("DeletedDate", s.deleted_date.map(|d| json!(d))),
    ];
    for (field, value) in optional {
        if let Some(v) = value {
            out[field] = v;
        }
    }
    out
}

async fn describe_secret(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: SecretIdRequest = input(v)?;
    let (_, s, _) = load(ctx, &req.secret_id).await?;
    Ok(describe(&s))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ListRequest {
    #[serde(default)]
    include_planned_deletion: bool,
    max_results: Option<i64>,
    next_token: Option<String>,
    #[serde(default)]
    filters: Vec<Filter>,
    sort_order: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Filter {
    key: Option<String>,
    #[serde(default)]
    values: Vec<String>,
}

/// Whether `s` passes a ListSecrets filter: each value a case-sensitive prefix, `!` negates.
fn passes(s: &Secret, f: &Filter) -> Result<bool> {
    let fields: Vec<&str> = match f.key.as_deref().unwrap_or("all") {
        "name" => vec![s.name.as_str()],
        "description" => s.description.as_deref().into_iter().collect(),
        "tag-key" => s.tags.iter().map(|t| t.key.as_str()).collect(),
        "tag-value" => s.tags.iter().map(|t| t.value.as_str()).collect(),
        "primary-region" | "owning-service" => vec![],
        "all" => {
            let mut all = vec![s.name.as_str()];
            all.extend(s.description.as_deref());
            all.extend(s.tags.iter().flat_map(|t| [t.key.as_str(), t.value.as_str()]));
            all
        }
        other => return Err(Error::invalid("Filters", format!("Invalid filter key: {other}"))),
    };
    Ok(f.values.iter().any(|want| match want.strip_prefix('!') {
        Some(not) => !fields.iter().any(|x| x.starts_with(not)),
        None => fields.iter().any(|x| x.starts_with(want.as_str())),
    }))
}

async fn list_secrets(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: ListRequest = input(v)?;
    let limit = match req.max_results {
        None => 100,
        Some(n) if (1..=100).contains(&n) => n as usize,
        Some(_) => return Err(Error::invalid("MaxResults", "MaxResults must be between 1 and 100.")),
    };
    if let Some(o) = req.sort_order.as_deref()
        && !matches!(o, "asc" | "desc")
    {
        return Err(Error::invalid("SortOrder", format!("Invalid SortOrder: {o}")));
    }
    let all = prefix(ctx);
    let after =
        after_key(req.next_token.as_deref(), &all).map_err(|_| Error::invalid("NextToken", "Invalid NextToken."))?;
    let now = wharf_types::now();
    let descending = req.sort_order.as_deref() == Some("desc");
    let (out, next) = scan_from(&ctx.db, &all, after, limit, descending, |s: &Secret| {
        let gone = s.deleted_date.is_some_and(|t| t <= now);
        let hidden = s.deleted_date.is_some() && !req.include_planned_deletion;
        if gone || hidden {
            return Ok(None);
        }
        // Every filter is checked (an invalid key is refused) before the secret is judged.
        if !req.filters.iter().try_fold(true, |all, f| Ok::<_, Error>(passes(s, f)? && all))? {
            return Ok(None);
        }
        let mut entry = describe(s);
        if let Some(o) = entry.as_object_mut() {
            let stages = o.remove("VersionIdsToStages").unwrap_or_default();
            o.insert("SecretVersionsToStages".into(), stages);
        }
        Ok(Some(entry))
    })
    .await?;
    let mut resp = json!({"SecretList": out});
    if let Some(t) = next {
        resp["NextToken"] = json!(t);
    }
    Ok(resp)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct VersionIdsRequest {
    secret_id: String,
    max_results: Option<i64>,
    next_token: Option<String>,
    #[serde(default)]
    include_deprecated: bool,
}

async fn list_secret_version_ids(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: VersionIdsRequest = input(v)?;
    let (_, s, _) = load(ctx, &req.secret_id).await?;
    let limit = req.max_results.unwrap_or(100).clamp(1, 100) as usize;
    let start = match req.next_token.as_deref() {
        None => 0,
        Some(t) => t.parse::<usize>().map_err(|_| Error::invalid("NextToken", "Invalid NextToken."))?,
    };
    let shown: Vec<&SecretVersion> =
        s.versions.iter().rev().filter(|v| req.include_deprecated || !v.stages.is_empty()).collect();
    let page: Vec<Value> = shown
        .iter()
        .skip(start)
        .take(limit)
        .map(|v| json!({"VersionId": v.id, "VersionStages": v.stages, "CreatedDate": v.created}))
        .collect();
    let end = start + page.len();
    let mut out = json!({"ARN": s.arn, "Name": s.name, "Versions": page});
    if end < shown.len() {
        out["NextToken"] = json!(end.to_string());
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct StageRequest {
    secret_id: String,
    version_stage: String,
    move_to_version_id: Option<String>,
    remove_from_version_id: Option<String>,
}

async fn update_secret_version_stage(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: StageRequest = input(v)?;
    ctx.db
        .update(|| async {
            let (k, mut s, rev) = load(ctx, &req.secret_id).await?;
            if s.deleted_date.is_some() {
                return Err(marked_for_deletion());
            }
            let holder = s.versions.iter().position(|v| v.stages.contains(&req.version_stage));
            if let Some(from) = &req.remove_from_version_id
                && holder.map(|i| &s.versions[i].id) != Some(from)
            {
                return Err(Error::invalid(
                    "RemoveFromVersionId",
                    format!("The staging label {} is not attached to version {from}.", req.version_stage),
                ));
            }
            if holder.is_some() && req.move_to_version_id.is_some() && req.remove_from_version_id.is_none() {
                return Err(Error::invalid(
                    "RemoveFromVersionId",
                    format!("The staging label {} is currently attached to another version; name it in RemoveFromVersionId.", req.version_stage),
                ));
            }
            match &req.move_to_version_id {
                Some(to) => {
                    let i = s.versions.iter().position(|v| &v.id == to).ok_or_else(|| {
                        Error::not_found(Resource::Secret, format!("Secrets Manager can't find the specified secret version: {to}"))
                    })?;
                    move_stages(&mut s, std::slice::from_ref(&req.version_stage), Some(i));
                    if !s.versions[i].stages.contains(&req.version_stage) {
                        s.versions[i].stages.push(req.version_stage.clone());
                    }
                }
                None => {
                    if req.version_stage == CURRENT {
                        return Err(Error::invalid("VersionStage", "You can't remove the AWSCURRENT staging label; move it to another version instead."));
                    }
                    for v in s.versions.iter_mut() {
                        v.stages.retain(|x| x != &req.version_stage);
                    }
                }
            }
            s.last_changed = wharf_types::now();
            let out = json!({"ARN": s.arn, "Name": s.name});
            Ok((Some(crate::db::cas_put(&k, rev, &s)?), out))
        })
        .await
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteRequest {
    secret_id: String,
    recovery_window_in_days: Option<i64>,
    force_delete_without_recovery: Option<bool>,
}

async fn delete_secret(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DeleteRequest = input(v)?;
    let force = req.force_delete_without_recovery.unwrap_or(false);
    if force && req.recovery_window_in_days.is_some() {
        return Err(Error::invalid(
            "RecoveryWindowInDays",
            "You can't use ForceDeleteWithoutRecovery in conjunction with RecoveryWindowInDays.",
        ));
    }
    let days = req.recovery_window_in_days.unwrap_or(30);
    if !(7..=30).contains(&days) {
        return Err(Error::invalid(
            "RecoveryWindowInDays",
            "The RecoveryWindowInDays value must be between 7 and 30 days (inclusive).",
        ));
    }
    ctx.db
        .update(|| async {
            let (k, mut s, rev) = load(ctx, &req.secret_id).await?;
            let now: Timestamp = wharf_types::now();
            if force {
                let out = json!({"ARN": s.arn, "Name": s.name, "DeletionDate": now});
                let txn =
                    Txn { compares: vec![Compare::ModRevision(k.clone(), rev)], ops: vec![Op::Delete { key: k }] };
                return Ok((Some(txn), out));
            }
            if s.deleted_date.is_some() {
                return Err(Error::client(
                    "You can't perform this operation on the secret because it was already scheduled for deletion.",
                ));
            }
            let when = now + days as f64 * DAY;
            s.deleted_date = Some(when);
            let out = json!({"ARN": s.arn, "Name": s.name, "DeletionDate": when});
            Ok((Some(crate::db::cas_put(&k, rev, &s)?), out))
        })
        .await
}

async fn restore_secret(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: SecretIdRequest = input(v)?;
    ctx.db
        .update(|| async {
            let (k, mut s, rev) = load(ctx, &req.secret_id).await?;
            let out = json!({"ARN": s.arn, "Name": s.name});
            if s.deleted_date.take().is_none() {
                return Ok((None, out));
            }
            Ok((Some(crate::db::cas_put(&k, rev, &s)?), out))
        })
        .await
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagRequest {
    secret_id: String,
    #[serde(default)]
    tags: Vec<SecretTag>,
    #[serde(default)]
    tag_keys: Vec<String>,
}

async fn retag(ctx: &Ctx, req: &TagRequest, change: impl Fn(&mut Vec<SecretTag>)) -> Result<Value> {
    ctx.db
        .update(|| async {
            let (k, mut s, rev) = load(ctx, &req.secret_id).await?;
            change(&mut s.tags);
            check_tags(&s.tags)?;
            Ok((Some(crate::db::cas_put(&k, rev, &s)?), json!({})))
        })
        .await
}

async fn tag_resource(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: TagRequest = input(v)?;
    check_tags(&req.tags)?;
    retag(ctx, &req, |tags| {
        for t in &req.tags {
            tags.retain(|x| x.key != t.key);
            tags.push(t.clone());
        }
    })
    .await
}

async fn untag_resource(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: TagRequest = input(v)?;
    retag(ctx, &req, |tags| tags.retain(|t| !req.tag_keys.contains(&t.key))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret {
            name: "db".into(),
            arn: "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf".into(),
            description: None,
            kms_key_id: None,
            created: 0.0,
            last_changed: 0.0,
            last_accessed: None,
            deleted_date: None,
            tags: vec![],
            versions: vec![],
        }
    }

    #[test]
    fn a_new_current_version_makes_the_old_one_previous() {
        let ctx = Ctx::in_memory("123456789012", "us-east-1");
        let mut s = secret();
        let (v1, _) = add_version(&ctx, &mut s, None, &Payload::String("one".into()), vec![CURRENT.into()]).unwrap();
        let (v2, _) = add_version(&ctx, &mut s, None, &Payload::String("two".into()), vec![CURRENT.into()]).unwrap();
        let (v3, _) = add_version(&ctx, &mut s, None, &Payload::String("three".into()), vec![CURRENT.into()]).unwrap();
        let stages = |id: &str| s.versions.iter().find(|v| v.id == id).unwrap().stages.clone();
        assert_eq!(stages(&v3), vec![CURRENT]);
        assert_eq!(stages(&v2), vec![PREVIOUS]);
        assert!(stages(&v1).is_empty());
        assert_eq!(
            opened(&ctx, &s, pick(&s, None, Some(PREVIOUS)).unwrap()).unwrap(),
            Some(Payload::String("two".into()))
        );
        assert!(!serde_json::to_string(&s).unwrap().contains("three"), "sealed at rest");
    }

    #[test]
    fn a_retried_token_is_idempotent_only_for_the_same_value() {
        let ctx = Ctx::in_memory("123456789012", "us-east-1");
        let mut s = secret();
        let token = "a".repeat(32);
        let one = Payload::String("one".into());
        assert!(add_version(&ctx, &mut s, Some(token.clone()), &one, vec![CURRENT.into()]).unwrap().1);
        assert!(!add_version(&ctx, &mut s, Some(token.clone()), &one, vec![CURRENT.into()]).unwrap().1);
        assert!(add_version(&ctx, &mut s, Some(token), &Payload::String("x".into()), vec![CURRENT.into()]).is_err());
    }
}
