//! Placement strategies: among the instances a task fits on, which one it goes to. Each
//! strategy ranks the candidates; earlier strategies decide, later ones break ties, and a
//! final random choice breaks what is left (ECS's `random` default).

use serde_json::Value;
use std::collections::HashMap;
use wharf_types::ecs::ContainerInstance;

fn remaining(i: &ContainerInstance, name: &str) -> i64 {
    i.remaining_resources.iter().find(|r| r.name == name).map_or(0, |r| r.integer_value)
}

fn attribute<'a>(i: &'a ContainerInstance, name: &str) -> Option<&'a str> {
    i.attributes.iter().find(|a| a.name == name).and_then(|a| a.value.as_deref())
}

/// Picks one of `fits` (indexes into `instances`). `group_tasks` counts, per instance ARN,
/// the running or pending tasks of the group being placed (spread balances those). Costs
/// O(instances × strategies).
pub fn pick(
    strategies: &[Value],
    fits: &[usize],
    instances: &[ContainerInstance],
    group_tasks: &HashMap<String, usize>,
) -> Option<usize> {
    let count = |i: &ContainerInstance| group_tasks.get(&i.container_instance_arn).copied().unwrap_or(0) as i64;
    // Per attribute spread strategy: group tasks per attribute value, counted once.
    let per_value: Vec<Option<HashMap<Option<&str>, i64>>> = strategies
        .iter()
        .map(|s| {
            let field = s.get("field").and_then(Value::as_str).unwrap_or_default();
            let spread = s.get("type").and_then(Value::as_str) == Some("spread");
            (spread && field != "instanceId" && field != "host").then(|| {
                let name = field.strip_prefix("attribute:").unwrap_or(field);
                let mut m: HashMap<Option<&str>, i64> = HashMap::new();
                for i in instances {
                    *m.entry(attribute(i, name)).or_default() += count(i);
                }
                m
            })
        })
        .collect();
    // ECS allows at most 5 strategies; a fixed array keeps scoring allocation-free.
    let score = |idx: usize| -> [i64; 5] {
        let inst = &instances[idx];
        let mut out = [0i64; 5];
        for ((slot, s), values) in out.iter_mut().zip(strategies).zip(&per_value) {
            let field = s.get("field").and_then(Value::as_str).unwrap_or_default();
            *slot = match (s.get("type").and_then(Value::as_str), values) {
                (Some("binpack"), _) if field.eq_ignore_ascii_case("cpu") => remaining(inst, "CPU"),
                (Some("binpack"), _) => remaining(inst, "MEMORY"),
                (Some("spread"), Some(values)) => {
                    let name = field.strip_prefix("attribute:").unwrap_or(field);
                    values.get(&attribute(inst, name)).copied().unwrap_or(0)
                }
                (Some("spread"), None) => count(inst),
                _ => 0,
            };
        }
        out
    };
    let scored: Vec<(usize, [i64; 5])> = fits.iter().map(|&i| (i, score(i))).collect();
    let best = *scored.iter().map(|(_, s)| s).min()?;
    let tied: Vec<usize> = scored.into_iter().filter(|(_, s)| *s == best).map(|(i, _)| i).collect();
    Some(tied[rand::random_range(0..tied.len())])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn instance(arn: &str, cpu: i64, memory: i64, az: &str) -> ContainerInstance {
        serde_json::from_value(json!({
            "containerInstanceArn": arn, "version": 1, "status": "ACTIVE", "agentConnected": true, "registeredAt": 0.0,
            "remainingResources": [
                {"name": "CPU", "type": "INTEGER", "integerValue": cpu},
                {"name": "MEMORY", "type": "INTEGER", "integerValue": memory}],
            "attributes": [{"name": "ecs.availability-zone", "value": az}],
        }))
        .unwrap()
    }

    #[test]
    fn binpack_prefers_the_fullest_instance() {
        let instances =
            [instance("a", 2048, 4000, "z1"), instance("b", 2048, 1000, "z1"), instance("c", 512, 3000, "z2")];
        let s = [json!({"type": "binpack", "field": "memory"})];
        assert_eq!(pick(&s, &[0, 1, 2], &instances, &HashMap::new()), Some(1));
        let s = [json!({"type": "binpack", "field": "cpu"})];
        assert_eq!(pick(&s, &[0, 1, 2], &instances, &HashMap::new()), Some(2));
    }

    #[test]
    fn spread_balances_instances_then_zones() {
        let instances = [instance("a", 1, 1, "z1"), instance("b", 1, 1, "z1"), instance("c", 1, 1, "z2")];
        let counts: HashMap<String, usize> = [("a".to_string(), 2), ("b".to_string(), 0), ("c".to_string(), 1)].into();
        let by_instance = [json!({"type": "spread", "field": "instanceId"})];
        assert_eq!(pick(&by_instance, &[0, 1, 2], &instances, &counts), Some(1));
        let by_zone = [json!({"type": "spread", "field": "attribute:ecs.availability-zone"})];
        assert_eq!(pick(&by_zone, &[0, 1, 2], &instances, &counts), Some(2));
    }

    #[test]
    fn random_picks_among_all_fits() {
        let instances = [instance("a", 1, 1, "z"), instance("b", 1, 1, "z")];
        let seen: std::collections::HashSet<usize> =
            (0..200).filter_map(|_| pick(&[], &[0, 1], &instances, &HashMap::new())).collect();
        assert_eq!(seen.len(), 2);
        assert_eq!(pick(&[], &[], &instances, &HashMap::new()), None);
    }
}
