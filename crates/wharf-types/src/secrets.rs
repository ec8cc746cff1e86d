//! The documents of the two secret stores: SSM Parameter Store parameters and Secrets
//! Manager secrets. Values of `SecureString` parameters and of secrets are stored sealed
//! (`wharf_core::Vault`), never in clear.

use crate::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// An SSM parameter with its retained versions (oldest first, at most 100).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Parameter {
    pub name: String,
    pub versions: Vec<ParameterVersion>,
    #[serde(default)]
    pub tags: BTreeMap<String, String>,
}

impl Parameter {
    pub fn latest(&self) -> Option<&ParameterVersion> {
        self.versions.last()
    }
    pub fn version(&self, n: i64) -> Option<&ParameterVersion> {
        self.versions.iter().find(|v| v.version == n)
    }
    pub fn labelled(&self, label: &str) -> Option<&ParameterVersion> {
        self.versions.iter().find(|v| v.labels.iter().any(|l| l == label))
    }
}

/// One version of a parameter: everything `PutParameter` set, as `GetParameterHistory`
/// reports it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParameterVersion {
    pub version: i64,
    /// `String`, `StringList` or `SecureString`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The value; for a `SecureString`, sealed.
    pub value: String,
    pub last_modified: Timestamp,
    pub last_modified_user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_pattern: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    pub tier: String,
    pub data_type: String,
    #[serde(default)]
    pub labels: Vec<String>,
}

/// A Secrets Manager secret and its versions.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    pub name: String,
    pub arn: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kms_key_id: Option<String>,
    pub created: Timestamp,
    pub last_changed: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_accessed: Option<Timestamp>,
    /// When a scheduled deletion takes effect (`DeleteSecret` with a recovery window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_date: Option<Timestamp>,
    #[serde(default)]
    pub tags: Vec<SecretTag>,
    /// Oldest first.
    pub versions: Vec<SecretVersion>,
}

impl Secret {
    /// The version holding staging label `stage`.
    pub fn staged(&self, stage: &str) -> Option<&SecretVersion> {
        self.versions.iter().find(|v| v.stages.iter().any(|s| s == stage))
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "PascalCase")]
pub struct SecretTag {
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretVersion {
    pub id: String,
    #[serde(default)]
    pub stages: Vec<String>,
    pub created: Timestamp,
    /// `SecretString`, sealed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub string: Option<String>,
    /// `SecretBinary`, sealed (of the raw bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
}
