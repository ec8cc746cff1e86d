//! The load balancers' counters as CloudWatch's `AWS/ApplicationELB` metrics: what one
//! sampling interval ([`Interval`]) becomes, as the ALB documentation describes each metric.
//!
//! | Metric | Dimensions | Unit | Datapoint per interval |
//! |---|---|---|---|
//! | `RequestCount` | `LoadBalancer`; `TargetGroup`, `LoadBalancer` | Count | n requests as n samples of 1, when n > 0 |
//! | `HTTPCode_Target_5XX_Count` | the same | Count | likewise |
//! | `HTTPCode_ELB_5XX_Count` | `LoadBalancer` | Count | likewise |
//! | `TargetResponseTime` | `LoadBalancer`; `TargetGroup`, `LoadBalancer` | Seconds | the responses' statistic set, when any |
//! | `RequestCountPerTarget` | `TargetGroup`; `TargetGroup`, `LoadBalancer` | None | requests ÷ healthy targets (÷ registered ones when none is healthy), one sample, always |
//! | `HealthyHostCount`, `UnHealthyHostCount` | `TargetGroup`, `LoadBalancer` | Count | the count at the interval's end, one sample, always |
//!
//! Target group metrics exist only for a group a listener forwards to (their dimensions name
//! its load balancer). A count's samples of 1 give CloudWatch's `Sum` as the count and
//! `Minimum`, `Maximum`, `Average` as 1, as ALB's counts do. `LoadBalancer` is the ARN's
//! final portion (`app/<name>/<id>`), `TargetGroup` likewise (`targetgroup/<name>/<id>`).
//! Nothing here writes anywhere: the control plane stores the points.

use crate::metrics::{Interval, Kind};

pub const NAMESPACE: &str = "AWS/ApplicationELB";

/// One datapoint: a statistic set for one metric in one account and region.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub account: String,
    pub region: String,
    pub name: &'static str,
    /// (name, value) pairs.
    pub dimensions: Vec<(&'static str, String)>,
    pub unit: &'static str,
    pub count: f64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

/// (account, region, resource) of an ELBv2 ARN: `arn:aws:elasticloadbalancing:<region>:<account>:<resource>`.
fn arn_parts(arn: &str) -> Option<(&str, &str, &str)> {
    let mut p = arn.splitn(6, ':');
    let (_, _, _, region, account, resource) = (p.next()?, p.next()?, p.next()?, p.next()?, p.next()?, p.next()?);
    Some((account, region, resource))
}

/// The `LoadBalancer` dimension's value: `app/<name>/<id>`.
pub fn load_balancer_dimension(arn: &str) -> Option<String> {
    arn_parts(arn)?.2.strip_prefix("loadbalancer/").map(str::to_string)
}

/// The `TargetGroup` dimension's value: `targetgroup/<name>/<id>`.
pub fn target_group_dimension(arn: &str) -> Option<String> {
    let resource = arn_parts(arn)?.2;
    resource.starts_with("targetgroup/").then(|| resource.to_string())
}

/// The points of one interval's worth of every resource.
pub fn points(intervals: &[Interval]) -> Vec<Point> {
    let mut out = Vec::new();
    for i in intervals {
        let Some((account, region, _)) = arn_parts(&i.arn) else { continue };
        let mut push =
            |name: &'static str, dimensions: Vec<(&'static str, String)>, unit: &'static str, s: [f64; 4]| {
                out.push(Point {
                    account: account.to_string(),
                    region: region.to_string(),
                    name,
                    dimensions,
                    unit,
                    count: s[0],
                    sum: s[1],
                    min: s[2],
                    max: s[3],
                })
            };
        let ones = |n: u64| [n as f64, n as f64, 1.0, 1.0];
        let one = |v: f64| [1.0, v, v, v];
        let times = [i.responses as f64, i.response_seconds, i.response_min_seconds, i.response_max_seconds];
        match i.kind {
            Kind::LoadBalancer => {
                let Some(lb) = load_balancer_dimension(&i.arn) else { continue };
                let dims = || vec![("LoadBalancer", lb.clone())];
                if i.requests > 0 {
                    push("RequestCount", dims(), "Count", ones(i.requests));
                }
                if i.target_5xx > 0 {
                    push("HTTPCode_Target_5XX_Count", dims(), "Count", ones(i.target_5xx));
                }
                if i.elb_5xx > 0 {
                    push("HTTPCode_ELB_5XX_Count", dims(), "Count", ones(i.elb_5xx));
                }
                if i.responses > 0 {
                    push("TargetResponseTime", dims(), "Seconds", times);
                }
            }
            Kind::TargetGroup => {
                let Some(tg) = target_group_dimension(&i.arn) else { continue };
                let Some(lb) = i.load_balancer.as_deref().and_then(load_balancer_dimension) else { continue };
                let both = || vec![("TargetGroup", tg.clone()), ("LoadBalancer", lb.clone())];
                if i.requests > 0 {
                    push("RequestCount", both(), "Count", ones(i.requests));
                }
                if i.target_5xx > 0 {
                    push("HTTPCode_Target_5XX_Count", both(), "Count", ones(i.target_5xx));
                }
                if i.responses > 0 {
                    push("TargetResponseTime", both(), "Seconds", times);
                }
                let targets = if i.healthy > 0 { i.healthy } else { i.registered };
                let per_target = i.requests as f64 / targets.max(1) as f64;
                push("RequestCountPerTarget", vec![("TargetGroup", tg.clone())], "None", one(per_target));
                push("RequestCountPerTarget", both(), "None", one(per_target));
                push("HealthyHostCount", both(), "Count", one(i.healthy as f64));
                push("UnHealthyHostCount", both(), "Count", one(i.unhealthy as f64));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const LB: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:loadbalancer/app/front/50dc6c495c0c9188";
    const TG: &str = "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/web/73e2d6bc24d8a067";

    fn interval(arn: &str, kind: Kind) -> Interval {
        Interval {
            arn: arn.into(),
            kind,
            load_balancer: (kind == Kind::TargetGroup).then(|| LB.to_string()),
            requests: 0,
            target_5xx: 0,
            elb_5xx: 0,
            responses: 0,
            response_seconds: 0.0,
            response_min_seconds: 0.0,
            response_max_seconds: 0.0,
            healthy: 0,
            unhealthy: 0,
            registered: 0,
        }
    }

    fn find<'a>(points: &'a [Point], name: &str, dims: usize) -> Option<&'a Point> {
        points.iter().find(|p| p.name == name && p.dimensions.len() == dims)
    }

    #[test]
    fn dimensions_are_the_arns_final_portions() {
        assert_eq!(load_balancer_dimension(LB).as_deref(), Some("app/front/50dc6c495c0c9188"));
        assert_eq!(target_group_dimension(TG).as_deref(), Some("targetgroup/web/73e2d6bc24d8a067"));
        assert_eq!(load_balancer_dimension(TG), None);
        assert_eq!(target_group_dimension("nonsense"), None);
    }

    #[test]
    fn a_target_groups_interval_becomes_alb_metrics() {
        let mut tg = interval(TG, Kind::TargetGroup);
        tg.requests = 90;
        tg.target_5xx = 2;
        tg.responses = 88;
        tg.response_seconds = 4.4;
        tg.response_min_seconds = 0.01;
        tg.response_max_seconds = 0.5;
        tg.healthy = 3;
        tg.unhealthy = 1;
        tg.registered = 4;
        let p = points(&[tg.clone()]);
        let rc = find(&p, "RequestCount", 2).unwrap();
        assert_eq!((rc.unit, rc.count, rc.sum, rc.min, rc.max), ("Count", 90.0, 90.0, 1.0, 1.0));
        assert_eq!((rc.account.as_str(), rc.region.as_str()), ("123456789012", "us-east-1"));
        assert_eq!(
            rc.dimensions,
            vec![
                ("TargetGroup", "targetgroup/web/73e2d6bc24d8a067".to_string()),
                ("LoadBalancer", "app/front/50dc6c495c0c9188".to_string())
            ]
        );
        // Requests per healthy target, under the group alone and with its load balancer.
        for dims in [1, 2] {
            let per = find(&p, "RequestCountPerTarget", dims).unwrap();
            assert_eq!((per.unit, per.count, per.sum), ("None", 1.0, 30.0));
        }
        let rt = find(&p, "TargetResponseTime", 2).unwrap();
        assert_eq!((rt.unit, rt.count, rt.sum, rt.min, rt.max), ("Seconds", 88.0, 4.4, 0.01, 0.5));
        assert_eq!(find(&p, "HTTPCode_Target_5XX_Count", 2).unwrap().sum, 2.0);
        assert_eq!(find(&p, "HealthyHostCount", 2).unwrap().sum, 3.0);
        assert_eq!(find(&p, "UnHealthyHostCount", 2).unwrap().sum, 1.0);

        // No healthy target: per registered target; a quiet interval still says 0 per target
        // and the host counts, and nothing else.
        tg.healthy = 0;
        assert_eq!(find(&points(&[tg.clone()]), "RequestCountPerTarget", 1).unwrap().sum, 22.5);
        let quiet = points(&[interval(TG, Kind::TargetGroup)]);
        let names: Vec<&str> = quiet.iter().map(|p| p.name).collect();
        assert_eq!(names, ["RequestCountPerTarget", "RequestCountPerTarget", "HealthyHostCount", "UnHealthyHostCount"]);
        assert_eq!(quiet[0].sum, 0.0);
        // A group no listener forwards to has no load balancer to name: no metrics.
        let mut lonely = interval(TG, Kind::TargetGroup);
        lonely.load_balancer = None;
        lonely.requests = 1;
        assert!(points(&[lonely]).is_empty());
    }

    #[test]
    fn a_load_balancers_interval_counts_what_it_served() {
        let mut lb = interval(LB, Kind::LoadBalancer);
        lb.requests = 10;
        lb.elb_5xx = 3;
        let p = points(&[lb]);
        let names: Vec<&str> = p.iter().map(|p| p.name).collect();
        assert_eq!(names, ["RequestCount", "HTTPCode_ELB_5XX_Count"]);
        assert_eq!(p[0].dimensions, vec![("LoadBalancer", "app/front/50dc6c495c0c9188".to_string())]);
        assert!(points(&[interval(LB, Kind::LoadBalancer)]).is_empty());
    }
}
