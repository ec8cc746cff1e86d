//! Turning an ECS container definition (plus RunTask overrides) into a runtime container
//! spec: the ECS semantics of command, environment, limits, ports, volumes and health checks.

use crate::runtime::{ContainerSpec, HealthCheck, PortBinding, Ulimit};
use serde_json::Value;
use std::collections::HashMap;
use wharf_types::agent::{Assignment, labels};
use wharf_types::ecs::ContainerDefinition;

const MIB: i64 = 1024 * 1024;

/// The task id (last ARN segment).
pub fn task_id(task_arn: &str) -> &str {
    task_arn.rsplit('/').next().unwrap_or(task_arn)
}

fn strings(v: Option<&Value>) -> Option<Vec<String>> {
    v?.as_array().map(|a| a.iter().filter_map(Value::as_str).map(str::to_string).collect())
}

/// The containerOverrides entry for `name`, if any.
fn container_override<'a>(a: &'a Assignment, name: &str) -> Option<&'a Value> {
    a.task
        .overrides
        .as_ref()?
        .get("containerOverrides")?
        .as_array()?
        .iter()
        .find(|o| o.get("name").and_then(Value::as_str) == Some(name))
}

/// The task's network mode as Docker names it (awsvpc is handled by the caller).
pub fn network_mode(a: &Assignment) -> String {
    a.task_definition.network_mode.clone().unwrap_or_else(|| "bridge".into())
}

/// The Docker volume standing in for an EFS file system: one named volume per file system
/// (and access point and root directory), shared by every task on the host that mounts it and
/// kept when they stop, so what one task writes the next one reads.
fn efs_volume(efs: &Value) -> Option<String> {
    let fs = efs.get("fileSystemId")?.as_str()?;
    let clean = |s: &str| -> String {
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).collect()
    };
    let mut name = format!("wharf-efs-{}", clean(fs));
    if let Some(ap) = efs.get("authorizationConfig").and_then(|a| a.get("accessPointId")).and_then(Value::as_str) {
        name.push_str(&format!("-{}", clean(ap)));
    }
    let root = efs.get("rootDirectory").and_then(Value::as_str).unwrap_or("/").trim_matches('/');
    if !root.is_empty() {
        name.push_str(&format!("-{}", clean(root)));
    }
    Some(name)
}

/// Builds the spec for container `def` of assignment `a`. Dynamic host ports stay 0; the
/// caller fills them.
pub fn container_spec(
    a: &Assignment,
    def: &ContainerDefinition,
    cluster: &str,
    instance_arn: &str,
    bind_ip: &str,
) -> ContainerSpec {
    let name = def.name.clone().unwrap_or_default();
    let o = container_override(a, &name);
    let td = &a.task_definition;
    let mode = network_mode(a);
    let mut env: Vec<(String, String)> = def.environment.iter().map(|kv| (kv.name.clone(), kv.value.clone())).collect();
    if let Some(list) = o.and_then(|o| o.get("environment")).and_then(Value::as_array) {
        for kv in list {
            if let (Some(k), Some(v)) =
                (kv.get("name").and_then(Value::as_str), kv.get("value").and_then(Value::as_str))
            {
                env.retain(|(n, _)| n != k);
                env.push((k.to_string(), v.to_string()));
            }
        }
    }
    let mut label_map: HashMap<String, String> = def
        .extra
        .get("dockerLabels")
        .and_then(Value::as_object)
        .map(|m| m.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
        .unwrap_or_default();
    label_map.insert(labels::CLUSTER.into(), cluster.to_string());
    label_map.insert(labels::TASK_ARN.into(), a.task.task_arn.clone());
    label_map.insert(labels::CONTAINER_NAME.into(), name.clone());
    label_map.insert(labels::FAMILY.into(), td.family.clone());
    label_map.insert(labels::VERSION.into(), td.revision.to_string());
    label_map.insert(labels::INSTANCE.into(), instance_arn.to_string());

    let cpu = o.and_then(|o| o.get("cpu")).and_then(Value::as_i64).unwrap_or(def.cpu);
    let memory = o.and_then(|o| o.get("memory")).and_then(Value::as_i64).or(def.memory);
    let reservation = o.and_then(|o| o.get("memoryReservation")).and_then(Value::as_i64).or(def.memory_reservation);
    let ports = def
        .port_mappings
        .iter()
        .filter_map(|pm| {
            let container_port = u16::try_from(pm.container_port?).ok()?;
            let host_port = match mode.as_str() {
                "host" | "awsvpc" => container_port,
                _ => pm.host_port.and_then(|p| u16::try_from(p).ok()).unwrap_or(0),
            };
            Some(PortBinding {
                container_port,
                host_port,
                protocol: pm.protocol.clone().unwrap_or_else(|| "tcp".into()),
                host_ip: bind_ip.to_string(),
            })
        })
        .collect();
    let extra = &def.extra;
    let health = extra.get("healthCheck").and_then(|h| {
        Some(HealthCheck {
            command: strings(h.get("command"))?,
            interval_secs: h.get("interval").and_then(Value::as_i64).unwrap_or(30),
            timeout_secs: h.get("timeout").and_then(Value::as_i64).unwrap_or(5),
            retries: h.get("retries").and_then(Value::as_i64).unwrap_or(3),
            start_period_secs: h.get("startPeriod").and_then(Value::as_i64).unwrap_or(0),
        })
    });
    let ulimits = extra
        .get("ulimits")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(|u| {
                    Some(Ulimit {
                        name: u.get("name")?.as_str()?.to_string(),
                        soft: u.get("softLimit")?.as_i64()?,
                        hard: u.get("hardLimit")?.as_i64()?,
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let volumes: HashMap<&str, &Value> =
        td.volumes.iter().filter_map(|v| Some((v.get("name")?.as_str()?, v))).collect();
    let binds = def
        .mount_points
        .iter()
        .filter_map(|mp| {
            let source = mp.get("sourceVolume")?.as_str()?;
            let target = mp.get("containerPath")?.as_str()?;
            let ro = mp.get("readOnly").and_then(Value::as_bool).unwrap_or(false);
            let vol = volumes.get(source)?;
            let host_path = vol.get("host").and_then(|h| h.get("sourcePath")).and_then(Value::as_str);
            let efs = vol.get("efsVolumeConfiguration");
            let origin = match host_path {
                Some(p) => p.to_string(),
                None if efs.is_some() => efs_volume(efs?)?,
                None => {
                    let shared =
                        vol.get("dockerVolumeConfiguration").and_then(|d| d.get("scope")).and_then(Value::as_str)
                            == Some("shared");
                    if shared { source.to_string() } else { format!("ecs-{}-{source}", task_id(&a.task.task_arn)) }
                }
            };
            Some(format!("{origin}:{target}{}", if ro { ":ro" } else { "" }))
        })
        .collect();
    let linux = extra.get("linuxParameters");
    let caps = |k: &str| strings(linux.and_then(|l| l.get("capabilities")).and_then(|c| c.get(k))).unwrap_or_default();
    ContainerSpec {
        name: format!("ecs-{}-{}-{}-{}", td.family, td.revision, name, &wharf_types::hex_id(12)),
        image: def.image.clone().unwrap_or_default(),
        entrypoint: strings(extra.get("entryPoint")),
        command: strings(o.and_then(|o| o.get("command"))).or_else(|| strings(extra.get("command"))),
        env: env.into_iter().map(|(k, v)| format!("{k}={v}")).collect(),
        working_dir: extra.get("workingDirectory").and_then(Value::as_str).map(str::to_string),
        user: extra.get("user").and_then(Value::as_str).map(str::to_string),
        hostname: extra.get("hostname").and_then(Value::as_str).map(str::to_string),
        labels: label_map,
        // Docker's minimum share is 2; ECS gives containers without cpu that minimum.
        cpu_shares: Some(cpu.max(2)),
        memory_bytes: memory.map(|m| m * MIB),
        memory_reservation_bytes: reservation.map(|m| m * MIB),
        ports,
        network_mode: if mode == "awsvpc" { "none".into() } else { mode },
        dns_servers: strings(extra.get("dnsServers")).unwrap_or_default(),
        dns_search: strings(extra.get("dnsSearchDomains")).unwrap_or_default(),
        extra_hosts: extra
            .get("extraHosts")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(|h| Some(format!("{}:{}", h.get("hostname")?.as_str()?, h.get("ipAddress")?.as_str()?)))
                    .collect()
            })
            .unwrap_or_default(),
        links: Vec::new(),
        ulimits,
        readonly_rootfs: extra.get("readonlyRootFilesystem").and_then(Value::as_bool).unwrap_or(false),
        privileged: extra.get("privileged").and_then(Value::as_bool).unwrap_or(false),
        init: linux.and_then(|l| l.get("initProcessEnabled")).and_then(Value::as_bool).unwrap_or(false),
        binds,
        volumes_from: Vec::new(),
        healthcheck: health,
        stop_timeout_secs: extra.get("stopTimeout").and_then(Value::as_i64),
        cap_add: caps("add"),
        cap_drop: caps("drop"),
        security_opts: strings(extra.get("dockerSecurityOptions")).unwrap_or_default(),
        sysctls: extra
            .get("systemControls")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(|s| {
                        Some((s.get("namespace")?.as_str()?.to_string(), s.get("value")?.as_str()?.to_string()))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        restart_on_failure: extra
            .get("restartPolicy")
            .filter(|r| r.get("enabled").and_then(Value::as_bool) == Some(true))
            .map(|_| 0),
        devices: linux
            .and_then(|l| l.get("devices"))
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(|d| {
                        let host = d.get("hostPath")?.as_str()?.to_string();
                        let container = d.get("containerPath").and_then(Value::as_str).unwrap_or(&host).to_string();
                        let perms: String = strings(d.get("permissions"))
                            .unwrap_or_else(|| vec!["read".into(), "write".into(), "mknod".into()])
                            .iter()
                            .filter_map(|p| p.chars().next())
                            .collect();
                        Some((host, container, perms))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        tmpfs: linux
            .and_then(|l| l.get("tmpfs"))
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(|t| {
                        let path = t.get("containerPath")?.as_str()?.to_string();
                        let mut opts = vec![format!("size={}m", t.get("size")?.as_i64()?)];
                        opts.extend(strings(t.get("mountOptions")).unwrap_or_default());
                        Some((path, opts.join(",")))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        shm_size_bytes: linux.and_then(|l| l.get("sharedMemorySize")).and_then(Value::as_i64).map(|m| m * MIB),
        // ECS: maxSwap is the swap a container may use on top of its memory; 0 is none.
        memory_swap_bytes: linux
            .and_then(|l| l.get("maxSwap"))
            .and_then(Value::as_i64)
            .and_then(|swap| Some((memory? + swap) * MIB)),
        swappiness: linux.and_then(|l| l.get("swappiness")).and_then(Value::as_i64),
        network_disabled: extra.get("disableNetworking").and_then(Value::as_bool).unwrap_or(false),
        open_stdin: extra.get("interactive").and_then(Value::as_bool).unwrap_or(false),
        tty: extra.get("pseudoTerminal").and_then(Value::as_bool).unwrap_or(false),
        pid_mode: td.extra.get("pidMode").and_then(Value::as_str).filter(|m| *m == "host").map(str::to_string),
        ipc_mode: td
            .extra
            .get("ipcMode")
            .and_then(Value::as_str)
            .filter(|m| matches!(*m, "host" | "none"))
            .map(str::to_string),
        log_driver: extra.get("logConfiguration").and_then(|l| {
            let driver = l.get("logDriver")?.as_str()?;
            (driver != "awslogs").then(|| {
                let options = l
                    .get("options")
                    .and_then(Value::as_object)
                    .map(|o| o.iter().filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string()))).collect())
                    .unwrap_or_default();
                (driver.to_string(), options)
            })
        }),
    }
}

/// Containers in start order: every container after the ones it depends on.
pub fn start_order(defs: &[ContainerDefinition]) -> Vec<usize> {
    let deps = |d: &ContainerDefinition| -> Vec<String> {
        d.extra
            .get("dependsOn")
            .and_then(Value::as_array)
            .map(|l| l.iter().filter_map(|x| x.get("containerName")?.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    };
    let mut order = vec![];
    let mut placed = vec![false; defs.len()];
    while order.len() < defs.len() {
        let before = order.len();
        for (i, d) in defs.iter().enumerate() {
            if placed[i] {
                continue;
            }
            let ready = deps(d).iter().all(|n| {
                defs.iter().enumerate().any(|(j, o)| o.name.as_deref() == Some(n.as_str()) && placed[j])
                    || !defs.iter().any(|o| o.name.as_deref() == Some(n.as_str()))
            });
            if ready {
                placed[i] = true;
                order.push(i);
            }
        }
        if order.len() == before {
            // A cycle (registration refuses these); start the rest in definition order.
            order.extend((0..defs.len()).filter(|i| !placed[*i]));
            break;
        }
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn defs(v: Value) -> Vec<ContainerDefinition> {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn dependencies_start_first() {
        let d = defs(json!([
            {"name": "app", "dependsOn": [{"containerName": "db", "condition": "HEALTHY"}, {"containerName": "init", "condition": "SUCCESS"}]},
            {"name": "db", "dependsOn": [{"containerName": "init", "condition": "COMPLETE"}]},
            {"name": "init"}
        ]));
        assert_eq!(start_order(&d), vec![2, 1, 0]);
    }

    #[test]
    fn efs_volumes_are_named_for_their_file_system() {
        assert_eq!(efs_volume(&json!({"fileSystemId": "fs-1"})).as_deref(), Some("wharf-efs-fs-1"));
        let v = json!({"fileSystemId": "fs-1", "rootDirectory": "/app/data",
                       "authorizationConfig": {"accessPointId": "fsap-9"}});
        assert_eq!(efs_volume(&v).as_deref(), Some("wharf-efs-fs-1-fsap-9-app_data"));
        assert_eq!(efs_volume(&json!({"rootDirectory": "/"})), None);
    }
}
