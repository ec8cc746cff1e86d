//! Property test over the ELBv2 handlers: arbitrary (model-validated) inputs for every
//! implemented operation, against a store seeded with a target group, a load balancer, a
//! listener and a rule whose ARNs the inputs may name. Nothing may panic, and every rejection
//! must be the caller's fault (a 4xx), never `Internal`.
#![allow(clippy::unwrap_used)]

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use wharf_api::{Ctx, ELBV2};

fn arb_json() -> impl Strategy<Value = Value> {
    let names = prop::sample::select(vec![
        "Name",
        "Names",
        "Type",
        "Protocol",
        "Port",
        "TargetType",
        "TargetGroupArn",
        "TargetGroupArns",
        "LoadBalancerArn",
        "LoadBalancerArns",
        "ListenerArn",
        "ListenerArns",
        "RuleArn",
        "RuleArns",
        "ResourceArns",
        "DefaultActions",
        "Actions",
        "ForwardConfig",
        "TargetGroups",
        "Weight",
        "TargetGroupStickinessConfig",
        "Enabled",
        "DurationSeconds",
        "RedirectConfig",
        "FixedResponseConfig",
        "StatusCode",
        "ContentType",
        "MessageBody",
        "Host",
        "Path",
        "Conditions",
        "Field",
        "Values",
        "PathPatternConfig",
        "HttpHeaderConfig",
        "HttpHeaderName",
        "QueryStringConfig",
        "SourceIpConfig",
        "Key",
        "Value",
        "Priority",
        "RulePriorities",
        "Targets",
        "Id",
        "Attributes",
        "Tags",
        "TagKeys",
        "Marker",
        "PageSize",
        "Certificates",
        "CertificateArn",
        "HealthCheckIntervalSeconds",
        "HealthCheckTimeoutSeconds",
        "HealthCheckPath",
        "HealthCheckPort",
        "Matcher",
        "HttpCode",
        "Subnets",
    ]);
    let leaf = prop_oneof![
        any::<bool>().prop_map(Value::Bool),
        (-5i64..70000).prop_map(|n| json!(n)),
        "[a-z0-9:/_.#{}*-]{0,12}".prop_map(Value::String),
        prop::sample::select(vec![
            "$TG",
            "$LB",
            "$L",
            "$R",
            "forward",
            "redirect",
            "fixed-response",
            "HTTP",
            "HTTPS",
            "ip",
            "instance",
            "path-pattern",
            "host-header",
            "source-ip",
            "10.0.0.1",
            "10.0.0.0/8",
            "200",
            "HTTP_301",
            "/x",
            "deregistration_delay.timeout_seconds",
            "stickiness.enabled",
            "idle_timeout.timeout_seconds",
        ])
        .prop_map(|s| json!(s)),
    ];
    leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((names.clone(), inner), 0..6)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Map<_, _>>())),
        ]
    })
}

/// Replaces the `$TG`/`$LB`/`$L`/`$R` placeholders with the seeded resources' ARNs.
fn bind(v: Value, arns: &[(&str, String)]) -> Value {
    match v {
        Value::String(s) => Value::String(arns.iter().find(|(k, _)| *k == s).map_or(s, |(_, a)| a.clone())),
        Value::Array(a) => Value::Array(a.into_iter().map(|x| bind(x, arns)).collect()),
        Value::Object(o) => Value::Object(o.into_iter().map(|(k, x)| (k, bind(x, arns))).collect()),
        other => other,
    }
}

async fn call(ctx: &Ctx, op: &str, input: Value) -> wharf_types::Result<Value> {
    let input = ELBV2.model.validate(op, input)?;
    wharf_api::call(&ELBV2, ctx, op, input).await.expect("implemented")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn any_input_for_any_operation_is_answered_without_a_server_fault(
        op in prop::sample::select(ELBV2.operations.to_vec()),
        body in arb_json(),
    ) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let ctx = Ctx::in_memory("123456789012", "us-east-1");
            let tg = call(&ctx, "CreateTargetGroup", json!({"Name": "tg", "Protocol": "HTTP", "Port": 80, "TargetType": "ip"}))
                .await.unwrap()["TargetGroups"][0]["TargetGroupArn"].as_str().unwrap().to_string();
            let lb = call(&ctx, "CreateLoadBalancer", json!({"Name": "lb"}))
                .await.unwrap()["LoadBalancers"][0]["LoadBalancerArn"].as_str().unwrap().to_string();
            let forward = json!([{"Type": "forward", "TargetGroupArn": tg}]);
            let l = call(&ctx, "CreateListener", json!({"LoadBalancerArn": lb, "Protocol": "HTTP", "Port": 8080, "DefaultActions": forward}))
                .await.unwrap()["Listeners"][0]["ListenerArn"].as_str().unwrap().to_string();
            let r = call(&ctx, "CreateRule", json!({"ListenerArn": l, "Priority": 5, "Actions": forward,
                    "Conditions": [{"Field": "path-pattern", "Values": ["/a"]}]}))
                .await.unwrap()["Rules"][0]["RuleArn"].as_str().unwrap().to_string();
            let arns = [("$TG", tg), ("$LB", lb), ("$L", l), ("$R", r)];
            let result = call(&ctx, op, bind(body, &arns)).await;
            if let Err(e) = result {
                prop_assert!(e.is_client_fault(), "{op}: server fault {e:?}");
            }
            Ok(())
        })?;
    }
}
