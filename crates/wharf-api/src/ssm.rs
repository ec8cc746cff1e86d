//! AWS Systems Manager Parameter Store (`AmazonSSM`): the parameters a task definition's
//! `secrets[].valueFrom` names. `String`, `StringList` and `SecureString` parameters with
//! versions, labels, hierarchies and tags; `SecureString` values are sealed by the vault
//! before they are stored and opened only for `WithDecryption` reads.
//!
//! Parameters live at `/ssm/param/<account>/<region>/<name>`; a hierarchical name keeps its
//! slashes, so a path's parameters are one prefix scan.

use crate::paging::{after_key, scan_from};
use crate::{Ctx, input};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use wharf_core::db::Versioned;
use wharf_store::Op;
use wharf_types::secrets::{Parameter, ParameterVersion};
use wharf_types::{Arn, Error, Limit, Resource, Result};

operations! {
    "PutParameter" => put_parameter,
    "GetParameter" => get_parameter,
    "GetParameters" => get_parameters,
    "GetParametersByPath" => get_parameters_by_path,
    "GetParameterHistory" => get_parameter_history,
    "DescribeParameters" => describe_parameters,
    "DeleteParameter" => delete_parameter,
    "DeleteParameters" => delete_parameters,
    "LabelParameterVersion" => label_parameter_version,
    "UnlabelParameterVersion" => unlabel_parameter_version,
    "AddTagsToResource" => add_tags,
    "RemoveTagsFromResource" => remove_tags,
    "ListTagsForResource" => list_tags,
}

/// Versions a parameter keeps; the oldest unlabelled one goes to make room.
const MAX_VERSIONS: usize = 100;
const MAX_LABELS: usize = 10;
const MAX_TAGS: usize = 50;
/// A hierarchy may be 15 levels deep.
const MAX_DEPTH: usize = 15;

fn prefix(ctx: &Ctx) -> String {
    format!("/ssm/param/{}/{}/", ctx.scope.account, ctx.scope.region)
}

fn key(ctx: &Ctx, name: &str) -> String {
    format!("{}{name}", prefix(ctx))
}

fn parameter_arn(ctx: &Ctx, name: &str) -> String {
    ctx.scope.arn("ssm", format!("parameter/{}", name.strip_prefix('/').unwrap_or(name)))
}

fn not_found(name: &str) -> Error {
    Error::not_found(Resource::Parameter, format!("Parameter {name} not found."))
}

/// A parameter name as PutParameter accepts it: `[a-zA-Z0-9_.-/]`, a hierarchy only from a
/// leading `/`, at most 15 levels, no `aws`/`ssm` prefix.
fn check_name(field: &str, name: &str) -> Result<()> {
    let bad = |why: &str| Error::invalid(field, format!("Parameter name: {why}"));
    if name.is_empty() || name.len() > 1011 {
        return Err(bad("must be 1-1011 characters."));
    }
    if !name.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/')) {
        return Err(bad(
            "can't be prefixed with \"aws\" or \"ssm\" (case-insensitive) and must only contain letters, numbers and the symbols .-_/",
        ));
    }
    let bare = name.trim_start_matches('/').to_ascii_lowercase();
    if bare.starts_with("aws") || bare.starts_with("ssm") {
        return Err(bad("can't be prefixed with \"aws\" or \"ssm\" (case-insensitive)."));
    }
    if name.contains('/') && !name.starts_with('/') {
        return Err(bad("a parameter name with a hierarchy must be fully qualified (begin with /)."));
    }
    if name.ends_with('/') || name.contains("//") {
        return Err(bad("hierarchy levels must not be empty."));
    }
    if name.matches('/').count() > MAX_DEPTH {
        return Err(Error::invalid(field, "A hierarchy can have a maximum of 15 levels."));
    }
    Ok(())
}

/// A `Name` as the read operations take it: a name or ARN, with an optional `:version` or
/// `:label` selector. Returns the candidate stored names and the selector.
fn parse_ref(ctx: &Ctx, raw: &str) -> Result<(Vec<String>, Option<String>)> {
    let (base, selector) = if let Some(arn) = Arn::parse(raw) {
        if arn.service != "ssm" || arn.region != ctx.scope.region || arn.account != ctx.scope.account {
            return Err(not_found(raw));
        }
        let Some(rest) = arn.resource.strip_prefix("parameter") else { return Err(not_found(raw)) };
        let (path, selector) = split_selector(rest);
        // `parameter/a` is the ARN of both `a` and `/a`; a hierarchy is always `/…`.
        let names = if path.matches('/').count() == 1 {
            vec![path.to_string(), path.trim_start_matches('/').to_string()]
        } else {
            vec![path.to_string()]
        };
        return Ok((names, selector));
    } else {
        split_selector(raw)
    };
    Ok((vec![base.to_string()], selector))
}

fn split_selector(s: &str) -> (&str, Option<String>) {
    match s.rsplit_once(':') {
        Some((name, sel)) => (name, Some(sel.to_string())),
        None => (s, None),
    }
}

/// The stored parameter among the names a reference may mean ([`parse_ref`]); `raw`, the
/// reference as given, names it when it is missing.
async fn find(ctx: &Ctx, names: &[String], raw: &str) -> Result<Versioned<Parameter>> {
    for name in names {
        if let Some(p) = ctx.db.get::<Parameter>(&key(ctx, name)).await? {
            return Ok(p);
        }
    }
    Err(not_found(raw))
}

/// The parameter a reference names, with the version its selector picks.
async fn resolve(ctx: &Ctx, raw: &str) -> Result<(Parameter, ParameterVersion, Option<String>)> {
    let (names, selector) = parse_ref(ctx, raw)?;
    let p = find(ctx, &names, raw).await?.doc;
    let version = match selector.as_deref() {
        None => p.latest(),
        Some(sel) if !sel.is_empty() && sel.bytes().all(|b| b.is_ascii_digit()) => {
            let n: i64 = sel.parse().map_err(|_| Error::invalid("Name", "Invalid parameter version."))?;
            p.version(n)
        }
        Some(label) => p.labelled(label),
    };
    let Some(version) = version.cloned() else {
        let sel = selector.unwrap_or_default();
        return Err(Error::not_found(
            Resource::ParameterVersion,
            format!("Systems Manager could not find version {sel} of {}. Verify the version and try again.", p.name),
        ));
    };
    Ok((p, version, selector.map(|s| format!(":{s}"))))
}

/// A version's value as the caller may see it: opened when `decrypt`, else as stored (a
/// SecureString stays sealed, as AWS returns the ciphertext).
fn value_of(ctx: &Ctx, name: &str, v: &ParameterVersion, decrypt: bool) -> Result<String> {
    if v.kind == "SecureString" && decrypt {
        let plain = ctx.vault().open_sealed(&seal_binding(ctx, name, v.version), &v.value)?;
        String::from_utf8(plain).map_err(|_| Error::Internal("a SecureString is not UTF-8".into()))
    } else {
        Ok(v.value.clone())
    }
}

/// What a sealed value is bound to: its parameter and version, so it opens nowhere else.
fn seal_binding(ctx: &Ctx, name: &str, version: i64) -> String {
    format!("{}#{version}", key(ctx, name))
}

fn render(ctx: &Ctx, name: &str, v: &ParameterVersion, selector: Option<String>, decrypt: bool) -> Result<Value> {
    let mut out = json!({
        "Name": name,
        "Type": v.kind,
        "Value": value_of(ctx, name, v, decrypt)?,
        "Version": v.version,
        "LastModifiedDate": v.last_modified,
        "ARN": parameter_arn(ctx, name),
        "DataType": v.data_type,
    });
    if let Some(s) = selector {
        out["Selector"] = json!(s);
    }
    Ok(out)
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct PutRequest {
    name: String,
    value: String,
    #[serde(rename = "Type")]
    kind: Option<String>,
    description: Option<String>,
    key_id: Option<String>,
    #[serde(default)]
    overwrite: bool,
    allowed_pattern: Option<String>,
    #[serde(default)]
    tags: Vec<Tag>,
    tier: Option<String>,
    policies: Option<String>,
    data_type: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "PascalCase")]
struct Tag {
    key: String,
    value: String,
}

async fn put_parameter(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: PutRequest = input(v)?;
    check_name("Name", &req.name)?;
    if req.policies.as_deref().is_some_and(|p| !p.trim().is_empty() && p.trim() != "[]") {
        return Err(Error::invalid("Policies", "Parameter policies are not supported by Wharf."));
    }
    if req.overwrite && !req.tags.is_empty() {
        return Err(Error::invalid(
            "Tags",
            "Invalid request: tags and overwrite can't be used together. To create a parameter with tags, please remove overwrite flag. To update tags for an existing parameter, please use AddTagsToResource or RemoveTagsFromResource.",
        ));
    }
    let data_type = req.data_type.clone().unwrap_or_else(|| "text".into());
    if data_type != "text" {
        return Err(Error::invalid(
            "DataType",
            format!(
                "The data type {data_type} is not supported by Wharf; only text (EC2 image ids are not validated here)."
            ),
        ));
    }
    let tier = match req.tier.as_deref() {
        None | Some("Standard") | Some("Intelligent-Tiering") => {
            if req.value.len() > 4096 && req.tier.as_deref() != Some("Intelligent-Tiering") {
                return Err(Error::invalid(
                    "Value",
                    "Standard tier parameters support a maximum parameter value of 4096 characters. To create a larger parameter value, upgrade the parameter to use the advanced-parameter tier.",
                ));
            }
            if req.value.len() > 4096 { "Advanced" } else { "Standard" }
        }
        Some(_) => "Advanced",
    };
    if req.value.len() > 8192 {
        return Err(Error::invalid("Value", "Parameter value can't exceed 8192 characters."));
    }
    if let Some(pattern) = &req.allowed_pattern {
        let re = regex_lite::Regex::new(pattern)
            .map_err(|_| Error::invalid("AllowedPattern", format!("Invalid AllowedPattern {pattern}.")))?;
        if !re.is_match(&req.value) {
            return Err(Error::invalid(
                "Value",
                format!("Parameter value, cannot be validated against allowedPattern: {pattern}"),
            ));
        }
    }
    if let Some(k) = &req.kind
        && !matches!(k.as_str(), "String" | "StringList" | "SecureString")
    {
        return Err(Error::invalid("Type", format!("Unsupported parameter type {k}.")));
    }
    if req.key_id.is_some() && req.kind.as_deref() != Some("SecureString") {
        return Err(Error::invalid("KeyId", "KeyId is required for SecureString type parameter only."));
    }
    check_tags(&req.tags)?;
    let k = key(ctx, &req.name);
    let user = ctx.principal_arn();
    let (version, tier) = ctx
        .db
        .update(|| async {
            let existing = ctx.db.get::<Parameter>(&k).await?;
            let (mut doc, rev) = match existing {
                Some(_) if !req.overwrite => {
                    return Err(Error::already_exists(
                        Resource::Parameter,
                        "The parameter already exists. To overwrite this value, set the overwrite option in the request to true.",
                    ));
                }
                Some(p) => (p.doc, p.rev),
                None => (
                    Parameter {
                        name: req.name.clone(),
                        versions: vec![],
                        tags: req.tags.iter().map(|t| (t.key.clone(), t.value.clone())).collect(),
                    },
                    0,
                ),
            };
            let prev = doc.latest().cloned();
            let kind = req.kind.clone().or(prev.as_ref().map(|p| p.kind.clone())).unwrap_or_else(|| "String".into());
            if kind == "StringList" && req.value.split(',').any(str::is_empty) {
                return Err(Error::invalid("Value", "StringList values must not contain empty items."));
            }
            let n = prev.as_ref().map_or(1, |p| p.version + 1);
            if doc.versions.len() >= MAX_VERSIONS {
                let Some(i) = doc.versions.iter().position(|v| v.labels.is_empty()) else {
                    return Err(Error::limit_exceeded(
                        Limit::ParameterVersions,
                        format!(
                            "You attempted to create a new version of {} by calling the PutParameter API with the overwrite flag. Version {}, the oldest version, can't be deleted because it has a label associated with it. Move the label to another version of the parameter, and try again.",
                            req.name, doc.versions[0].version
                        ),
                    ));
                };
                doc.versions.remove(i);
            }
            let value = if kind == "SecureString" {
                ctx.vault().seal(&seal_binding(ctx, &req.name, n), req.value.as_bytes())?
            } else {
                req.value.clone()
            };
            let tier = if prev.as_ref().is_some_and(|p| p.tier == "Advanced") { "Advanced" } else { tier };
            doc.versions.push(ParameterVersion {
                version: n,
                key_id: (kind == "SecureString")
                    .then(|| req.key_id.clone().or(prev.as_ref().and_then(|p| p.key_id.clone())))
                    .flatten()
                    .or_else(|| (kind == "SecureString").then(|| "alias/aws/ssm".to_string())),
                kind,
                value,
                last_modified: wharf_types::now(),
                last_modified_user: user.clone(),
                description: req.description.clone().or(prev.as_ref().and_then(|p| p.description.clone())),
                allowed_pattern: req.allowed_pattern.clone().or(prev.as_ref().and_then(|p| p.allowed_pattern.clone())),
                tier: tier.to_string(),
                data_type: data_type.clone(),
                labels: vec![],
            });
            Ok((Some(crate::db::cas_put(&k, rev, &doc)?), (n, tier)))
        })
        .await?;
    Ok(json!({"Version": version, "Tier": tier}))
}

fn check_tags(tags: &[Tag]) -> Result<()> {
    if tags.len() > MAX_TAGS {
        return Err(Error::limit_exceeded(Limit::Tags, "The number of tags must not exceed 50."));
    }
    if let Some(t) = tags.iter().find(|t| t.key.to_ascii_lowercase().starts_with("aws:")) {
        return Err(Error::invalid("Tags", format!("Tag keys beginning with 'aws:' are reserved: {}", t.key)));
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetRequest {
    name: String,
    #[serde(default)]
    with_decryption: bool,
}

async fn get_parameter(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: GetRequest = input(v)?;
    let (p, version, selector) = resolve(ctx, &req.name).await?;
    Ok(json!({"Parameter": render(ctx, &p.name, &version, selector, req.with_decryption)?}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct GetManyRequest {
    names: Vec<String>,
    #[serde(default)]
    with_decryption: bool,
}

async fn get_parameters(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: GetManyRequest = input(v)?;
    let (mut found, mut invalid) = (vec![], vec![]);
    for name in &req.names {
        match resolve(ctx, name).await {
            Ok((p, version, selector)) => found.push(render(ctx, &p.name, &version, selector, req.with_decryption)?),
            Err(Error::NotFound { .. }) => invalid.push(json!(name)),
            Err(e) => return Err(e),
        }
    }
    Ok(json!({"Parameters": found, "InvalidParameters": invalid}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ByPathRequest {
    path: String,
    #[serde(default)]
    recursive: bool,
    #[serde(default)]
    parameter_filters: Vec<ParameterFilter>,
    #[serde(default)]
    with_decryption: bool,
    max_results: Option<i64>,
    next_token: Option<String>,
}

#[derive(Deserialize, Clone)]
#[serde(rename_all = "PascalCase")]
struct ParameterFilter {
    key: String,
    option: Option<String>,
    #[serde(default)]
    values: Vec<String>,
}

fn page_size(v: Option<i64>, max: i64) -> Result<usize> {
    match v {
        None => Ok(max as usize),
        Some(n) if (1..=max).contains(&n) => Ok(n as usize),
        Some(_) => Err(Error::invalid("MaxResults", format!("MaxResults must be between 1 and {max}."))),
    }
}

/// One page of the scope's parameters from `token` (SSM spells it `NextToken`), keeping
/// what `pick` maps to `Some`.
async fn walk<O>(
    ctx: &Ctx,
    token: Option<&str>,
    limit: usize,
    pick: impl FnMut(&Parameter) -> Result<Option<O>>,
) -> Result<(Vec<O>, Option<String>)> {
    let all = prefix(ctx);
    let after = after_key(token, &all).map_err(|_| Error::invalid("NextToken", "The specified token is not valid."))?;
    scan_from(&ctx.db, &all, after, limit, false, pick).await
}

fn with_next(mut out: Value, next: Option<String>) -> Value {
    if let Some(t) = next {
        out["NextToken"] = json!(t);
    }
    out
}

/// Whether `name` is under `path` (directly, or at any depth when `recursive`).
fn under(path: &str, name: &str, recursive: bool) -> bool {
    let base = if path == "/" { "/".to_string() } else { format!("{}/", path.trim_end_matches('/')) };
    match name.strip_prefix(&base) {
        Some(rest) if !rest.is_empty() => recursive || !rest.contains('/'),
        _ => false,
    }
}

fn check_path(path: &str) -> Result<()> {
    let ok = path.starts_with('/')
        && path.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/'))
        && path.matches('/').count() <= MAX_DEPTH;
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            "Path",
            format!("The parameter path {path} is not valid: it must begin with / and use only a-zA-Z0-9_.-/"),
        ))
    }
}

async fn get_parameters_by_path(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: ByPathRequest = input(v)?;
    check_path(&req.path)?;
    let filters = Filters::new(&req.parameter_filters, &["Type", "KeyId", "Label"])?;
    let limit = page_size(req.max_results, 10)?;
    let (found, next) = walk(ctx, req.next_token.as_deref(), limit, |p| {
        let Some(v) = p.latest() else { return Ok(None) };
        if !under(&req.path, &p.name, req.recursive) || !filters.keep(p, v) {
            return Ok(None);
        }
        render(ctx, &p.name, v, None, req.with_decryption).map(Some)
    })
    .await?;
    Ok(with_next(json!({"Parameters": found}), next))
}

/// `ParameterFilters` (and DescribeParameters' older `Filters`), checked once.
struct Filters(Vec<ParameterFilter>);

impl Filters {
    fn new(filters: &[ParameterFilter], allowed: &[&str]) -> Result<Filters> {
        for f in filters {
            let key_ok = allowed.contains(&f.key.as_str()) || (allowed.contains(&"tag:") && f.key.starts_with("tag:"));
            if !key_ok {
                return Err(Error::invalid(
                    "ParameterFilters",
                    format!("The following filter key is not valid: {}", f.key),
                ));
            }
            let option = f.option.as_deref().unwrap_or("Equals");
            let option_ok = match f.key.as_str() {
                "Name" => matches!(option, "Equals" | "BeginsWith" | "Contains"),
                "Path" => matches!(option, "Recursive" | "OneLevel"),
                "Label" | "Type" | "KeyId" | "Tier" | "DataType" => option == "Equals",
                _ => matches!(option, "Equals" | "BeginsWith"),
            };
            if !option_ok {
                return Err(Error::invalid(
                    "ParameterFilters",
                    format!(
                        "The following filter option is not valid: {option}. Valid options include: [Equals, BeginsWith, Recursive, OneLevel, Contains]"
                    ),
                ));
            }
            if f.values.is_empty() && !f.key.starts_with("tag:") {
                return Err(Error::invalid(
                    "ParameterFilters",
                    format!("The following filter values are missing : null for filter key {}", f.key),
                ));
            }
        }
        Ok(Filters(filters.to_vec()))
    }

    fn keep(&self, p: &Parameter, v: &ParameterVersion) -> bool {
        self.0.iter().all(|f| {
            let option = f.option.as_deref().unwrap_or("Equals");
            let any = |got: &str| f.values.iter().any(|want| want == got);
            match f.key.as_str() {
                "Name" => f.values.iter().any(|want| {
                    let want_name = if want.starts_with('/') || !p.name.starts_with('/') {
                        want.clone()
                    } else {
                        format!("/{want}")
                    };
                    match option {
                        "BeginsWith" => p.name.starts_with(&want_name),
                        "Contains" => p.name.contains(want.as_str()),
                        _ => p.name == want_name,
                    }
                }),
                "Path" => f.values.iter().any(|path| under(path, &p.name, option == "Recursive")),
                "Type" => any(&v.kind),
                "KeyId" => v.key_id.as_deref().is_some_and(any),
                "Tier" => any(&v.tier),
                "DataType" => any(&v.data_type),
                "Label" => v.labels.iter().any(|l| any(l)),
                tag => {
                    let k = tag.trim_start_matches("tag:");
                    p.tags.get(k).is_some_and(|val| f.values.is_empty() || any(val))
                }
            }
        })
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DescribeRequest {
    #[serde(default)]
    filters: Vec<OldFilter>,
    #[serde(default)]
    parameter_filters: Vec<ParameterFilter>,
    max_results: Option<i64>,
    next_token: Option<String>,
    #[serde(default)]
    shared: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct OldFilter {
    key: String,
    values: Vec<String>,
}

fn metadata(ctx: &Ctx, p: &Parameter, v: &ParameterVersion) -> Value {
    let mut out = json!({
        "Name": p.name,
        "ARN": parameter_arn(ctx, &p.name),
        "Type": v.kind,
        "LastModifiedDate": v.last_modified,
        "LastModifiedUser": v.last_modified_user,
        "Version": v.version,
        "Tier": v.tier,
        "Policies": [],
        "DataType": v.data_type,
    });
    for (field, value) in
        [("Description", &v.description), ("AllowedPattern", &v.allowed_pattern), ("KeyId", &v.key_id)]
    {
        if let Some(x) = value {
            out[field] = json!(x);
        }
    }
    out
}

async fn describe_parameters(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DescribeRequest = input(v)?;
    if !req.filters.is_empty() && !req.parameter_filters.is_empty() {
        return Err(Error::invalid("Filters", "You can use either Filters or ParameterFilters in a single request."));
    }
    let mut filters = req.parameter_filters.clone();
    for f in &req.filters {
        if !matches!(f.key.as_str(), "Name" | "Type" | "KeyId") {
            return Err(Error::invalid("Filters", format!("The following filter key is not valid: {}", f.key)));
        }
        filters.push(ParameterFilter { key: f.key.clone(), option: None, values: f.values.clone() });
    }
    let filters = Filters::new(&filters, &["Name", "Path", "Type", "KeyId", "Tier", "DataType", "Label", "tag:"])?;
    let limit = page_size(req.max_results, 50)?;
    if req.shared {
        // Nothing is shared across accounts in Wharf (no RAM): an empty page.
        return Ok(json!({"Parameters": []}));
    }
    let (found, next) = walk(ctx, req.next_token.as_deref(), limit, |p| {
        let Some(v) = p.latest() else { return Ok(None) };
        Ok(filters.keep(p, v).then(|| metadata(ctx, p, v)))
    })
    .await?;
    Ok(with_next(json!({"Parameters": found}), next))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct HistoryRequest {
    name: String,
    #[serde(default)]
    with_decryption: bool,
    max_results: Option<i64>,
    next_token: Option<String>,
}

async fn get_parameter_history(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: HistoryRequest = input(v)?;
    let limit = page_size(req.max_results, 50)?;
    let (names, _) = parse_ref(ctx, &req.name)?;
    let p = find(ctx, &names, &req.name).await?.doc;
    let start = match req.next_token.as_deref() {
        None => 0,
        Some(t) => t
            .parse::<usize>()
            .ok()
            .filter(|&i| i <= p.versions.len())
            .ok_or_else(|| Error::invalid("NextToken", "The specified token is not valid."))?,
    };
    let mut out = vec![];
    for v in p.versions.iter().skip(start).take(limit) {
        let mut h = metadata(ctx, &p, v);
        if let Some(o) = h.as_object_mut() {
            o.remove("ARN");
        }
        h["Value"] = json!(value_of(ctx, &p.name, v, req.with_decryption)?);
        h["Labels"] = json!(v.labels);
        out.push(h);
    }
    let end = start + out.len();
    Ok(with_next(json!({"Parameters": out}), (end < p.versions.len()).then(|| end.to_string())))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteRequest {
    name: String,
}

async fn delete_parameter(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DeleteRequest = input(v)?;
    if !delete_one(ctx, &req.name).await? {
        return Err(not_found(&req.name));
    }
    Ok(json!({}))
}

async fn delete_one(ctx: &Ctx, name: &str) -> Result<bool> {
    let k = key(ctx, name);
    ctx.db
        .update(|| async {
            let Some(p) = ctx.db.get::<Parameter>(&k).await? else { return Ok((None, false)) };
            let txn = wharf_store::Txn {
                compares: vec![wharf_store::Compare::ModRevision(k.clone(), p.rev)],
                ops: vec![Op::Delete { key: k.clone() }],
            };
            Ok((Some(txn), true))
        })
        .await
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DeleteManyRequest {
    names: Vec<String>,
}

async fn delete_parameters(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: DeleteManyRequest = input(v)?;
    let (mut deleted, mut invalid) = (vec![], vec![]);
    for name in req.names {
        if delete_one(ctx, &name).await? { deleted.push(name) } else { invalid.push(name) }
    }
    Ok(json!({"DeletedParameters": deleted, "InvalidParameters": invalid}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct LabelRequest {
    name: String,
    parameter_version: Option<i64>,
    labels: Vec<String>,
}

/// A label as AWS takes it: up to 100 of letters, digits, `.`, `-`, `_`; not starting with
/// a digit, `aws` or `ssm`.
fn label_ok(label: &str) -> bool {
    let lower = label.to_ascii_lowercase();
    !label.is_empty()
        && label.len() <= 100
        && label.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
        && !label.starts_with(|c: char| c.is_ascii_digit())
        && !lower.starts_with("aws")
        && !lower.starts_with("ssm")
}

/// Reads the parameter a label request names (by name, not selector) for a change.
async fn for_update(ctx: &Ctx, name: &str) -> Result<(String, Parameter, i64)> {
    let (names, selector) = parse_ref(ctx, name)?;
    if selector.is_some() {
        return Err(Error::invalid("Name", "Parameter name must not include a version or label selector."));
    }
    let p = find(ctx, &names, name).await?;
    Ok((p.key, p.doc, p.rev))
}

fn version_index(p: &Parameter, version: Option<i64>) -> Result<usize> {
    let n = version.or(p.latest().map(|v| v.version)).unwrap_or(0);
    p.versions.iter().position(|v| v.version == n).ok_or_else(|| {
        Error::not_found(
            Resource::ParameterVersion,
            format!("Systems Manager could not find version {n} of {}. Verify the version and try again.", p.name),
        )
    })
}

async fn label_parameter_version(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: LabelRequest = input(v)?;
    let (good, bad): (Vec<String>, Vec<String>) = req.labels.iter().cloned().partition(|l| label_ok(l));
    let version = ctx
        .db
        .update(|| async {
            let (k, mut p, rev) = for_update(ctx, &req.name).await?;
            let i = version_index(&p, req.parameter_version)?;
            for v in &mut p.versions {
                v.labels.retain(|l| !good.contains(l));
            }
            let target = &mut p.versions[i];
            for l in &good {
                target.labels.push(l.clone());
            }
            if target.labels.len() > MAX_LABELS {
                return Err(Error::limit_exceeded(
                    Limit::ParameterLabels,
                    "An error occurred (ParameterVersionLabelLimitExceeded): A parameter version can have maximum 10 labels.Move one or more labels to another version and try again.",
                ));
            }
            let n = target.version;
            Ok((if good.is_empty() { None } else { Some(crate::db::cas_put(&k, rev, &p)?) }, n))
        })
        .await?;
    Ok(json!({"InvalidLabels": bad, "ParameterVersion": version}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct UnlabelRequest {
    name: String,
    parameter_version: i64,
    labels: Vec<String>,
}

async fn unlabel_parameter_version(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: UnlabelRequest = input(v)?;
    let (removed, invalid) = ctx
        .db
        .update(|| async {
            let (k, mut p, rev) = for_update(ctx, &req.name).await?;
            let i = version_index(&p, Some(req.parameter_version))?;
            let target = &mut p.versions[i];
            let (removed, invalid): (Vec<String>, Vec<String>) =
                req.labels.iter().cloned().partition(|l| target.labels.contains(l));
            target.labels.retain(|l| !removed.contains(l));
            let txn = if removed.is_empty() { None } else { Some(crate::db::cas_put(&k, rev, &p)?) };
            Ok((txn, (removed, invalid)))
        })
        .await?;
    Ok(json!({"RemovedLabels": removed, "InvalidLabels": invalid}))
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct TagsRequest {
    resource_type: String,
    resource_id: String,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(default)]
    tag_keys: Vec<String>,
}

/// Tags of a parameter (the only resource type Wharf's SSM has), changed by `change`.
async fn with_tags(ctx: &Ctx, req: &TagsRequest, change: impl Fn(&mut BTreeMap<String, String>)) -> Result<Value> {
    if req.resource_type != "Parameter" {
        return Err(Error::invalid(
            "ResourceType",
            format!("Wharf's SSM has only Parameter resources, not {}.", req.resource_type),
        ));
    }
    let tags = ctx
        .db
        .update(|| async {
            let (k, mut p, rev) = for_update(ctx, &req.resource_id).await?;
            let before = p.tags.clone();
            change(&mut p.tags);
            if p.tags.len() > MAX_TAGS {
                return Err(Error::limit_exceeded(Limit::Tags, "The number of tags must not exceed 50."));
            }
            let txn = if p.tags == before { None } else { Some(crate::db::cas_put(&k, rev, &p)?) };
            Ok((txn, p.tags))
        })
        .await?;
    let list: Vec<Value> = tags.iter().map(|(k, v)| json!({"Key": k, "Value": v})).collect();
    Ok(json!({"TagList": list}))
}

async fn add_tags(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: TagsRequest = input(v)?;
    check_tags(&req.tags)?;
    with_tags(ctx, &req, |tags| {
        for t in &req.tags {
            tags.insert(t.key.clone(), t.value.clone());
        }
    })
    .await?;
    Ok(json!({}))
}

async fn remove_tags(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: TagsRequest = input(v)?;
    with_tags(ctx, &req, |tags| tags.retain(|k, _| !req.tag_keys.contains(k))).await?;
    Ok(json!({}))
}

async fn list_tags(ctx: &Ctx, v: Value) -> Result<Value> {
    let req: TagsRequest = input(v)?;
    with_tags(ctx, &req, |_| {}).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_paths() {
        assert!(check_name("Name", "/app/db/password").is_ok());
        assert!(check_name("Name", "plain").is_ok());
        assert!(check_name("Name", "app/db").is_err(), "a hierarchy begins with /");
        assert!(check_name("Name", "/aws/x").is_err());
        assert!(check_name("Name", "SSM-thing").is_err());
        assert!(check_name("Name", "/a b").is_err());
        assert!(under("/app", "/app/db", false));
        assert!(!under("/app", "/app/db/password", false));
        assert!(under("/app/", "/app/db/password", true));
        assert!(!under("/app", "/application", true));
        assert!(under("/", "/x", false));
    }

    #[test]
    fn labels() {
        assert!(label_ok("prod"));
        assert!(!label_ok("1st"));
        assert!(!label_ok("aws-x"));
        assert!(!label_ok("a b"));
    }
}
