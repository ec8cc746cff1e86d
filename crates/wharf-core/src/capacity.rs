//! An instance's resources: what a task demands (CPU units, memory MiB, fixed host ports)
//! and reserving or releasing it in the instance's remaining resources.

use wharf_types::ecs::{ContainerInstance, ResourceAmount};

/// What a task needs from an instance.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Demand {
    pub cpu: i64,
    pub memory: i64,
    /// Fixed host ports with their protocol (`tcp`/`udp`).
    pub ports: Vec<(i64, String)>,
}

fn amount<'a>(list: &'a mut [ResourceAmount], name: &str) -> Option<&'a mut ResourceAmount> {
    list.iter_mut().find(|r| r.name == name)
}

fn port_set(proto: &str) -> &'static str {
    if proto == "udp" { "PORTS_UDP" } else { "PORTS" }
}

/// Whether `d` fits in the instance's remaining resources; if not, which resource is short,
/// with ECS's failure reasons. Reads only.
pub fn fits(inst: &ContainerInstance, d: &Demand) -> std::result::Result<(), String> {
    let remaining = &inst.remaining_resources;
    let value = |name: &str| remaining.iter().find(|r| r.name == name).map_or(0, |r| r.integer_value);
    if value("CPU") < d.cpu {
        return Err("RESOURCE:CPU".into());
    }
    if value("MEMORY") < d.memory {
        return Err("RESOURCE:MEMORY".into());
    }
    for (port, proto) in &d.ports {
        let taken = remaining
            .iter()
            .find(|r| r.name == port_set(proto))
            .and_then(|r| r.string_set_value.as_ref())
            .is_some_and(|s| s.iter().any(|p| p == &port.to_string()));
        if taken {
            return Err(if proto == "udp" { "RESOURCE:PORTS_UDP".into() } else { "RESOURCE:PORTS".into() });
        }
    }
    Ok(())
}

/// Takes `d` from the instance's remaining resources, or says which resource is short.
pub fn reserve(inst: &mut ContainerInstance, d: &Demand) -> std::result::Result<(), String> {
    fits(inst, d)?;
    let remaining = &mut inst.remaining_resources;
    if let Some(r) = amount(remaining, "CPU") {
        r.integer_value -= d.cpu;
    }
    if let Some(r) = amount(remaining, "MEMORY") {
        r.integer_value -= d.memory;
    }
    for (port, proto) in &d.ports {
        if let Some(r) = amount(remaining, port_set(proto)) {
            r.string_set_value.get_or_insert_with(Vec::new).push(port.to_string());
        }
    }
    Ok(())
}

/// Gives `d` back to the instance.
pub fn release(inst: &mut ContainerInstance, d: &Demand) {
    let registered = inst.registered_resources.clone();
    let cap = |name: &str| registered.iter().find(|r| r.name == name).map_or(i64::MAX, |r| r.integer_value);
    let remaining = &mut inst.remaining_resources;
    if let Some(r) = amount(remaining, "CPU") {
        r.integer_value = (r.integer_value + d.cpu).min(cap("CPU"));
    }
    if let Some(r) = amount(remaining, "MEMORY") {
        r.integer_value = (r.integer_value + d.memory).min(cap("MEMORY"));
    }
    for (port, proto) in &d.ports {
        let reserved_at_start = registered
            .iter()
            .find(|r| r.name == port_set(proto))
            .and_then(|r| r.string_set_value.as_ref())
            .is_some_and(|s| s.contains(&port.to_string()));
        if let Some(set) = amount(remaining, port_set(proto)).and_then(|r| r.string_set_value.as_mut())
            && !reserved_at_start
        {
            set.retain(|p| p != &port.to_string());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn instance() -> ContainerInstance {
        let r = |name: &str, v: i64| ResourceAmount {
            name: name.into(),
            kind: "INTEGER".into(),
            double_value: 0.0,
            long_value: 0,
            integer_value: v,
            string_set_value: None,
        };
        let ports = ResourceAmount {
            name: "PORTS".into(),
            kind: "STRINGSET".into(),
            double_value: 0.0,
            long_value: 0,
            integer_value: 0,
            string_set_value: Some(vec!["22".into()]),
        };
        let registered = vec![r("CPU", 2048), r("MEMORY", 1000), ports];
        serde_json::from_value(json!({
            "containerInstanceArn": "arn", "version": 1, "status": "ACTIVE", "agentConnected": true, "registeredAt": 0.0,
            "registeredResources": registered, "remainingResources": registered,
        }))
        .unwrap()
    }

    #[test]
    fn reserve_and_release_account_exactly() {
        let mut i = instance();
        let d = Demand { cpu: 1024, memory: 600, ports: vec![(8080, "tcp".into())] };
        reserve(&mut i, &d).unwrap();
        assert_eq!(reserve(&mut i.clone(), &d), Err("RESOURCE:CPU".to_string()).or(Err("RESOURCE:MEMORY".to_string())));
        assert_eq!(
            reserve(&mut i.clone(), &Demand { cpu: 0, memory: 0, ports: vec![(8080, "tcp".into())] }),
            Err("RESOURCE:PORTS".into())
        );
        assert_eq!(
            reserve(&mut i.clone(), &Demand { cpu: 0, memory: 0, ports: vec![(22, "tcp".into())] }),
            Err("RESOURCE:PORTS".into())
        );
        release(&mut i, &d);
        assert_eq!(i.remaining_resources, i.registered_resources);
    }
}
