//! The account's credentials (from the environment or generated once into the data dir) and
//! the `wharf` AWS CLI profile, so `aws --profile wharf …` works with no other setup.

use anyhow::{Context, bail};
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Where the key came from (not stored): the secret is printed only when it is new.
    #[serde(skip)]
    pub origin: Origin,
}

/// Where the account's key came from.
#[derive(Debug, Clone, Default)]
pub enum Origin {
    /// `WHARF_ACCESS_KEY_ID` / `WHARF_SECRET_ACCESS_KEY`.
    #[default]
    Environment,
    /// Read from this file in the data dir, generated on an earlier start.
    Stored(PathBuf),
    /// Generated on this start into this file.
    Generated(PathBuf),
}

pub fn default_data_dir() -> PathBuf {
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".wharf"),
        None => PathBuf::from(".wharf"),
    }
}

pub fn parse_account_id(s: &str) -> Result<String, String> {
    if s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit()) {
        Ok(s.to_string())
    } else {
        Err(format!("'{s}' is not a 12-digit AWS account id"))
    }
}

fn random(alphabet: &[u8], len: usize) -> String {
    let mut rng = rand::rng();
    (0..len).map(|_| char::from(alphabet[rng.random_range(0..alphabet.len())])).collect()
}

/// The environment's key when both variables are set; otherwise the one kept in the data
/// dir, generated on first start (mode 0600).
pub fn credentials(data_dir: &Path) -> anyhow::Result<Credentials> {
    if let (Ok(id), Ok(secret)) = (std::env::var("WHARF_ACCESS_KEY_ID"), std::env::var("WHARF_SECRET_ACCESS_KEY")) {
        if id.is_empty() || secret.is_empty() {
            bail!("WHARF_ACCESS_KEY_ID and WHARF_SECRET_ACCESS_KEY must not be empty");
        }
        return Ok(Credentials { access_key_id: id, secret_access_key: secret, origin: Origin::Environment });
    }
    let path = data_dir.join("credentials.json");
    if path.exists() {
        let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let mut creds: Credentials =
            serde_json::from_str(&text).with_context(|| format!("{} is not valid credentials JSON", path.display()))?;
        creds.origin = Origin::Stored(path);
        return Ok(creds);
    }
    let creds = Credentials {
        access_key_id: format!("AKIA{}", random(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)),
        secret_access_key: random(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 40),
        origin: Origin::Generated(path.clone()),
    };
    write_private(&path, &serde_json::to_string_pretty(&creds)?)?;
    Ok(creds)
}

/// Another account a server accepts, with its one access key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Account {
    pub account_id: String,
    pub access_key_id: String,
    pub secret_access_key: String,
}

/// The accounts of a JSON file (none when it does not exist), checked: 12-digit ids, key ids
/// that are unique and non-empty secrets.
pub fn read_accounts(path: &Path) -> anyhow::Result<Vec<Account>> {
    let text = match fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let accounts: Vec<Account> = serde_json::from_str(&text).with_context(|| {
        format!("{} is not a JSON list of {{accountId, accessKeyId, secretAccessKey}}", path.display())
    })?;
    let mut seen = std::collections::HashSet::new();
    for a in &accounts {
        parse_account_id(&a.account_id).map_err(anyhow::Error::msg).with_context(|| path.display().to_string())?;
        if a.access_key_id.is_empty() || a.secret_access_key.is_empty() {
            bail!("{}: account {} has an empty access key id or secret", path.display(), a.account_id);
        }
        if !seen.insert(a.access_key_id.clone()) {
            bail!("{}: access key id {} is listed twice", path.display(), a.access_key_id);
        }
    }
    Ok(accounts)
}

/// Adds an account with a fresh key to `<data-dir>/accounts.json` (mode 0600).
pub fn create_account(data_dir: &Path, account_id: &str) -> anyhow::Result<Account> {
    fs::create_dir_all(data_dir).with_context(|| format!("creating {}", data_dir.display()))?;
    let path = data_dir.join("accounts.json");
    let mut accounts = read_accounts(&path)?;
    if accounts.iter().any(|a| a.account_id == account_id) {
        bail!("account {account_id} already has a key in {}", path.display());
    }
    let account = Account {
        account_id: account_id.to_string(),
        access_key_id: format!("AKIA{}", random(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567", 16)),
        secret_access_key: random(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", 40),
    };
    accounts.push(account.clone());
    write_private(&path, &serde_json::to_string_pretty(&accounts)?)?;
    Ok(account)
}

fn write_private(path: &Path, text: &str) -> anyhow::Result<()> {
    wharf_store::files::write_private(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// Replaces (or appends) INI section `[name]` in `text` with `body` lines.
pub fn upsert_section(text: &str, name: &str, body: &[(String, String)]) -> String {
    let header = format!("[{name}]");
    let mut out = String::new();
    let mut skipping = false;
    let mut replaced = false;
    let section = || {
        let mut s = format!("{header}\n");
        for (k, v) in body {
            s.push_str(&format!("{k} = {v}\n"));
        }
        s
    };
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            skipping = trimmed == header;
            if skipping {
                out.push_str(&section());
                replaced = true;
                continue;
            }
        }
        if !skipping {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !replaced {
        if !out.is_empty() && !out.ends_with("\n\n") {
            out.push('\n');
        }
        out.push_str(&section());
    }
    out
}

/// Writes the `wharf` profile: endpoint and region into `~/.aws/config`, the key into
/// `~/.aws/credentials` (honouring AWS_CONFIG_FILE / AWS_SHARED_CREDENTIALS_FILE).
pub fn write_profile(endpoint: &str, region: &str, creds: &Credentials) -> anyhow::Result<(PathBuf, PathBuf)> {
    let home = std::env::var_os("HOME").map(PathBuf::from).context("HOME is not set; use --no-profile")?;
    let config = std::env::var_os("AWS_CONFIG_FILE").map(PathBuf::from).unwrap_or_else(|| home.join(".aws/config"));
    let credentials = std::env::var_os("AWS_SHARED_CREDENTIALS_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| home.join(".aws/credentials"));
    for (path, section, body) in [
        (
            &config,
            "profile wharf",
            vec![
                ("region".to_string(), region.to_string()),
                ("endpoint_url".to_string(), endpoint.to_string()),
                ("output".to_string(), "json".to_string()),
            ],
        ),
        (
            &credentials,
            "wharf",
            vec![
                ("aws_access_key_id".to_string(), creds.access_key_id.clone()),
                ("aws_secret_access_key".to_string(), creds.secret_access_key.clone()),
            ],
        ),
    ] {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = fs::read_to_string(path).unwrap_or_default();
        write_private(path, &upsert_section(&text, section, &body))?;
    }
    Ok((config, credentials))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upsert_replaces_only_its_section() {
        let text = "[default]\nregion = eu-west-1\n\n[profile wharf]\nregion = old\n\n[profile other]\nx = 1\n";
        let out = upsert_section(text, "profile wharf", &[("region".into(), "us-east-1".into())]);
        assert!(out.contains("[default]\nregion = eu-west-1"));
        assert!(out.contains("[profile wharf]\nregion = us-east-1\n"));
        assert!(!out.contains("old"));
        assert!(out.contains("[profile other]\nx = 1"));
        let fresh = upsert_section("", "wharf", &[("a".into(), "b".into())]);
        assert_eq!(fresh, "[wharf]\na = b\n");
    }

    #[test]
    fn account_ids_are_twelve_digits() {
        assert!(parse_account_id("123456789012").is_ok());
        assert!(parse_account_id("12345").is_err());
        assert!(parse_account_id("12345678901a").is_err());
    }
}
