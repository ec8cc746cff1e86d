//! Listeners: one per port per load balancer, and since a listener binds the host's port,
//! one per port on the host (a claim key `keys::listener_port` held by its ARN). Default
//! actions are checked and normalised by [`validate::actions`]; target groups they forward
//! to must exist and may serve only this load balancer.

use super::*;
use crate::db::encode;
use wharf_store::{Compare, Op, Txn};
use wharf_types::elb::certificate_files;
use wharf_types::{Invalid, Limit};

/// ELBv2's limit of listeners per load balancer.
pub(crate) const MAX_LISTENERS: usize = 50;
const DEFAULT_SSL_POLICY: &str = "ELBSecurityPolicy-2016-08";

/// Checks that every group `actions` forwards to exists and serves no other load balancer;
/// adds a compare-and-rewrite of each to `txn` so DeleteTargetGroup cannot race this write.
pub(crate) async fn claim_groups(
    ctx: &Ctx,
    usage: &Usage,
    lb_arn: &str,
    actions: &[Action],
    txn: &mut Txn,
) -> Result<()> {
    for arn in forwarded_groups(actions) {
        let tg = load_tg(ctx, &arn).await?;
        if usage.load_balancers_of(&arn).iter().any(|other| other != lb_arn) {
            return Err(Error::limit_exceeded(
                Limit::TargetGroupAssociations,
                format!("The following target groups cannot be associated with more than one load balancer: '{arn}'"),
            ));
        }
        txn.compares.push(Compare::ModRevision(tg.key.clone(), tg.rev));
        txn.ops.push(Op::put(tg.key.clone(), encode(&tg.doc)?));
    }
    Ok(())
}

/// `(Protocol, Certificates, SslPolicy)` after checking they fit together.
fn tls(protocol: &str, certs: &[Value], ssl_policy: Option<&str>) -> Result<(Vec<Value>, Option<String>)> {
    match protocol {
        "HTTP" => {
            if !certs.is_empty() {
                return Err(Error::invalid("Certificates", "Certificates can be specified only for HTTPS listeners"));
            }
            if ssl_policy.is_some() {
                return Err(Error::invalid("SslPolicy", "An SSL policy can be specified only for HTTPS listeners"));
            }
            Ok((vec![], None))
        }
        "HTTPS" => {
            let Some(first) = certs.first() else {
                return Err(Error::invalid("Certificates", "A certificate must be specified for HTTPS listeners"));
            };
            if certs.len() > 1 {
                return Err(Error::limit_exceeded(Limit::Certificates, "A listener takes one default certificate"));
            }
            let arn = str_of(first, "CertificateArn")
                .ok_or_else(|| Error::invalid("Certificates", "A certificate must have a CertificateArn"))?;
            // Either form names files on this host (see `wharf_types::elb::certificate_files`);
            // an absolute path is checked here, an ACM-style ARN under the data dir by the
            // data plane when it loads it.
            let Some((pem, _)) = certificate_files(arn, std::path::Path::new("/")) else {
                return Err(Error::not_found(
                    Resource::Certificate,
                    format!(
                        "Certificate '{arn}' not found: use an absolute path to a PEM file or \
                         arn:aws:acm:<region>:<account>:certificate/<id> (<data-dir>/certs/<id>.pem)"
                    ),
                ));
            };
            if arn.starts_with('/') && !pem.is_file() {
                return Err(Error::not_found(
                    Resource::Certificate,
                    format!("Certificate file '{arn}' does not exist"),
                ));
            }
            Ok((vec![json!({"CertificateArn": arn})], Some(ssl_policy.unwrap_or(DEFAULT_SSL_POLICY).to_string())))
        }
        other => Err(Error::Unsupported(format!(
            "Listener protocol '{other}' is not supported: application load balancers take HTTP or HTTPS"
        ))),
    }
}

/// Adds the claim on `port` for listener `arn` of load balancer `lb_arn` to `txn`, or fails
/// with DuplicateListener (same load balancer) or InvalidConfigurationRequest (another one
/// binds the port on this host).
async fn claim_port(ctx: &Ctx, port: u16, arn: &str, lb_arn: &str, txn: &mut Txn) -> Result<()> {
    let key = keys::listener_port(port);
    if let Some(holder) = ctx.db.get::<String>(&key).await? {
        let holder_lb = holder.doc.replacen(":listener/app/", ":loadbalancer/app/", 1);
        let holder_lb = holder_lb.rsplit_once('/').map(|(a, _)| a).unwrap_or_default();
        if holder_lb == lb_arn {
            return Err(Error::already_exists(Resource::Listener, format!("A listener already exists on port {port}")));
        }
        return Err(Error::invalid_input(
            Invalid::Configuration,
            format!("Port {port} of this host is already used by listener '{}'", holder.doc),
        ));
    }
    txn.compares.push(Compare::ModRevision(key.clone(), 0));
    txn.ops.push(Op::put(key, encode(&arn)?));
    Ok(())
}

pub(crate) async fn create(ctx: &Ctx, input: Value) -> Result<Value> {
    let lb_arn = required(&input, "LoadBalancerArn")?.to_string();
    let protocol = str_of(&input, "Protocol")
        .ok_or_else(|| Error::invalid("Protocol", "A listener protocol must be specified"))?;
    let port =
        int_of(&input, "Port").ok_or_else(|| Error::invalid("Port", "A listener port must be specified"))? as u16;
    let (certificates, ssl_policy) = tls(protocol, list_of(&input, "Certificates"), str_of(&input, "SslPolicy"))?;
    let actions = validate::actions("DefaultActions", list_of(&input, "DefaultActions"))?;
    let tags = load_balancers::tags_in(&input)?;
    let listener = ctx
        .db
        .update(|| {
            let (lb_arn, actions, certificates, ssl_policy, tags) =
                (lb_arn.clone(), actions.clone(), certificates.clone(), ssl_policy.clone(), tags.clone());
            async move {
                let lb = load_lb(ctx, &lb_arn).await?;
                let usage = Usage::read(ctx).await?;
                // AWS answers a repeated create with identical settings with the existing listener.
                if let Some(same) = usage.listeners.iter().find(|l| {
                    l.doc.load_balancer_arn == lb_arn
                        && l.doc.port == port
                        && l.doc.protocol == protocol
                        && l.doc.certificates == certificates
                        && l.doc.extra.get("SslPolicy").and_then(Value::as_str) == ssl_policy.as_deref()
                        && l.doc.default_actions == actions
                }) {
                    return Ok((None, same.doc.clone()));
                }
                if usage.listeners.iter().filter(|l| l.doc.load_balancer_arn == lb_arn).count() >= MAX_LISTENERS {
                    return Err(Error::limit_exceeded(
                        Limit::Listeners,
                        format!("A load balancer can have at most {MAX_LISTENERS} listeners"),
                    ));
                }
                let id = wharf_types::hex_id(16);
                let arn = listener_arn(&lb_arn, &id);
                let mut extra = Map::new();
                if let Some(p) = ssl_policy {
                    extra.insert("SslPolicy".into(), json!(p));
                }
                let doc = Listener {
                    listener_arn: arn.clone(),
                    load_balancer_arn: lb_arn.clone(),
                    port,
                    protocol: protocol.to_string(),
                    certificates,
                    default_actions: actions,
                    default_rule_arn: Some(rule_arn(&arn, &wharf_types::hex_id(16))),
                    tags,
                    extra,
                };
                // The load balancer is rewritten under a compare so a concurrent delete of
                // it cannot leave this listener behind.
                let key = listener_key(ctx, &id);
                let mut txn = Txn {
                    compares: vec![Compare::ModRevision(lb.key.clone(), lb.rev), Compare::ModRevision(key.clone(), 0)],
                    ops: vec![Op::put(lb.key.clone(), encode(&lb.doc)?), Op::put(key, encode(&doc)?)],
                };
                claim_port(ctx, port, &arn, &lb_arn, &mut txn).await?;
                claim_groups(ctx, &usage, &lb_arn, &doc.default_actions, &mut txn).await?;
                Ok((Some(txn), doc))
            }
        })
        .await?;
    Ok(json!({"Listeners": [listener_out(&listener)]}))
}

pub(crate) fn listener_out(l: &Listener) -> Value {
    let mut o = Map::new();
    o.insert("ListenerArn".into(), json!(l.listener_arn));
    o.insert("LoadBalancerArn".into(), json!(l.load_balancer_arn));
    o.insert("Port".into(), json!(l.port));
    o.insert("Protocol".into(), json!(l.protocol));
    if !l.certificates.is_empty() {
        o.insert("Certificates".into(), Value::Array(l.certificates.clone()));
    }
    if let Some(p) = l.extra.get("SslPolicy") {
        o.insert("SslPolicy".into(), p.clone());
    }
    o.insert("DefaultActions".into(), actions_out(&l.default_actions));
    Value::Object(o)
}

pub(crate) async fn describe(ctx: &Ctx, input: Value) -> Result<Value> {
    let arns = strings_of(&input, "ListenerArns");
    let lb = str_of(&input, "LoadBalancerArn");
    match (lb, arns.is_empty()) {
        (Some(_), false) => {
            Err(Error::invalid("ListenerArns", "A load balancer ARN and listener ARNs cannot be specified together"))
        }
        (None, true) => {
            Err(Error::invalid("LoadBalancerArn", "A load balancer ARN or listener ARNs must be specified"))
        }
        (None, false) => {
            let mut out = Vec::new();
            for a in &arns {
                out.push(listener_out(&load_listener(ctx, a).await?.doc));
            }
            Ok(json!({"Listeners": out}))
        }
        (Some(lb), true) => {
            let lb = load_lb(ctx, lb).await?;
            let prefix = keys::listeners(&ctx.scope.account, &ctx.scope.region);
            let (after, size) = page_of(&input, &prefix)?;
            let all: Vec<Versioned<Listener>> = ctx
                .db
                .list::<Listener>(&prefix)
                .await?
                .into_iter()
                .filter(|l| l.doc.load_balancer_arn == lb.doc.load_balancer_arn)
                .filter(|l| after.as_ref().is_none_or(|a| l.key > *a))
                .collect();
            let next = (all.len() > size).then(|| all[size - 1].key.clone());
            let out: Vec<Value> = all.iter().take(size).map(|l| listener_out(&l.doc)).collect();
            Ok(with_marker(json!({"Listeners": out}), next))
        }
    }
}

pub(crate) async fn modify(ctx: &Ctx, input: Value) -> Result<Value> {
    let arn = required(&input, "ListenerArn")?.to_string();
    let actions = match input.get("DefaultActions") {
        Some(_) => Some(validate::actions("DefaultActions", list_of(&input, "DefaultActions"))?),
        None => None,
    };
    let listener = ctx
        .db
        .update(|| {
            let (arn, input, actions) = (arn.clone(), input.clone(), actions.clone());
            async move {
                let l = load_listener(ctx, &arn).await?;
                let mut doc = l.doc.clone();
                let mut txn = Txn { compares: vec![Compare::ModRevision(l.key.clone(), l.rev)], ops: vec![] };
                if let Some(p) = int_of(&input, "Port").map(|p| p as u16).filter(|p| *p != doc.port) {
                    claim_port(ctx, p, &arn, &doc.load_balancer_arn, &mut txn).await?;
                    txn.ops.push(Op::delete(keys::listener_port(doc.port)));
                    doc.port = p;
                }
                let protocol = str_of(&input, "Protocol").unwrap_or(&doc.protocol).to_string();
                let certs = match input.get("Certificates") {
                    Some(_) => list_of(&input, "Certificates").to_vec(),
                    None if protocol == "HTTPS" => doc.certificates.clone(),
                    None => vec![],
                };
                let policy = str_of(&input, "SslPolicy").map(str::to_string).or_else(|| {
                    (protocol == "HTTPS").then(|| doc.extra.get("SslPolicy")?.as_str().map(str::to_string)).flatten()
                });
                let (certificates, ssl_policy) = tls(&protocol, &certs, policy.as_deref())?;
                doc.protocol = protocol;
                doc.certificates = certificates;
                match ssl_policy {
                    Some(p) => doc.extra.insert("SslPolicy".into(), json!(p)),
                    None => doc.extra.remove("SslPolicy"),
                };
                if let Some(actions) = actions {
                    let usage = Usage::read(ctx).await?;
                    claim_groups(ctx, &usage, &doc.load_balancer_arn, &actions, &mut txn).await?;
                    doc.default_actions = actions;
                }
                txn.ops.push(Op::put(l.key.clone(), encode(&doc)?));
                Ok((Some(txn), doc))
            }
        })
        .await?;
    Ok(json!({"Listeners": [listener_out(&listener)]}))
}

pub(crate) async fn delete(ctx: &Ctx, input: Value) -> Result<Value> {
    let arn = required(&input, "ListenerArn")?.to_string();
    ctx.db
        .update(|| {
            let arn = arn.clone();
            async move {
                let l = load_listener(ctx, &arn).await?;
                let usage = Usage::read(ctx).await?;
                let mut txn = Txn::default();
                load_balancers::cascade_listener(&usage, &l, &mut txn);
                Ok((Some(txn), ()))
            }
        })
        .await?;
    Ok(json!({}))
}

/// The listener's certificates: its one default certificate (extra certificates for SNI are
/// not supported).
pub(crate) async fn describe_certificates(ctx: &Ctx, input: Value) -> Result<Value> {
    let l = load_listener(ctx, required(&input, "ListenerArn")?).await?;
    let out: Vec<Value> = l
        .doc
        .certificates
        .iter()
        .filter_map(|c| str_of(c, "CertificateArn"))
        .map(|arn| json!({"CertificateArn": arn, "IsDefault": true}))
        .collect();
    Ok(json!({"Certificates": out}))
}
