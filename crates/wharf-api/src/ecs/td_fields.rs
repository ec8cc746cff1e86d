//! Every task-definition and container-definition field is either applied by the agent or
//! refused here, at RegisterTaskDefinition, with a `ClientException` that names it: nothing is
//! accepted and silently ignored. docs/task-definition-fields.md lists each field and which it
//! is. Fargate-compatible definitions are also checked as Fargate checks them.

use serde_json::Value;
use wharf_types::ecs::{ContainerDefinition, TaskDefinition};
use wharf_types::{Error, Result};

/// Container fields Wharf cannot honour, with why.
const REFUSED_CONTAINER_FIELDS: &[(&str, &str)] = &[
    ("environmentFiles", "there is no S3 in Wharf to read them from; use environment or secrets"),
    ("firelensConfiguration", "there is no FireLens log router in Wharf; use the awslogs driver"),
    ("credentialSpecs", "there are no Active Directory credential specs (gMSA) on Linux agents"),
];

/// Log drivers the agent hands to Docker as they are (besides `awslogs`, which it ships
/// itself).
const DOCKER_LOG_DRIVERS: &[&str] = &["json-file", "local", "none", "syslog", "journald", "gelf", "fluentd"];

/// Task-level fields Wharf cannot honour, with why.
const REFUSED_TASK_FIELDS: &[(&str, &str)] = &[
    ("inferenceAccelerators", "there are no Elastic Inference accelerators"),
    ("proxyConfiguration", "there is no App Mesh proxy"),
    ("trustedExecutionConfiguration", "there are no trusted execution environments"),
];

fn unsupported(field: &str, why: &str) -> Error {
    Error::client(format!("Wharf does not support '{field}': {why}."))
}

fn present(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => false,
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(_) => true,
    }
}

/// Refuses what the agent would not apply.
pub(crate) fn check_supported(td: &TaskDefinition) -> Result<()> {
    for (field, why) in REFUSED_TASK_FIELDS {
        if present(td.extra.get(*field)) {
            return Err(unsupported(field, why));
        }
    }
    if td.extra.get("enableFaultInjection").and_then(Value::as_bool) == Some(true) {
        return Err(unsupported("enableFaultInjection", "there are no fault injection endpoints"));
    }
    for field in ["pidMode", "ipcMode"] {
        if let Some(mode) = td.extra.get(field).and_then(Value::as_str)
            && mode == "task"
        {
            return Err(unsupported(
                &format!("{field}=task"),
                "containers of a task do not share one namespace here; use host or leave it unset",
            ));
        }
    }
    if let Some(platform) = td.extra.get("runtimePlatform") {
        let os = platform.get("operatingSystemFamily").and_then(Value::as_str).unwrap_or("LINUX");
        if os != "LINUX" {
            return Err(unsupported(
                &format!("runtimePlatform.operatingSystemFamily={os}"),
                "agents run Linux containers only",
            ));
        }
    }
    for (i, v) in td.volumes.iter().enumerate() {
        let name = v.get("name").and_then(Value::as_str).unwrap_or_default();
        if present(v.get("fsxWindowsFileServerVolumeConfiguration")) {
            return Err(unsupported(
                &format!("volumes.{}.fsxWindowsFileServerVolumeConfiguration", i + 1),
                &format!("volume '{name}' needs FSx for Windows File Server"),
            ));
        }
        if present(v.get("s3filesVolumeConfiguration")) {
            return Err(unsupported(
                &format!("volumes.{}.s3filesVolumeConfiguration", i + 1),
                &format!("volume '{name}' needs S3 Files, and there is no S3"),
            ));
        }
        if v.get("configuredAtLaunch").and_then(Value::as_bool) == Some(true) {
            return Err(unsupported(
                &format!("volumes.{}.configuredAtLaunch", i + 1),
                &format!("volume '{name}' would be an EBS volume attached at launch, and there is no EBS"),
            ));
        }
    }
    for (i, c) in td.container_definitions.iter().enumerate() {
        check_container(i, c)?;
    }
    Ok(())
}

fn check_container(i: usize, c: &ContainerDefinition) -> Result<()> {
    let at = |f: &str| format!("containerDefinitions.{}.{f}", i + 1);
    for (field, why) in REFUSED_CONTAINER_FIELDS {
        if present(c.extra.get(*field)) {
            return Err(unsupported(&at(field), why));
        }
    }
    if let Some(reqs) = c.extra.get("resourceRequirements").and_then(Value::as_array)
        && let Some(kind) = reqs.iter().find_map(|r| r.get("type").and_then(Value::as_str))
    {
        return Err(unsupported(&at("resourceRequirements"), &format!("agents do not schedule {kind} devices")));
    }
    if let Some(log) = c.extra.get("logConfiguration") {
        let driver = log.get("logDriver").and_then(Value::as_str).unwrap_or_default();
        if driver != "awslogs" && !DOCKER_LOG_DRIVERS.contains(&driver) {
            return Err(unsupported(
                &format!("{}={driver}", at("logConfiguration.logDriver")),
                "use awslogs, or one of Docker's json-file, local, none, syslog, journald, gelf, fluentd",
            ));
        }
        if present(log.get("secretOptions")) {
            return Err(unsupported(&at("logConfiguration.secretOptions"), "log drivers get no secrets"));
        }
    }
    Ok(())
}

/// Fargate's own limits for a definition that requires FARGATE.
pub(crate) fn check_fargate(td: &TaskDefinition) -> Result<()> {
    let refuse = |what: String| Error::client(format!("Fargate does not support {what}."));
    for (i, v) in td.volumes.iter().enumerate() {
        let name = v.get("name").and_then(Value::as_str).unwrap_or_default();
        if present(v.get("host")) {
            return Err(refuse(format!("host volumes: volumes.{}.host (volume '{name}')", i + 1)));
        }
        if present(v.get("dockerVolumeConfiguration")) {
            return Err(refuse(format!(
                "Docker volumes: volumes.{}.dockerVolumeConfiguration (volume '{name}')",
                i + 1
            )));
        }
    }
    if present(td.extra.get("ipcMode")) {
        return Err(refuse("'ipcMode'".into()));
    }
    if td.extra.get("pidMode").and_then(Value::as_str) == Some("host") {
        return Err(refuse("pidMode=host".into()));
    }
    for (i, c) in td.container_definitions.iter().enumerate() {
        let at = |f: &str| format!("containerDefinitions.{}.{f}", i + 1);
        if c.extra.get("privileged").and_then(Value::as_bool) == Some(true) {
            return Err(refuse(format!("privileged containers: {}", at("privileged"))));
        }
        if present(c.extra.get("dockerSecurityOptions")) {
            return Err(refuse(format!("Docker security options: {}", at("dockerSecurityOptions"))));
        }
        if present(c.extra.get("links")) {
            return Err(refuse(format!("links: {}", at("links"))));
        }
        let linux = c.extra.get("linuxParameters");
        for f in ["devices", "sharedMemorySize", "tmpfs", "maxSwap", "swappiness"] {
            if present(linux.and_then(|l| l.get(f))) {
                return Err(refuse(format!("linuxParameters.{f}: {}", at(&format!("linuxParameters.{f}")))));
            }
        }
        let added = linux.and_then(|l| l.get("capabilities")).and_then(|c| c.get("add")).and_then(Value::as_array);
        if let Some(cap) = added.into_iter().flatten().filter_map(Value::as_str).find(|c| *c != "SYS_PTRACE") {
            return Err(refuse(format!(
                "adding the capability {cap} (only SYS_PTRACE): {}",
                at("linuxParameters.capabilities.add")
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn td(v: Value) -> TaskDefinition {
        let mut base = json!({
            "taskDefinitionArn": "arn", "family": "f", "revision": 1, "status": "ACTIVE",
            "containerDefinitions": [{"name": "web", "image": "x", "memory": 64}],
            "registeredAt": 0.0,
        });
        if let (Some(b), Some(extra)) = (base.as_object_mut(), v.as_object()) {
            for (k, val) in extra {
                b.insert(k.clone(), val.clone());
            }
        }
        serde_json::from_value(base).unwrap()
    }

    #[test]
    fn refused_fields_are_named() {
        let e = check_supported(&td(json!({"containerDefinitions": [{"name": "web", "image": "x",
            "environmentFiles": [{"value": "arn:aws:s3:::b/e.env", "type": "s3"}]}]})))
        .unwrap_err();
        assert!(e.to_string().contains("containerDefinitions.1.environmentFiles"), "{e}");
        let e = check_supported(&td(json!({"proxyConfiguration": {"containerName": "envoy"}}))).unwrap_err();
        assert!(e.to_string().contains("proxyConfiguration"));
        let ok = td(json!({"containerDefinitions": [{"name": "web", "image": "x",
            "logConfiguration": {"logDriver": "json-file", "options": {"max-size": "1m"}}}]}));
        assert!(check_supported(&ok).is_ok());
        let splunk = td(json!({"containerDefinitions": [{"name": "web", "image": "x",
            "logConfiguration": {"logDriver": "splunk"}}]}));
        assert!(check_supported(&splunk).unwrap_err().to_string().contains("splunk"));
    }

    #[test]
    fn fargate_limits() {
        let privileged = td(json!({"containerDefinitions": [{"name": "web", "image": "x", "privileged": true}]}));
        assert!(check_fargate(&privileged).unwrap_err().to_string().contains("privileged"));
        let host = td(json!({"volumes": [{"name": "v", "host": {"sourcePath": "/data"}}]}));
        assert!(check_fargate(&host).unwrap_err().to_string().contains("host volumes"));
        let ptrace = td(json!({"containerDefinitions": [{"name": "web", "image": "x",
            "linuxParameters": {"capabilities": {"add": ["SYS_PTRACE"]}}}]}));
        assert!(check_fargate(&ptrace).is_ok());
        let devices = td(json!({"containerDefinitions": [{"name": "web", "image": "x",
            "linuxParameters": {"devices": [{"hostPath": "/dev/fuse"}]}}]}));
        assert!(check_fargate(&devices).is_err());
    }
}
