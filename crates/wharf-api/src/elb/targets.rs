//! Targets: registration (per-target ports, the group's port by default), deregistration
//! (draining while a load balancer uses the group; the data plane deletes the target after
//! the deregistration delay), and DescribeTargetHealth from what the data plane observed.

use super::target_groups::with_targets;
use super::*;
use crate::db::encode;
use wharf_store::{Compare, Op, Txn};
use wharf_types::ecs::ContainerInstance;
use wharf_types::elb::{Target, TargetHealth};
use wharf_types::{Invalid, Limit};

/// ELBv2's limit of targets per target group.
pub(crate) const MAX_TARGETS: usize = 1000;

/// `(Id, Port)` of each `Targets` member, the group's port filling in a missing one.
fn targets_in(input: &Value, tg: &TargetGroup) -> Result<Vec<(String, u16, Option<String>)>> {
    let mut out = Vec::new();
    for t in list_of(input, "Targets") {
        let id = required(t, "Id")?.to_string();
        let port = match (int_of(t, "Port"), tg.port) {
            (Some(p), _) => p as u16,
            (None, Some(p)) => p,
            (None, None) => {
                return Err(Error::invalid("Targets", format!("A port must be specified for target '{id}'")));
            }
        };
        out.push((id, port, str_of(t, "AvailabilityZone").map(str::to_string)));
    }
    if out.is_empty() {
        return Err(Error::invalid("Targets", "At least one target must be specified"));
    }
    Ok(out)
}

/// `ec2InstanceId`s of the container instances ECS knows in the caller's scope.
async fn known_instances(ctx: &Ctx) -> Result<BTreeSet<String>> {
    let prefix = format!("/ecs/instance/{}/{}/", ctx.scope.account, ctx.scope.region);
    Ok(ctx
        .db
        .list::<ContainerInstance>(&prefix)
        .await?
        .into_iter()
        .filter(|i| i.doc.status != "INACTIVE")
        .filter_map(|i| i.doc.ec2_instance_id)
        .collect())
}

fn target_key(ctx: &Ctx, tg: &TargetGroup, id: &str, port: u16) -> String {
    keys::target(&ctx.scope.account, &ctx.scope.region, &tg.target_group_name, id, port)
}
fn health_key(ctx: &Ctx, tg: &TargetGroup, id: &str, port: u16) -> String {
    keys::health(&ctx.scope.account, &ctx.scope.region, &tg.target_group_name, id, port)
}

pub(crate) async fn register(ctx: &Ctx, input: Value) -> Result<Value> {
    let arn = required(&input, "TargetGroupArn")?.to_string();
    let instances = known_instances(ctx).await?;
    ctx.db
        .update(|| {
            let (arn, input, instances) = (arn.clone(), input.clone(), &instances);
            async move {
                let (tg, existing) = with_targets(ctx, &arn).await?;
                let wanted = targets_in(&input, &tg.doc)?;
                let mut invalid = Vec::new();
                for (id, _, zone) in &wanted {
                    let ok = match tg.doc.target_type.as_str() {
                        "ip" => validate::ip_target(id).is_ok(),
                        // Container instances register with whatever id their identity
                        // document carries; an EC2-style id stands for a host the data plane
                        // reaches through its instance address (loopback when none is known).
                        _ => instances.contains(id) || validate::instance_id_form(id),
                    };
                    if !ok {
                        invalid.push(id.clone());
                    }
                    if let Some(z) = zone.as_deref().filter(|z| *z != "all" && !z.starts_with(&ctx.scope.region)) {
                        return Err(Error::invalid(
                            "Targets",
                            format!("Availability zone '{z}' is not in region '{}'", ctx.scope.region),
                        ));
                    }
                }
                if !invalid.is_empty() {
                    let what = if tg.doc.target_type == "ip" { "IP addresses" } else { "instances" };
                    return Err(Error::invalid_input(
                        Invalid::Target,
                        format!("The following targets are not valid {what}: '{}'", invalid.join("', '")),
                    ));
                }
                let by_key: BTreeMap<&str, &Versioned<Target>> = existing.iter().map(|t| (t.key.as_str(), t)).collect();
                let mut txn = Txn { compares: vec![Compare::ModRevision(tg.key.clone(), tg.rev)], ops: vec![] };
                let mut count = existing.len();
                let now = wharf_types::now();
                let mut done = BTreeSet::new();
                for (id, port, zone) in wanted {
                    let key = target_key(ctx, &tg.doc, &id, port);
                    if !done.insert(key.clone()) {
                        continue;
                    }
                    let doc = match by_key.get(key.as_str()) {
                        // Already registered and serving: nothing to change.
                        Some(t) if t.doc.draining_since.is_none() => continue,
                        // Registering a draining target again takes it back into service.
                        Some(t) => {
                            txn.compares.push(Compare::ModRevision(key.clone(), t.rev));
                            Target { draining_since: None, registered_at: now, ..t.doc.clone() }
                        }
                        None => {
                            count += 1;
                            txn.compares.push(Compare::ModRevision(key.clone(), 0));
                            Target {
                                target_group_arn: arn.clone(),
                                id,
                                port,
                                availability_zone: zone,
                                registered_at: now,
                                draining_since: None,
                            }
                        }
                    };
                    txn.ops.push(Op::put(key, encode(&doc)?));
                }
                if count > MAX_TARGETS {
                    return Err(Error::limit_exceeded(
                        Limit::Targets,
                        format!("A target group can have at most {MAX_TARGETS} registered targets"),
                    ));
                }
                Ok(((!txn.ops.is_empty()).then_some(txn), ()))
            }
        })
        .await?;
    Ok(json!({}))
}

pub(crate) async fn deregister(ctx: &Ctx, input: Value) -> Result<Value> {
    let arn = required(&input, "TargetGroupArn")?.to_string();
    ctx.db
        .update(|| {
            let (arn, input) = (arn.clone(), input.clone());
            async move {
                let (tg, existing) = with_targets(ctx, &arn).await?;
                let wanted = targets_in(&input, &tg.doc)?;
                let by_key: BTreeMap<&str, &Versioned<Target>> = existing.iter().map(|t| (t.key.as_str(), t)).collect();
                // Draining only matters while a load balancer sends traffic to the group.
                let in_use = Usage::read(ctx).await?.in_use(&arn);
                let mut txn = Txn { compares: vec![Compare::ModRevision(tg.key.clone(), tg.rev)], ops: vec![] };
                let now = wharf_types::now();
                for (id, port, _) in wanted {
                    let key = target_key(ctx, &tg.doc, &id, port);
                    // As on AWS, a target that is not registered (or not on that port) is
                    // left alone without an error.
                    let Some(t) = by_key.get(key.as_str()) else { continue };
                    if txn.compares.iter().any(|c| matches!(c, Compare::ModRevision(k, _) if *k == key)) {
                        continue;
                    }
                    txn.compares.push(Compare::ModRevision(key.clone(), t.rev));
                    if !in_use {
                        txn.ops.push(Op::delete(key));
                        txn.ops.push(Op::delete(health_key(ctx, &tg.doc, &id, port)));
                    } else if t.doc.draining_since.is_none() {
                        let doc = Target { draining_since: Some(now), ..t.doc.clone() };
                        txn.ops.push(Op::put(key, encode(&doc)?));
                    }
                }
                Ok(((!txn.ops.is_empty()).then_some(txn), ()))
            }
        })
        .await?;
    Ok(json!({}))
}

fn health_out(state: &str, reason: Option<&str>, description: Option<&str>) -> Value {
    let mut o = Map::new();
    o.insert("State".into(), json!(state));
    if let Some(r) = reason {
        o.insert("Reason".into(), json!(r));
    }
    if let Some(d) = description {
        o.insert("Description".into(), json!(d));
    }
    Value::Object(o)
}

pub(crate) async fn describe_health(ctx: &Ctx, input: Value) -> Result<Value> {
    let arn = required(&input, "TargetGroupArn")?;
    let (tg, targets) = with_targets(ctx, arn).await?;
    let (a, r) = (&ctx.scope.account, &ctx.scope.region);
    let health: BTreeMap<String, TargetHealth> = ctx
        .db
        .list::<TargetHealth>(&keys::health_of(a, r, &tg.doc.target_group_name))
        .await?
        .into_iter()
        .map(|h| (h.key, h.doc))
        .collect();
    let in_use = Usage::read(ctx).await?.in_use(arn);
    let hc_port = |port: u16| {
        if tg.doc.health_check.port == "traffic-port" { port.to_string() } else { tg.doc.health_check.port.clone() }
    };
    let describe = |t: &Target| -> Value {
        let th = if !in_use {
            health_out(
                "unused",
                Some("Target.NotInUse"),
                Some("Target group is not configured to receive traffic from the load balancer"),
            )
        } else if t.draining_since.is_some() {
            health_out(
                "draining",
                Some("Target.DeregistrationInProgress"),
                Some("Target deregistration is in progress"),
            )
        } else if let Some(h) = health.get(&health_key(ctx, &tg.doc, &t.id, t.port)) {
            health_out(&h.state, h.reason.as_deref(), h.description.as_deref())
        } else {
            health_out("initial", Some("Elb.RegistrationInProgress"), Some("Target registration is in progress"))
        };
        let mut target = json!({"Id": t.id, "Port": t.port});
        if let Some(z) = &t.availability_zone {
            target["AvailabilityZone"] = json!(z);
        }
        json!({"Target": target, "HealthCheckPort": hc_port(t.port), "TargetHealth": th})
    };
    let by_key: BTreeMap<&str, &Target> = targets.iter().map(|t| (t.key.as_str(), &t.doc)).collect();
    let out: Vec<Value> = if list_of(&input, "Targets").is_empty() {
        targets.iter().map(|t| describe(&t.doc)).collect()
    } else {
        targets_in(&input, &tg.doc)?
            .into_iter()
            .map(|(id, port, _)| match by_key.get(target_key(ctx, &tg.doc, &id, port).as_str()) {
                Some(t) => describe(t),
                None => json!({
                    "Target": {"Id": id, "Port": port},
                    "HealthCheckPort": hc_port(port),
                    "TargetHealth": health_out("unused", Some("Target.NotRegistered"), Some("Target is not registered to the target group")),
                }),
            })
            .collect()
    };
    Ok(json!({"TargetHealthDescriptions": out}))
}
