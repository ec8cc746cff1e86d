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

/// One parsed strategy, with what it needs precomputed per instance.
#[derive(Debug)]
enum Rank {
    Binpack(&'static str),
    SpreadInstance,
    /// The attribute value (as an id) of each instance, and group tasks per value id.
    SpreadAttribute {
        value_of: Vec<usize>,
        per_value: Vec<i64>,
    },
    None,
}

/// Places the tasks of one call: ranks candidates by the strategies in O(candidates) per
/// task, keeping its counters up to date as tasks are placed.
#[derive(Debug)]
pub struct Placer {
    ranks: Vec<Rank>,
    /// Group tasks per instance (spread).
    per_instance: Vec<i64>,
}

impl Placer {
    /// `group_tasks` counts, per instance ARN, the running or pending tasks of the group being
    /// placed (spread balances those).
    pub fn new(strategies: &[Value], instances: &[ContainerInstance], group_tasks: &HashMap<String, usize>) -> Self {
        let per_instance: Vec<i64> =
            instances.iter().map(|i| group_tasks.get(&i.container_instance_arn).copied().unwrap_or(0) as i64).collect();
        let ranks = strategies
            .iter()
            .take(5)
            .map(|s| {
                let field = s.get("field").and_then(Value::as_str).unwrap_or_default();
                match s.get("type").and_then(Value::as_str) {
                    Some("binpack") if field.eq_ignore_ascii_case("cpu") => Rank::Binpack("CPU"),
                    Some("binpack") => Rank::Binpack("MEMORY"),
                    Some("spread") if field == "instanceId" || field == "host" => Rank::SpreadInstance,
                    Some("spread") => {
                        let name = field.strip_prefix("attribute:").unwrap_or(field);
                        let mut ids: HashMap<Option<&str>, usize> = HashMap::new();
                        let value_of: Vec<usize> = instances
                            .iter()
                            .map(|i| {
                                let next = ids.len();
                                *ids.entry(attribute(i, name)).or_insert(next)
                            })
                            .collect();
                        let mut per_value = vec![0; ids.len()];
                        for (i, v) in value_of.iter().enumerate() {
                            per_value[*v] += per_instance[i];
                        }
                        Rank::SpreadAttribute { value_of, per_value }
                    }
                    _ => Rank::None,
                }
            })
            .collect();
        Placer { ranks, per_instance }
    }

    /// Picks one of `fits` (indexes into `instances`); ties are broken at random.
    pub fn pick(&self, fits: &[usize], instances: &[ContainerInstance]) -> Option<usize> {
        let score = |idx: usize| -> [i64; 5] {
            let mut out = [0i64; 5];
            for (slot, rank) in out.iter_mut().zip(&self.ranks) {
                *slot = match rank {
                    Rank::Binpack(resource) => remaining(&instances[idx], resource),
                    Rank::SpreadInstance => self.per_instance[idx],
                    Rank::SpreadAttribute { value_of, per_value } => per_value[value_of[idx]],
                    Rank::None => 0,
                };
            }
            out
        };
        let mut best: Option<[i64; 5]> = None;
        let mut tied: Vec<usize> = vec![];
        for &i in fits {
            let s = score(i);
            match best {
                Some(b) if s > b => {}
                Some(b) if s == b => tied.push(i),
                _ => {
                    best = Some(s);
                    tied.clear();
                    tied.push(i);
                }
            }
        }
        (!tied.is_empty()).then(|| tied[rand::random_range(0..tied.len())])
    }

    /// Counts a task placed on instance `idx`.
    pub fn placed(&mut self, idx: usize) {
        self.per_instance[idx] += 1;
        for rank in &mut self.ranks {
            if let Rank::SpreadAttribute { value_of, per_value } = rank {
                per_value[value_of[idx]] += 1;
            }
        }
    }
}

/// Picks one of `fits` for a single task (see [`Placer`]).
pub fn pick(
    strategies: &[Value],
    fits: &[usize],
    instances: &[ContainerInstance],
    group_tasks: &HashMap<String, usize>,
) -> Option<usize> {
    Placer::new(strategies, instances, group_tasks).pick(fits, instances)
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
