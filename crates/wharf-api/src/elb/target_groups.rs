//! Target groups: create (idempotent for identical settings, as AWS), describe (by name, ARN,
//! load balancer, or paged), modify health checks, delete (refused while a listener or rule
//! forwards to it), attributes.

use super::*;
use crate::db::cas_put;
use wharf_store::{Compare, Op, Txn};
use wharf_types::InUse;
use wharf_types::elb::{HealthCheck, Target};

fn protocol_in(input: &Value, field: &str) -> Result<Option<String>> {
    match str_of(input, field) {
        None => Ok(None),
        Some(p @ ("HTTP" | "HTTPS")) => Ok(Some(p.to_string())),
        Some(p) => Err(Error::Unsupported(format!(
            "Protocol '{p}' is not supported: application load balancers take HTTP or HTTPS"
        ))),
    }
}

pub(crate) async fn create(ctx: &Ctx, input: Value) -> Result<Value> {
    let name = required(&input, "Name")?;
    validate::name("Name", "Target group", name)?;
    let target_type = str_of(&input, "TargetType").unwrap_or("instance");
    if !matches!(target_type, "instance" | "ip") {
        return Err(Error::invalid(
            "TargetType",
            format!("Target type '{target_type}' is not supported: use 'instance' or 'ip'"),
        ));
    }
    let protocol = protocol_in(&input, "Protocol")?.ok_or_else(|| {
        Error::invalid("Protocol", format!("A protocol must be specified for target type '{target_type}'"))
    })?;
    let port = int_of(&input, "Port")
        .ok_or_else(|| Error::invalid("Port", format!("A port must be specified for target type '{target_type}'")))?;
    let version = str_of(&input, "ProtocolVersion").unwrap_or("HTTP1").to_ascii_uppercase();
    if !matches!(version.as_str(), "HTTP1" | "HTTP2" | "GRPC") {
        return Err(Error::invalid(
            "ProtocolVersion",
            format!("Protocol version '{version}' must be HTTP1, HTTP2 or GRPC"),
        ));
    }
    if let Some(ip) = str_of(&input, "IpAddressType").filter(|t| *t != "ipv4") {
        return Err(Error::invalid("IpAddressType", format!("IP address type '{ip}' is not supported (ipv4)")));
    }
    let mut hc = validate::default_health_check(&protocol, &version);
    validate::apply_health_check(&mut hc, &input, Some(&version))?;
    let tags = load_balancers::tags_in(&input)?;
    let id = wharf_types::hex_id(16);
    let mut extra = Map::new();
    extra.insert("VpcId".into(), json!(str_of(&input, "VpcId").unwrap_or(VPC_ID)));
    extra.insert("IpAddressType".into(), json!("ipv4"));
    let tg = TargetGroup {
        target_group_arn: tg_arn(ctx, name, &id),
        target_group_name: name.into(),
        protocol,
        protocol_version: Some(version),
        port: Some(port as u16),
        target_type: target_type.into(),
        health_check: hc,
        attributes: BTreeMap::new(),
        tags,
        extra,
    };
    let key = tg_key(ctx, name);
    loop {
        if ctx.db.commit(cas_put(&key, 0, &tg)?).await? {
            return Ok(json!({"TargetGroups": [tg_out(&tg, &BTreeSet::new())]}));
        }
        // AWS answers a repeated create with identical settings with the existing group.
        let Some(existing) = ctx.db.get::<TargetGroup>(&key).await? else { continue };
        let e = &existing.doc;
        if e.protocol == tg.protocol
            && e.port == tg.port
            && e.target_type == tg.target_type
            && e.protocol_version == tg.protocol_version
            && e.health_check == tg.health_check
        {
            let usage = Usage::read(ctx).await?;
            return Ok(json!({"TargetGroups": [tg_out(e, &usage.load_balancers_of(&e.target_group_arn))]}));
        }
        return Err(Error::already_exists(
            Resource::TargetGroup,
            format!("A target group with the same name '{name}' exists, but with different settings"),
        ));
    }
}

fn matcher_out(tg: &TargetGroup) -> Value {
    if tg.protocol_version.as_deref() == Some("GRPC") {
        json!({"GrpcCode": tg.health_check.http_code})
    } else {
        json!({"HttpCode": tg.health_check.http_code})
    }
}

pub(crate) fn tg_out(tg: &TargetGroup, lbs: &BTreeSet<String>) -> Value {
    let hc: &HealthCheck = &tg.health_check;
    let mut o = Map::new();
    o.insert("TargetGroupArn".into(), json!(tg.target_group_arn));
    o.insert("TargetGroupName".into(), json!(tg.target_group_name));
    o.insert("Protocol".into(), json!(tg.protocol));
    if let Some(p) = tg.port {
        o.insert("Port".into(), json!(p));
    }
    o.insert("HealthCheckProtocol".into(), json!(hc.protocol));
    o.insert("HealthCheckPort".into(), json!(hc.port));
    o.insert("HealthCheckEnabled".into(), json!(hc.enabled));
    o.insert("HealthCheckIntervalSeconds".into(), json!(hc.interval_seconds));
    o.insert("HealthCheckTimeoutSeconds".into(), json!(hc.timeout_seconds));
    o.insert("HealthyThresholdCount".into(), json!(hc.healthy_threshold_count));
    o.insert("UnhealthyThresholdCount".into(), json!(hc.unhealthy_threshold_count));
    o.insert("HealthCheckPath".into(), json!(hc.path));
    o.insert("Matcher".into(), matcher_out(tg));
    o.insert("LoadBalancerArns".into(), json!(lbs));
    o.insert("TargetType".into(), json!(tg.target_type));
    if let Some(v) = &tg.protocol_version {
        o.insert("ProtocolVersion".into(), json!(v));
    }
    for (k, v) in &tg.extra {
        o.insert(k.clone(), v.clone());
    }
    Value::Object(o)
}

pub(crate) async fn describe(ctx: &Ctx, input: Value) -> Result<Value> {
    let names = strings_of(&input, "Names");
    let arns = strings_of(&input, "TargetGroupArns");
    let lb = str_of(&input, "LoadBalancerArn");
    if [!names.is_empty(), !arns.is_empty(), lb.is_some()].iter().filter(|b| **b).count() > 1 {
        return Err(Error::invalid(
            "TargetGroupArns",
            "Only one of LoadBalancerArn, TargetGroupArns and Names can be specified",
        ));
    }
    let usage = Usage::read(ctx).await?;
    if let Some(lb) = lb {
        let lb = load_lb(ctx, lb).await?;
        let prefix = keys::target_groups(&ctx.scope.account, &ctx.scope.region);
        let out: Vec<Value> = ctx
            .db
            .list::<TargetGroup>(&prefix)
            .await?
            .into_iter()
            .filter_map(|d| {
                let lbs = usage.load_balancers_of(&d.doc.target_group_arn);
                lbs.contains(&lb.doc.load_balancer_arn).then(|| tg_out(&d.doc, &lbs))
            })
            .collect();
        return Ok(json!({"TargetGroups": out}));
    }
    if !names.is_empty() || !arns.is_empty() {
        let mut out = Vec::new();
        let mut missing = Vec::new();
        for n in &names {
            match ctx.db.get::<TargetGroup>(&tg_key(ctx, n)).await? {
                Some(d) => out.push(tg_out(&d.doc, &usage.load_balancers_of(&d.doc.target_group_arn))),
                None => missing.push(n.clone()),
            }
        }
        for a in &arns {
            match load_tg(ctx, a).await {
                Ok(d) => out.push(tg_out(&d.doc, &usage.load_balancers_of(a))),
                Err(Error::NotFound { resource: Resource::TargetGroup, .. }) => missing.push(a.clone()),
                Err(e) => return Err(e),
            }
        }
        if !missing.is_empty() {
            return Err(Error::not_found(
                Resource::TargetGroup,
                format!("Target groups '[{}]' not found", missing.join(", ")),
            ));
        }
        return Ok(json!({"TargetGroups": out}));
    }
    let prefix = keys::target_groups(&ctx.scope.account, &ctx.scope.region);
    let (after, size) = page_of(&input, &prefix)?;
    let (docs, next) = page::<TargetGroup>(ctx, &prefix, after, size).await?;
    let out: Vec<Value> =
        docs.iter().map(|d| tg_out(&d.doc, &usage.load_balancers_of(&d.doc.target_group_arn))).collect();
    Ok(with_marker(json!({"TargetGroups": out}), next))
}

pub(crate) async fn modify(ctx: &Ctx, input: Value) -> Result<Value> {
    let arn = required(&input, "TargetGroupArn")?.to_string();
    let tg = ctx
        .db
        .update(|| {
            let (arn, input) = (arn.clone(), input.clone());
            async move {
                let mut tg = load_tg(ctx, &arn).await?;
                let version = tg.doc.protocol_version.clone();
                validate::apply_health_check(&mut tg.doc.health_check, &input, version.as_deref())?;
                Ok((Some(cas_put(&tg.key, tg.rev, &tg.doc)?), tg.doc))
            }
        })
        .await?;
    let usage = Usage::read(ctx).await?;
    Ok(json!({"TargetGroups": [tg_out(&tg, &usage.load_balancers_of(&arn))]}))
}

pub(crate) async fn delete(ctx: &Ctx, input: Value) -> Result<Value> {
    let arn = required(&input, "TargetGroupArn")?.to_string();
    let name = ctx
        .db
        .update(|| {
            let arn = arn.clone();
            async move {
                let tg = match load_tg(ctx, &arn).await {
                    Ok(tg) => tg,
                    // Deleting a group that is already gone succeeds, as on AWS.
                    Err(Error::NotFound { resource: Resource::TargetGroup, .. }) => return Ok((None, None)),
                    Err(e) => return Err(e),
                };
                // A listener or rule that starts forwarding to this group rewrites it, so the
                // compare below fails if one appeared after this read.
                if Usage::read(ctx).await?.in_use(&arn) {
                    return Err(Error::in_use(
                        InUse::Resource,
                        format!("Target group '{arn}' is currently in use by a listener or a rule"),
                    ));
                }
                let name = tg.doc.target_group_name.clone();
                let mut txn = Txn {
                    compares: vec![Compare::ModRevision(tg.key.clone(), tg.rev)],
                    ops: vec![Op::delete(&tg.key)],
                };
                txn.ops.extend(remove_targets(ctx, &name).await?);
                Ok((Some(txn), Some(name)))
            }
        })
        .await?;
    if let Some(name) = name {
        // A registration that committed between the read above and the delete left a
        // target behind; registrations after it fail their compare on the group.
        let leftovers = remove_targets(ctx, &name).await?;
        if !leftovers.is_empty() {
            ctx.db.commit(Txn { compares: vec![Compare::ModRevision(tg_key(ctx, &name), 0)], ops: leftovers }).await?;
        }
    }
    Ok(json!({}))
}

/// Deletions of every target and health document of group `name`.
async fn remove_targets(ctx: &Ctx, name: &str) -> Result<Vec<Op>> {
    let (a, r) = (&ctx.scope.account, &ctx.scope.region);
    let mut ops: Vec<Op> =
        ctx.db.keys(&keys::targets_of(a, r, name), usize::MAX).await?.into_iter().map(Op::delete).collect();
    ops.extend(ctx.db.keys(&keys::health_of(a, r, name), usize::MAX).await?.into_iter().map(Op::delete));
    Ok(ops)
}

pub(crate) async fn describe_attributes(ctx: &Ctx, input: Value) -> Result<Value> {
    let tg = load_tg(ctx, required(&input, "TargetGroupArn")?).await?;
    let mut all = validate::target_group_attribute_defaults();
    all.extend(tg.doc.attributes.clone());
    Ok(json!({"Attributes": attributes_out(&all)}))
}

pub(crate) async fn modify_attributes(ctx: &Ctx, input: Value) -> Result<Value> {
    let arn = required(&input, "TargetGroupArn")?.to_string();
    let changes = validate::attributes_in(&input, validate::target_group_attribute)?;
    let all = ctx
        .db
        .update(|| {
            let (arn, changes) = (arn.clone(), changes.clone());
            async move {
                let mut tg = load_tg(ctx, &arn).await?;
                tg.doc.attributes.extend(changes);
                let mut all = validate::target_group_attribute_defaults();
                all.extend(tg.doc.attributes.clone());
                validate::target_group_attributes(&all)?;
                Ok((Some(cas_put(&tg.key, tg.rev, &tg.doc)?), all))
            }
        })
        .await?;
    Ok(json!({"Attributes": attributes_out(&all)}))
}

/// Loads a target group and its registered targets.
pub(crate) async fn with_targets(ctx: &Ctx, arn: &str) -> Result<(Versioned<TargetGroup>, Vec<Versioned<Target>>)> {
    let tg = load_tg(ctx, arn).await?;
    let (a, r) = (&ctx.scope.account, &ctx.scope.region);
    let targets = ctx.db.list::<Target>(&keys::targets_of(a, r, &tg.doc.target_group_name)).await?;
    Ok((tg, targets))
}
