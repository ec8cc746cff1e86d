//! A container's `secrets` and `repositoryCredentials`, resolved when its task starts, as the
//! ECS agent resolves them with the task execution role: SSM parameters through
//! `GetParameters` (decrypted), Secrets Manager secrets through `GetSecretValue`, with the
//! `:json-key:version-stage:version-id` suffix of a secret ARN picking one JSON key of one
//! version. Values go only into the container's environment (or the pull's credentials);
//! nothing here is logged or reported.

use crate::client::{Client, ClientError};
use crate::runtime::RegistryAuth;
use serde_json::{Value, json};
use wharf_types::Arn;
use wharf_types::ecs::ContainerDefinition;

/// ECS's stop reason prefix for a task whose secrets or registry credentials could not be read.
const PREFIX: &str =
    "ResourceInitializationError: unable to pull secrets or registry auth: execution resource retrieval failed";

/// SSM reads at most ten names per `GetParameters`.
const SSM_BATCH: usize = 10;

/// Where one `valueFrom` points.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// An SSM parameter: its name or ARN, and the region to ask.
    Parameter { name: String, region: String },
    /// A Secrets Manager secret and the part of it wanted.
    Secret { id: String, region: String, json_key: Option<String>, stage: Option<String>, version: Option<String> },
}

fn source(value_from: &str, region: &str) -> Source {
    match Arn::parse(value_from) {
        Some(arn) if arn.service == "secretsmanager" => {
            // secret:<name-suffix>[:json-key[:version-stage[:version-id]]]
            let rest = arn.resource.strip_prefix("secret:").unwrap_or(&arn.resource);
            let mut parts = rest.split(':');
            let name = parts.next().unwrap_or_default();
            let field = |p: Option<&str>| p.filter(|s| !s.is_empty()).map(str::to_string);
            let (json_key, stage, version) = (field(parts.next()), field(parts.next()), field(parts.next()));
            let id = format!("arn:{}:secretsmanager:{}:{}:secret:{name}", arn.partition, arn.region, arn.account);
            Source::Secret { id, region: arn.region, json_key, stage, version }
        }
        Some(arn) => Source::Parameter { name: value_from.to_string(), region: arn.region },
        None => Source::Parameter { name: value_from.to_string(), region: region.to_string() },
    }
}

/// The `(name, value)` pairs of `def`'s `secrets`, or ECS's stop reason when one cannot be
/// read.
pub(crate) async fn environment(client: &Client, def: &ContainerDefinition) -> Result<Vec<(String, String)>, String> {
    let Some(list) = def.extra.get("secrets").and_then(Value::as_array) else { return Ok(vec![]) };
    let wanted: Vec<(String, Source)> = list
        .iter()
        .filter_map(|s| {
            let name = s.get("name")?.as_str()?;
            let from = s.get("valueFrom")?.as_str()?;
            Some((name.to_string(), source(from, client.region())))
        })
        .collect();
    let mut env = Vec::with_capacity(wanted.len());
    // Parameters by region, fetched ten at a time.
    let mut parameters: std::collections::BTreeMap<&str, Vec<&str>> = Default::default();
    for (_, s) in &wanted {
        if let Source::Parameter { name, region } = s {
            parameters.entry(region.as_str()).or_default().push(name.as_str());
        }
    }
    let mut values = std::collections::HashMap::new();
    for (region, names) in parameters {
        for batch in names.chunks(SSM_BATCH) {
            let out = client
                .ssm(region, "GetParameters", &json!({"Names": batch, "WithDecryption": true}))
                .await
                .map_err(|e| format!("{PREFIX}: unable to retrieve secrets from ssm: {e}"))?;
            let invalid: Vec<&str> = out
                .get("InvalidParameters")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            if !invalid.is_empty() {
                return Err(format!(
                    "{PREFIX}: unable to retrieve secrets from ssm: invalid parameters: {}",
                    invalid.join(", ")
                ));
            }
            for p in out.get("Parameters").and_then(Value::as_array).into_iter().flatten() {
                let (Some(name), Some(arn), Some(value)) = (
                    p.get("Name").and_then(Value::as_str),
                    p.get("ARN").and_then(Value::as_str),
                    p.get("Value").and_then(Value::as_str),
                ) else {
                    continue;
                };
                values.insert(name.to_string(), value.to_string());
                values.insert(arn.to_string(), value.to_string());
            }
        }
    }
    for (name, s) in wanted {
        let value = match s {
            Source::Parameter { name: p, .. } => values
                .get(&p)
                .or_else(|| values.get(&format!("/{p}")))
                .cloned()
                .ok_or_else(|| format!("{PREFIX}: unable to retrieve secrets from ssm: invalid parameters: {p}"))?,
            Source::Secret { id, region, json_key, stage, version } => {
                let fail = |why: String| {
                    format!(
                        "{PREFIX}: unable to retrieve secret from asm: failed to fetch secret {id} from secrets manager: {why}"
                    )
                };
                let string = secret_string(client, &region, &id, stage.as_deref(), version.as_deref())
                    .await
                    .map_err(|e| fail(e.to_string()))?
                    .ok_or_else(|| fail("the secret holds a binary value, not a string".into()))?;
                match json_key {
                    None => string,
                    Some(key) => {
                        let doc: Value = serde_json::from_str(&string)
                            .map_err(|_| fail(format!("the secret is not JSON, so it has no key {key}")))?;
                        match doc.get(&key) {
                            Some(Value::String(s)) => s.clone(),
                            Some(other) => other.to_string(),
                            None => {
                                return Err(fail(format!(
                                    "retrieved secret from Secrets Manager did not contain json key {key}"
                                )));
                            }
                        }
                    }
                }
            }
        };
        env.push((name, value));
    }
    Ok(env)
}

async fn secret_string(
    client: &Client,
    region: &str,
    id: &str,
    stage: Option<&str>,
    version: Option<&str>,
) -> Result<Option<String>, ClientError> {
    let mut req = json!({"SecretId": id});
    if let Some(s) = stage {
        req["VersionStage"] = json!(s);
    }
    if let Some(v) = version {
        req["VersionId"] = json!(v);
    }
    let out = client.secrets_manager(region, "GetSecretValue", &req).await?;
    Ok(out.get("SecretString").and_then(Value::as_str).map(str::to_string))
}

/// The private-registry credentials `def.repositoryCredentials` names (a Secrets Manager
/// secret holding `{"username": …, "password": …}`), for pulling `image`.
pub(crate) async fn repository_credentials(
    client: &Client,
    def: &ContainerDefinition,
    image: &str,
) -> Result<Option<RegistryAuth>, String> {
    let Some(arn) =
        def.extra.get("repositoryCredentials").and_then(|r| r.get("credentialsParameter")).and_then(Value::as_str)
    else {
        return Ok(None);
    };
    let fail = |why: String| {
        format!(
            "{PREFIX}: unable to retrieve secret from asm: failed to fetch secret {arn} from secrets manager: {why}"
        )
    };
    let region = Arn::parse(arn).map_or_else(|| client.region().to_string(), |a| a.region);
    let string = secret_string(client, &region, arn, None, None)
        .await
        .map_err(|e| fail(e.to_string()))?
        .ok_or_else(|| fail("the secret holds a binary value, not a string".into()))?;
    let doc: Value = serde_json::from_str(&string).map_err(|_| fail("the secret is not JSON".into()))?;
    let field = |k: &str| doc.get(k).and_then(Value::as_str).map(str::to_string);
    let (Some(username), Some(password)) = (field("username"), field("password")) else {
        return Err(fail("the secret must hold the keys username and password".into()));
    };
    let server = crate::registry_auth::registry_host(image).unwrap_or("docker.io").to_string();
    Ok(Some(RegistryAuth { username, password, server }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn value_from_forms() {
        assert_eq!(
            source("/app/db/password", "us-west-2"),
            Source::Parameter { name: "/app/db/password".into(), region: "us-west-2".into() }
        );
        assert_eq!(
            source("arn:aws:ssm:eu-west-1:123456789012:parameter/app/db", "us-west-2"),
            Source::Parameter {
                name: "arn:aws:ssm:eu-west-1:123456789012:parameter/app/db".into(),
                region: "eu-west-1".into()
            }
        );
        let arn = "arn:aws:secretsmanager:ap-northeast-2:123456789012:secret:api-AbCdEf";
        assert_eq!(
            source(&format!("{arn}:API_KEY::"), "us-west-2"),
            Source::Secret {
                id: arn.into(),
                region: "ap-northeast-2".into(),
                json_key: Some("API_KEY".into()),
                stage: None,
                version: None
            }
        );
        assert_eq!(
            source(&format!("{arn}::AWSPREVIOUS:"), "x"),
            Source::Secret {
                id: arn.into(),
                region: "ap-northeast-2".into(),
                json_key: None,
                stage: Some("AWSPREVIOUS".into()),
                version: None
            }
        );
        assert_eq!(
            source(arn, "x"),
            Source::Secret {
                id: arn.into(),
                region: "ap-northeast-2".into(),
                json_key: None,
                stage: None,
                version: None
            }
        );
    }
}
