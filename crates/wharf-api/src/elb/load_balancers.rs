//! Application load balancers: create (a name unique per account and region), describe
//! with paging, delete (with every listener and rule, in one transaction), attributes.

use super::*;
use crate::db::cas_put;
use wharf_store::{Compare, Op, Txn};
use wharf_types::elb::dns_name;
use wharf_types::{Invalid, Limit};

/// The hosted zone AWS reports for ALBs (it is per region there; one is as good as another).
const HOSTED_ZONE_ID: &str = "Z35SXDOTRQ7X7K";

pub(crate) fn tags_in(input: &Value) -> Result<Vec<Tag>> {
    let tags: Vec<Tag> = list_of(input, "Tags")
        .iter()
        .map(|t| Tag {
            key: str_of(t, "Key").unwrap_or_default().into(),
            value: str_of(t, "Value").unwrap_or_default().into(),
        })
        .collect();
    let mut keys = BTreeSet::new();
    for t in &tags {
        if !keys.insert(&t.key) {
            return Err(Error::invalid_input(
                Invalid::DuplicateTagKey,
                format!("Tag key '{}' was specified more than once", t.key),
            ));
        }
        if t.key.to_ascii_lowercase().starts_with("aws:") {
            return Err(Error::invalid("Tags", format!("Tag key '{}' uses the reserved prefix 'aws:'", t.key)));
        }
    }
    if tags.len() > tags::MAX_TAGS {
        return Err(Error::limit_exceeded(Limit::Tags, format!("A resource can have at most {} tags", tags::MAX_TAGS)));
    }
    Ok(tags)
}

pub(crate) async fn create(ctx: &Ctx, input: Value) -> Result<Value> {
    let name = required(&input, "Name")?;
    validate::name("Name", "Load balancer", name)?;
    let kind = str_of(&input, "Type").unwrap_or("application");
    if kind != "application" {
        return Err(Error::Unsupported(format!(
            "Load balancer type '{kind}' is not supported: Wharf serves application load balancers"
        )));
    }
    let scheme = str_of(&input, "Scheme").unwrap_or("internet-facing");
    let ip_type = str_of(&input, "IpAddressType").unwrap_or("ipv4");
    if ip_type != "ipv4" {
        return Err(Error::invalid("IpAddressType", format!("IP address type '{ip_type}' is not supported (ipv4)")));
    }
    let subnets = subnets_in(&input);
    let tags = tags_in(&input)?;
    let key = lb_key(ctx, name);
    let id = wharf_types::hex_id(16);
    let mut extra = Map::new();
    extra.insert("CanonicalHostedZoneId".into(), json!(HOSTED_ZONE_ID));
    extra.insert("VpcId".into(), json!(VPC_ID));
    extra.insert("AvailabilityZones".into(), zones(ctx, &subnets));
    extra.insert("SecurityGroups".into(), json!(strings_of(&input, "SecurityGroups")));
    extra.insert("IpAddressType".into(), json!(ip_type));
    let lb = LoadBalancer {
        load_balancer_arn: lb_arn(ctx, name, &id),
        load_balancer_name: name.into(),
        dns_name: dns_name(name, &id, &ctx.scope.region),
        kind: "application".into(),
        scheme: scheme.into(),
        created_time: wharf_types::now(),
        // The data plane binds a listener's port as soon as the listener exists; a load
        // balancer itself has nothing to provision.
        state: json!({"Code": "active"}),
        attributes: BTreeMap::new(),
        tags,
        extra,
    };
    loop {
        if ctx.db.commit(cas_put(&key, 0, &lb)?).await? {
            return Ok(json!({"LoadBalancers": [lb_out(&lb)]}));
        }
        // AWS answers a repeated create with identical settings with the existing one.
        let Some(existing) = ctx.db.get::<LoadBalancer>(&key).await? else { continue };
        let same = |k: &str| existing.doc.extra.get(k) == lb.extra.get(k);
        if existing.doc.scheme == lb.scheme && same("AvailabilityZones") && same("SecurityGroups") {
            return Ok(json!({"LoadBalancers": [lb_out(&existing.doc)]}));
        }
        return Err(Error::already_exists(
            Resource::LoadBalancer,
            format!("A load balancer with the same name '{name}' exists, but with different settings"),
        ));
    }
}

pub(crate) fn lb_out(lb: &LoadBalancer) -> Value {
    let mut o = Map::new();
    o.insert("LoadBalancerArn".into(), json!(lb.load_balancer_arn));
    o.insert("DNSName".into(), json!(lb.dns_name));
    o.insert("LoadBalancerName".into(), json!(lb.load_balancer_name));
    o.insert("CreatedTime".into(), json!(lb.created_time));
    o.insert("Scheme".into(), json!(lb.scheme));
    o.insert("State".into(), lb.state.clone());
    o.insert("Type".into(), json!(lb.kind));
    for (k, v) in &lb.extra {
        o.insert(k.clone(), v.clone());
    }
    Value::Object(o)
}

pub(crate) async fn describe(ctx: &Ctx, input: Value) -> Result<Value> {
    let names = strings_of(&input, "Names");
    let arns = strings_of(&input, "LoadBalancerArns");
    if !names.is_empty() && !arns.is_empty() {
        return Err(Error::invalid("Names", "Load balancer names and ARNs cannot be specified at the same time"));
    }
    if !names.is_empty() || !arns.is_empty() {
        let mut out = Vec::new();
        let mut missing = Vec::new();
        for n in &names {
            match ctx.db.get::<LoadBalancer>(&lb_key(ctx, n)).await? {
                Some(d) => out.push(lb_out(&d.doc)),
                None => missing.push(n.clone()),
            }
        }
        for a in &arns {
            match load_lb(ctx, a).await {
                Ok(d) => out.push(lb_out(&d.doc)),
                Err(Error::NotFound { resource: Resource::LoadBalancer, .. }) => missing.push(a.clone()),
                Err(e) => return Err(e),
            }
        }
        if !missing.is_empty() {
            return Err(Error::not_found(
                Resource::LoadBalancer,
                format!("Load balancers '[{}]' not found", missing.join(", ")),
            ));
        }
        return Ok(json!({"LoadBalancers": out}));
    }
    let prefix = keys::load_balancers(&ctx.scope.account, &ctx.scope.region);
    let (after, size) = page_of(&input, &prefix)?;
    let (docs, next) = page::<LoadBalancer>(ctx, &prefix, after, size).await?;
    let out: Vec<Value> = docs.iter().map(|d| lb_out(&d.doc)).collect();
    Ok(with_marker(json!({"LoadBalancers": out}), next))
}

pub(crate) async fn delete(ctx: &Ctx, input: Value) -> Result<Value> {
    let arn = required(&input, "LoadBalancerArn")?.to_string();
    ctx.db
        .update(|| {
            let arn = arn.clone();
            async move {
                let lb = match load_lb(ctx, &arn).await {
                    Ok(lb) => lb,
                    // Deleting a load balancer that is already gone succeeds, as on AWS.
                    Err(Error::NotFound { resource: Resource::LoadBalancer, .. }) => return Ok((None, ())),
                    Err(e) => return Err(e),
                };
                if lb.doc.attributes.get("deletion_protection.enabled").is_some_and(|v| v == "true") {
                    return Err(Error::NotPermitted(format!(
                        "Load balancer '{arn}' cannot be deleted because deletion protection is enabled"
                    )));
                }
                let mut txn = Txn {
                    compares: vec![Compare::ModRevision(lb.key.clone(), lb.rev)],
                    ops: vec![Op::delete(lb.key.clone())],
                };
                let usage = Usage::read(ctx).await?;
                for l in usage.listeners.iter().filter(|l| l.doc.load_balancer_arn == arn) {
                    cascade_listener(&usage, l, &mut txn);
                }
                Ok((Some(txn), ()))
            }
        })
        .await?;
    Ok(json!({}))
}

/// Adds the deletion of listener `l`, its rules and its port claim to `txn`.
pub(crate) fn cascade_listener(usage: &Usage, l: &Versioned<Listener>, txn: &mut Txn) {
    txn.compares.push(Compare::ModRevision(l.key.clone(), l.rev));
    txn.ops.push(Op::delete(l.key.clone()));
    let port_key = keys::listener_port(l.doc.port);
    txn.ops.push(Op::delete(port_key));
    for r in usage.rules.iter().filter(|r| r.doc.listener_arn == l.doc.listener_arn) {
        txn.ops.push(Op::delete(r.key.clone()));
    }
}

pub(crate) async fn describe_attributes(ctx: &Ctx, input: Value) -> Result<Value> {
    let lb = load_lb(ctx, required(&input, "LoadBalancerArn")?).await?;
    let mut all = validate::load_balancer_attribute_defaults();
    all.extend(lb.doc.attributes.clone());
    Ok(json!({"Attributes": attributes_out(&all)}))
}

pub(crate) async fn modify_attributes(ctx: &Ctx, input: Value) -> Result<Value> {
    let arn = required(&input, "LoadBalancerArn")?.to_string();
    let changes = validate::attributes_in(&input, validate::load_balancer_attribute)?;
    let all = ctx
        .db
        .update(|| {
            let (arn, changes) = (arn.clone(), changes.clone());
            async move {
                let mut lb = load_lb(ctx, &arn).await?;
                lb.doc.attributes.extend(changes);
                let mut all = validate::load_balancer_attribute_defaults();
                all.extend(lb.doc.attributes.clone());
                Ok((Some(cas_put(&lb.key, lb.rev, &lb.doc)?), all))
            }
        })
        .await?;
    Ok(json!({"Attributes": attributes_out(&all)}))
}

/// Availability zones as AWS shows them for `subnets`: one zone per subnet, `<region>a`,
/// `<region>b`, … (one zone without a subnet when none is given).
fn zones(ctx: &Ctx, subnets: &[String]) -> Value {
    if subnets.is_empty() {
        return json!([{"ZoneName": format!("{}a", ctx.scope.region), "LoadBalancerAddresses": []}]);
    }
    Value::Array(
        subnets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                let zone = format!("{}{}", ctx.scope.region, char::from(b'a' + (i % 26) as u8));
                json!({"ZoneName": zone, "SubnetId": s, "LoadBalancerAddresses": []})
            })
            .collect(),
    )
}

fn subnets_in(input: &Value) -> Vec<String> {
    let mut subnets = strings_of(input, "Subnets");
    subnets.extend(list_of(input, "SubnetMappings").iter().filter_map(|m| str_of(m, "SubnetId")).map(str::to_string));
    subnets
}

/// Rewrites one `extra` member of a load balancer (security groups, zones): they are echoed
/// back, as Wharf has one flat network per host.
async fn set_extra(ctx: &Ctx, arn: &str, key: &'static str, value: Value) -> Result<LoadBalancer> {
    ctx.db
        .update(|| {
            let value = value.clone();
            async move {
                let mut lb = load_lb(ctx, arn).await?;
                lb.doc.extra.insert(key.into(), value);
                Ok((Some(cas_put(&lb.key, lb.rev, &lb.doc)?), lb.doc))
            }
        })
        .await
}

pub(crate) async fn set_security_groups(ctx: &Ctx, input: Value) -> Result<Value> {
    let arn = required(&input, "LoadBalancerArn")?;
    let groups = strings_of(&input, "SecurityGroups");
    let lb = set_extra(ctx, arn, "SecurityGroups", json!(groups)).await?;
    Ok(json!({"SecurityGroupIds": lb.extra.get("SecurityGroups").cloned().unwrap_or_else(|| json!([]))}))
}

pub(crate) async fn set_subnets(ctx: &Ctx, input: Value) -> Result<Value> {
    let arn = required(&input, "LoadBalancerArn")?;
    if let Some(ip) = str_of(&input, "IpAddressType").filter(|t| *t != "ipv4") {
        return Err(Error::invalid("IpAddressType", format!("IP address type '{ip}' is not supported (ipv4)")));
    }
    let subnets = subnets_in(&input);
    if subnets.is_empty() {
        return Err(Error::invalid("Subnets", "At least one subnet must be specified"));
    }
    let lb = set_extra(ctx, arn, "AvailabilityZones", zones(ctx, &subnets)).await?;
    Ok(
        json!({"AvailabilityZones": lb.extra.get("AvailabilityZones").cloned().unwrap_or_default(), "IpAddressType": "ipv4"}),
    )
}

/// The limits Wharf enforces, under AWS's names.
pub(crate) async fn describe_account_limits(_ctx: &Ctx, _input: Value) -> Result<Value> {
    let limits = [
        ("listeners-per-application-load-balancer", super::listeners::MAX_LISTENERS),
        ("rules-per-application-load-balancer", super::rules::MAX_RULES),
        ("target-groups-per-action-on-application-load-balancer", validate::MAX_FORWARD_GROUPS),
        ("targets-per-application-load-balancer", super::targets::MAX_TARGETS),
    ];
    let out: Vec<Value> = limits.iter().map(|(n, m)| json!({"Name": n, "Max": m.to_string()})).collect();
    Ok(json!({"Limits": out}))
}

/// Only `ipv4` is served: anything else is refused, never silently ignored.
pub(crate) async fn set_ip_address_type(ctx: &Ctx, input: Value) -> Result<Value> {
    let lb = load_lb(ctx, required(&input, "LoadBalancerArn")?).await?;
    match required(&input, "IpAddressType")? {
        "ipv4" => Ok(json!({"IpAddressType": lb.doc.extra.get("IpAddressType").cloned().unwrap_or(json!("ipv4"))})),
        other => Err(Error::invalid("IpAddressType", format!("IP address type '{other}' is not supported (ipv4)"))),
    }
}
