//! The tenant registry file and API key checks.
//!
//! File format (TOML), written by `capsight-admin tenant ...`:
//! ```toml
//! [[tenants]]
//! id = "acme"
//! name = "Acme AI"
//! rate_per_minute = 600          # optional
//! zone_map = { "us-east-1a" = "use1-az4" }   # optional: this tenant's AWS AZ names -> AZ IDs
//! [[tenants.keys]]
//! key_id = "3f9a1c2b"
//! sha256 = "<hex of the secret's SHA-256>"
//! created_at = "2026-11-23T12:00:00Z"
//! revoked = false
//! ```

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// A tenant's id: 1-64 of `[a-z0-9_-]`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TenantId(String);

impl TenantId {
    /// Validates a tenant id.
    pub fn parse(text: &str) -> Result<Self, RegistryError> {
        let ok = !text.is_empty()
            && text.len() <= 64
            && text
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
            && text.starts_with(|c: char| c.is_ascii_alphanumeric());
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(RegistryError::InvalidTenantId(text.to_owned()))
        }
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for TenantId {
    type Error = RegistryError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::parse(&s)
    }
}

impl From<TenantId> for String {
    fn from(t: TenantId) -> Self {
        t.0
    }
}

impl std::fmt::Display for TenantId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Registry errors.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// Reading or writing the file failed.
    #[error("tenant registry {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file does not parse.
    #[error("tenant registry {path}: {reason}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A tenant id is malformed.
    #[error("invalid tenant id {0:?}: use 1-64 of a-z 0-9 - _")]
    InvalidTenantId(String),
    /// No such tenant.
    #[error("no tenant {0}")]
    UnknownTenant(String),
    /// The tenant exists already.
    #[error("tenant {0} exists already")]
    DuplicateTenant(String),
    /// A registered value is malformed (the message names the field).
    #[error("{0}")]
    Invalid(String),
    /// No such key.
    #[error("tenant {tenant} has no key {key_id}")]
    UnknownKey {
        /// The tenant.
        tenant: String,
        /// The key id.
        key_id: String,
    },
}

/// One API key, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyRecord {
    /// Public part of the key (8 hex chars).
    pub key_id: String,
    /// SHA-256 of the secret part, hex.
    pub sha256: String,
    /// When it was issued (RFC 3339).
    pub created_at: String,
    /// Revoked keys never authenticate.
    #[serde(default)]
    pub revoked: bool,
}

/// One tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tenant {
    /// The tenant id.
    pub id: TenantId,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// Requests per minute; the service default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_minute: Option<u32>,
    /// This tenant's AWS AZ names mapped to AZ IDs (names are shuffled per account).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub zone_map: BTreeMap<String, String>,
    /// The role capsight assumes in the tenant's own cloud account for account checks
    /// (preflight permission and quota) and launches; never the operator's credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_role: Option<CloudRole>,
    /// The tenant's Lambda Cloud account: where capsight finds the tenant's API key and the
    /// account's instance limit (preflight permission and quota on Lambda).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lambda: Option<LambdaAccount>,
    /// The tenant's Google Cloud project: its id and where capsight finds the tenant's
    /// service-account key file (preflight permission and quota, launches on GCP).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gcp: Option<GcpAccount>,
    /// The tenant's Azure subscription: the app registration capsight acts as (its client
    /// secret found by variable name), for preflight and launches on Azure.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub azure: Option<AzureAccount>,
    /// The tenant's RunPod account: where capsight finds the tenant's API key and the
    /// account's GPU limit (preflight permission and quota on RunPod, launches).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runpod: Option<RunPodAccount>,
    /// Most GPUs the tenant's live launches (provisioning or running) may hold together;
    /// preflight and the launcher refuse a launch over it. `None` = `tenancy.default_gpu_quota`
    /// ([`Tenant::gpu_quota_or`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_quota: Option<u32>,
    /// Most gRPC server streams the tenant may hold open at once; the gateway's
    /// `max_open_streams_per_tenant` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_open_streams: Option<u32>,
    /// API keys.
    #[serde(default)]
    pub keys: Vec<ApiKeyRecord>,
}

/// Whether `suffix` is what follows the region in an AWS AZ name (`a`, or `-bos-1a` for a
/// Local Zone).
fn is_zone_suffix(suffix: &str) -> bool {
    !suffix.is_empty()
        && suffix
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

impl Tenant {
    /// The GPU quota that applies: the tenant's own, else `default` (0 = no quota: `None`).
    pub fn gpu_quota_or(&self, default: u32) -> Option<u32> {
        self.gpu_quota.or((default > 0).then_some(default))
    }
}

/// An AWS IAM role in a tenant's account, assumed with an external id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CloudRole {
    /// `arn:aws:iam::<account>:role/<name>`.
    pub role_arn: String,
    /// The external id capsight generated for the tenant (confused-deputy protection).
    pub external_id: String,
}

/// A tenant's Lambda Cloud account. The API key itself is never in the registry: it is the
/// value of the environment variable `api_key_env` of the services that act for the tenant
/// (a Kubernetes Secret), so the registry file holds no cloud credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LambdaAccount {
    /// The environment variable holding the tenant's Lambda API key, e.g.
    /// `CAPSIGHT_LAMBDA_KEY_ACME`: uppercase letters, digits and `_`.
    pub api_key_env: String,
    /// The account's instance limit (Lambda has no quota API: the tenant states it, from its
    /// Lambda dashboard or support).
    pub instance_limit: u32,
}

impl CloudAccount for LambdaAccount {
    fn slot(tenant: &mut Tenant) -> &mut Option<Self> {
        &mut tenant.lambda
    }

    /// Checks `api_key_env` names an environment variable (`[A-Z_][A-Z0-9_]*`, at most 64).
    fn validate(&self) -> Result<(), RegistryError> {
        env_var_name("lambda.api_key_env", &self.api_key_env)
    }
}

/// A tenant's RunPod account. As for Lambda, the API key is never in the registry: it is the
/// value of the environment variable `api_key_env` of the services that act for the tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunPodAccount {
    /// The environment variable holding the tenant's RunPod API key, e.g.
    /// `CAPSIGHT_RUNPOD_KEY_ACME`: uppercase letters, digits and `_`.
    pub api_key_env: String,
    /// The most GPUs the account's pods may hold at once (RunPod has no quota API: the tenant
    /// states it, from its RunPod account or support).
    pub gpu_limit: u32,
}

impl CloudAccount for RunPodAccount {
    fn slot(tenant: &mut Tenant) -> &mut Option<Self> {
        &mut tenant.runpod
    }

    /// Checks `api_key_env` names an environment variable (`[A-Z_][A-Z0-9_]*`, at most 64).
    fn validate(&self) -> Result<(), RegistryError> {
        env_var_name("runpod.api_key_env", &self.api_key_env)
    }
}

/// `Ok` when `name` can be an environment variable name (`[A-Z_][A-Z0-9_]*`, at most 64);
/// otherwise the error names `field`.
fn env_var_name(field: &str, name: &str) -> Result<(), RegistryError> {
    if is_env_name(name) {
        Ok(())
    } else {
        Err(RegistryError::Invalid(format!(
            "{field} {name:?} must be an environment variable name ([A-Z_][A-Z0-9_]*)"
        )))
    }
}

/// A tenant's Azure subscription and the Entra ID app registration capsight acts as in it.
/// The client secret is never in the registry: it is the value of the environment variable
/// `client_secret_env` of the services that act for the tenant (a Kubernetes Secret).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureAccount {
    /// The Entra ID tenant (directory) id of the app registration.
    pub tenant_id: String,
    /// The app registration's client (application) id.
    pub client_id: String,
    /// The subscription capsight checks and launches in.
    pub subscription_id: String,
    /// The resource group launched VMs go to (the app needs a role on it).
    pub resource_group: String,
    /// The environment variable holding the client secret, e.g. `CAPSIGHT_AZURE_SECRET_ACME`.
    pub client_secret_env: String,
}

impl CloudAccount for AzureAccount {
    fn slot(tenant: &mut Tenant) -> &mut Option<Self> {
        &mut tenant.azure
    }

    /// Checks every field: ids are GUID-like (hex digits and `-`, 1-64), the resource group is
    /// 1-90 of `[A-Za-z0-9._()-]`, the secret variable an environment variable name.
    fn validate(&self) -> Result<(), RegistryError> {
        let id = |field: &str, v: &str| {
            let ok = !v.is_empty()
                && v.len() <= 64
                && v.chars().all(|c| c.is_ascii_hexdigit() || c == '-');
            if ok {
                Ok(())
            } else {
                Err(RegistryError::Invalid(format!(
                    "{field} {v:?} must be an Azure id (hex digits and -, e.g. 00000000-0000-0000-0000-000000000000)"
                )))
            }
        };
        id("azure.tenant_id", &self.tenant_id)?;
        id("azure.client_id", &self.client_id)?;
        id("azure.subscription_id", &self.subscription_id)?;
        let rg = &self.resource_group;
        let rg_ok = !rg.is_empty()
            && rg.len() <= 90
            && rg
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '(' | ')' | '-'))
            && !rg.ends_with('.');
        if !rg_ok {
            return Err(RegistryError::Invalid(format!(
                "azure.resource_group {rg:?} must be 1-90 characters of [A-Za-z0-9._()-], not ending with ."
            )));
        }
        env_var_name("azure.client_secret_env", &self.client_secret_env)
    }
}

/// Whether `name` can name an environment variable: `[A-Z_][A-Z0-9_]*`, at most 64.
fn is_env_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_uppercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}

/// A tenant's Google Cloud project. The service-account key is never in the registry, nor its
/// path: `credentials_env` names the environment variable of the services that act for the
/// tenant whose value is the path of the key file (a mounted Kubernetes Secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcpAccount {
    /// The project id (`acme-ml`): 6-30 lowercase letters, digits and hyphens, starting with a
    /// letter.
    pub project_id: String,
    /// The environment variable holding the path of the tenant's service-account JSON key
    /// file, e.g. `CAPSIGHT_GCP_CREDENTIALS_ACME`.
    pub credentials_env: String,
}

impl CloudAccount for GcpAccount {
    fn slot(tenant: &mut Tenant) -> &mut Option<Self> {
        &mut tenant.gcp
    }

    /// Checks the project id and that `credentials_env` names an environment variable.
    fn validate(&self) -> Result<(), RegistryError> {
        let p = &self.project_id;
        let project_ok = (6..=30).contains(&p.len())
            && p.starts_with(|c: char| c.is_ascii_lowercase())
            && !p.ends_with('-')
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !project_ok {
            return Err(RegistryError::Invalid(format!(
                "gcp.project_id {p:?} must be a GCP project id (6-30 of [a-z0-9-], starting with a letter)"
            )));
        }
        env_var_name("gcp.credentials_env", &self.credentials_env)
    }
}

/// A tenant's account with a cloud other than AWS, as the registry stores it: checked before
/// it is stored, in its own slot of the tenant.
pub trait CloudAccount: Sized {
    /// Checks every field; the error names the field.
    fn validate(&self) -> Result<(), RegistryError>;
    /// The tenant's slot for this cloud's account.
    fn slot(tenant: &mut Tenant) -> &mut Option<Self>;
}

/// A fresh external id: `capsight-` and 32 random hex digits, unique per tenant and not
/// guessable, so no other customer of capsight can make capsight assume the tenant's role.
fn new_external_id() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    format!("capsight-{}", hex::encode(bytes))
}

/// The registry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Registry {
    /// All tenants.
    #[serde(default)]
    pub tenants: Vec<Tenant>,
}

/// A newly issued key: the full key text is shown once.
#[derive(Debug, Clone)]
pub struct IssuedKey {
    /// The key id.
    pub key_id: String,
    /// `csk_<key id>_<secret>`.
    pub key: String,
}

/// The result of a successful authentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    /// Who.
    pub tenant: TenantId,
    /// With which key.
    pub key_id: String,
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

impl Registry {
    /// Reads the registry; a missing file is an empty registry.
    pub fn load(path: &Path) -> Result<Self, RegistryError> {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::parse(path, &text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(RegistryError::Io {
                path: path.to_owned(),
                source,
            }),
        }
    }

    fn parse(path: &Path, text: &str) -> Result<Self, RegistryError> {
        let reg: Self = toml::from_str(text).map_err(|e| RegistryError::Parse {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        let mut seen = std::collections::BTreeSet::new();
        for t in &reg.tenants {
            if !seen.insert(&t.id) {
                return Err(RegistryError::Parse {
                    path: path.to_owned(),
                    reason: format!("tenant {} appears twice", t.id),
                });
            }
            let checked = t
                .lambda
                .as_ref()
                .map(LambdaAccount::validate)
                .into_iter()
                .chain(t.runpod.as_ref().map(RunPodAccount::validate))
                .chain(t.gcp.as_ref().map(GcpAccount::validate))
                .chain(t.azure.as_ref().map(AzureAccount::validate));
            for result in checked {
                if let Err(e) = result {
                    return Err(RegistryError::Parse {
                        path: path.to_owned(),
                        reason: format!("tenant {}: {e}", t.id),
                    });
                }
            }
        }
        Ok(reg)
    }

    /// Writes the registry atomically (temp file + rename), readable by the owner only.
    pub fn save(&self, path: &Path) -> Result<(), RegistryError> {
        let io = |source| RegistryError::Io {
            path: path.to_owned(),
            source,
        };
        let text = toml::to_string_pretty(self).map_err(|e| RegistryError::Parse {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(io)?;
        }
        let tmp = path.with_extension("toml.tmp");
        std::fs::write(&tmp, text).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o600)).map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)
    }

    /// The tenant with `id`.
    pub fn tenant(&self, id: &TenantId) -> Option<&Tenant> {
        self.tenants.iter().find(|t| &t.id == id)
    }

    fn tenant_mut(&mut self, id: &TenantId) -> Result<&mut Tenant, RegistryError> {
        self.tenants
            .iter_mut()
            .find(|t| &t.id == id)
            .ok_or_else(|| RegistryError::UnknownTenant(id.to_string()))
    }

    /// Adds a tenant without keys.
    pub fn add_tenant(&mut self, id: TenantId, name: &str) -> Result<(), RegistryError> {
        if self.tenant(&id).is_some() {
            return Err(RegistryError::DuplicateTenant(id.to_string()));
        }
        self.tenants.push(Tenant {
            id,
            name: name.to_owned(),
            rate_per_minute: None,
            zone_map: BTreeMap::new(),
            aws_role: None,
            lambda: None,
            gcp: None,
            azure: None,
            runpod: None,
            gpu_quota: None,
            max_open_streams: None,
            keys: Vec::new(),
        });
        Ok(())
    }

    /// Sets (or with `None` clears) the AWS role capsight assumes in `tenant`'s account.
    pub fn set_aws_role(
        &mut self,
        tenant: &TenantId,
        role: Option<CloudRole>,
    ) -> Result<(), RegistryError> {
        self.tenant_mut(tenant)?.aws_role = role;
        Ok(())
    }

    /// Sets (or with `None` clears) `tenant`'s account with the cloud of `A` (Google Cloud,
    /// Azure, Lambda or RunPod), checked first.
    pub fn set_account<A: CloudAccount>(
        &mut self,
        tenant: &TenantId,
        account: Option<A>,
    ) -> Result<(), RegistryError> {
        if let Some(a) = &account {
            a.validate()?;
        }
        *A::slot(self.tenant_mut(tenant)?) = account;
        Ok(())
    }

    /// Sets the AWS role capsight assumes in `tenant`'s account, keeping the external id
    /// capsight generated for the tenant; a new one is generated when the tenant has none or
    /// `rotate` is set. Returns the external id when it is new (show it to the tenant once:
    /// it goes into the role's trust policy), `None` when it is kept.
    pub fn register_aws_role(
        &mut self,
        tenant: &TenantId,
        role_arn: String,
        rotate: bool,
    ) -> Result<Option<String>, RegistryError> {
        let t = self.tenant_mut(tenant)?;
        let kept = t
            .aws_role
            .as_ref()
            .filter(|r| !rotate && !r.external_id.is_empty())
            .map(|r| r.external_id.clone());
        let fresh = kept.is_none().then(new_external_id);
        let external_id = kept.or_else(|| fresh.clone()).unwrap_or_default();
        t.aws_role = Some(CloudRole {
            role_arn,
            external_id,
        });
        Ok(fresh)
    }

    /// Replaces `tenant`'s AZ names of `region` (names are `<region><letter>`) with `names`
    /// (AZ name -> AZ ID, as the tenant's account's DescribeAvailabilityZones lists them); the
    /// names of other regions are kept. Returns whether anything changed.
    pub fn set_zone_names(
        &mut self,
        tenant: &TenantId,
        region: &str,
        names: impl IntoIterator<Item = (String, String)>,
    ) -> Result<bool, RegistryError> {
        let map = &mut self.tenant_mut(tenant)?.zone_map;
        let before = map.clone();
        map.retain(|name, _| !name.strip_prefix(region).is_some_and(is_zone_suffix));
        map.extend(names);
        Ok(*map != before)
    }

    /// Sets (or with `None` removes) `tenant`'s GPU quota.
    pub fn set_gpu_quota(
        &mut self,
        tenant: &TenantId,
        gpus: Option<u32>,
    ) -> Result<(), RegistryError> {
        self.tenant_mut(tenant)?.gpu_quota = gpus;
        Ok(())
    }

    /// Issues a new key for `tenant`; only its hash is kept.
    pub fn issue_key(&mut self, tenant: &TenantId) -> Result<IssuedKey, RegistryError> {
        let mut rng = rand::rng();
        let mut id = [0u8; 4];
        let mut secret = [0u8; 24];
        rng.fill_bytes(&mut id);
        rng.fill_bytes(&mut secret);
        let key_id = hex::encode(id);
        let secret = hex::encode(secret);
        let t = self.tenant_mut(tenant)?;
        t.keys.push(ApiKeyRecord {
            key_id: key_id.clone(),
            sha256: sha256_hex(&secret),
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            revoked: false,
        });
        Ok(IssuedKey {
            key: format!("csk_{key_id}_{secret}"),
            key_id,
        })
    }

    /// Revokes one key of `tenant`.
    pub fn revoke_key(&mut self, tenant: &TenantId, key_id: &str) -> Result<(), RegistryError> {
        let t = self.tenant_mut(tenant)?;
        let key = t
            .keys
            .iter_mut()
            .find(|k| k.key_id == key_id)
            .ok_or_else(|| RegistryError::UnknownKey {
                tenant: tenant.to_string(),
                key_id: key_id.to_owned(),
            })?;
        key.revoked = true;
        Ok(())
    }

    /// Checks an API key; `None` for anything malformed, unknown or revoked (callers answer
    /// "unauthenticated" without saying which).
    pub fn authenticate(&self, api_key: &str) -> Option<Authenticated> {
        let rest = api_key.strip_prefix("csk_")?;
        let (key_id, secret) = rest.split_once('_')?;
        let hash = sha256_hex(secret);
        self.tenants.iter().find_map(|t| {
            t.keys
                .iter()
                .find(|k| {
                    !k.revoked
                        && k.key_id == key_id
                        && bool::from(k.sha256.as_bytes().ct_eq(hash.as_bytes()))
                })
                .map(|k| Authenticated {
                    tenant: t.id.clone(),
                    key_id: k.key_id.clone(),
                })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> TenantId {
        TenantId::parse(s).unwrap()
    }

    #[test]
    fn a_gcp_account_names_a_project_and_an_environment_variable_never_a_key() {
        let mut reg = Registry::default();
        reg.add_tenant(id("acme"), "Acme").unwrap();
        let account = |project: &str, env: &str| {
            Some(GcpAccount {
                project_id: project.into(),
                credentials_env: env.into(),
            })
        };
        for (project, env) in [
            ("acme-ml", "/etc/keys/acme.json"),
            ("acme-ml", "{\"private_key\": \"x\"}"),
            ("Acme_ML", "CAPSIGHT_GCP_ACME"),
            ("ab", "CAPSIGHT_GCP_ACME"),
        ] {
            assert!(
                reg.set_account(&id("acme"), account(project, env)).is_err(),
                "{project} {env}"
            );
        }
        reg.set_account(&id("acme"), account("acme-ml", "CAPSIGHT_GCP_ACME"))
            .unwrap();
        assert_eq!(
            reg.tenant(&id("acme"))
                .unwrap()
                .gcp
                .as_ref()
                .unwrap()
                .project_id,
            "acme-ml"
        );
    }

    #[test]
    fn an_azure_account_names_an_environment_variable_never_a_secret() {
        let mut reg = Registry::default();
        reg.add_tenant(id("acme"), "Acme").unwrap();
        let account = |secret_env: &str, subscription: &str, rg: &str| AzureAccount {
            tenant_id: "11111111-1111-1111-1111-111111111111".into(),
            client_id: "aaaaaaaa-0000-0000-0000-000000000001".into(),
            subscription_id: subscription.into(),
            resource_group: rg.into(),
            client_secret_env: secret_env.into(),
        };
        let sub = "00000000-0000-0000-0000-0000000000a1";
        for bad in [
            account("a-secret-value~", sub, "capsight"),
            account(
                "CAPSIGHT_AZURE_SECRET_ACME",
                "not a subscription",
                "capsight",
            ),
            account("CAPSIGHT_AZURE_SECRET_ACME", sub, "bad/group"),
            account("CAPSIGHT_AZURE_SECRET_ACME", sub, ""),
        ] {
            assert!(reg.set_account(&id("acme"), Some(bad)).is_err());
        }
        let good = account("CAPSIGHT_AZURE_SECRET_ACME", sub, "capsight-gpu");
        reg.set_account(&id("acme"), Some(good.clone())).unwrap();
        assert_eq!(reg.tenants[0].azure.as_ref(), Some(&good));
        reg.set_account::<AzureAccount>(&id("acme"), None).unwrap();
        assert!(reg.tenants[0].azure.is_none());
    }

    #[test]
    fn a_lambda_account_names_an_environment_variable_never_a_key() {
        let mut reg = Registry::default();
        reg.add_tenant(id("acme"), "Acme").unwrap();
        let account = |env: &str| {
            Some(LambdaAccount {
                api_key_env: env.into(),
                instance_limit: 4,
            })
        };
        for bad in ["", "lower", "1ABC", "WITH SPACE", "secret_abc123"] {
            assert!(
                reg.set_account(&id("acme"), account(bad)).is_err(),
                "{bad:?}"
            );
        }
        reg.set_account(&id("acme"), account("CAPSIGHT_LAMBDA_KEY_ACME"))
            .unwrap();
        let text = toml::to_string(&reg).unwrap();
        let back = Registry::parse(Path::new("t.toml"), &text).unwrap();
        assert_eq!(
            back.tenant(&id("acme"))
                .unwrap()
                .lambda
                .as_ref()
                .unwrap()
                .instance_limit,
            4
        );
        // a file with a malformed name is refused at load
        let broken = text.replace("CAPSIGHT_LAMBDA_KEY_ACME", "not a name");
        assert!(Registry::parse(Path::new("t.toml"), &broken).is_err());
    }

    #[test]
    fn a_runpod_account_names_an_environment_variable_never_a_key() {
        let mut reg = Registry::default();
        reg.add_tenant(id("acme"), "Acme").unwrap();
        let account = |env: &str| {
            Some(RunPodAccount {
                api_key_env: env.into(),
                gpu_limit: 8,
            })
        };
        for bad in ["", "lower", "1ABC", "rpa_0123456789ABCDEF"] {
            let e = reg.set_account(&id("acme"), account(bad)).unwrap_err();
            assert!(e.to_string().contains("runpod.api_key_env"), "{e}");
        }
        reg.set_account(&id("acme"), account("CAPSIGHT_RUNPOD_KEY_ACME"))
            .unwrap();
        let text = toml::to_string(&reg).unwrap();
        let back = Registry::parse(Path::new("t.toml"), &text).unwrap();
        let runpod = back.tenant(&id("acme")).unwrap().runpod.clone().unwrap();
        assert_eq!(runpod.gpu_limit, 8);
        let broken = text.replace("CAPSIGHT_RUNPOD_KEY_ACME", "rpa_secret");
        assert!(Registry::parse(Path::new("t.toml"), &broken).is_err());
        reg.set_account::<RunPodAccount>(&id("acme"), None).unwrap();
        assert!(reg.tenant(&id("acme")).unwrap().runpod.is_none());
    }

    #[test]
    fn issued_keys_authenticate_until_revoked() {
        let mut reg = Registry::default();
        reg.add_tenant(id("acme"), "Acme").unwrap();
        let key = reg.issue_key(&id("acme")).unwrap();
        let auth = reg.authenticate(&key.key).unwrap();
        assert_eq!(auth.tenant, id("acme"));
        // the stored record never holds the secret
        let stored = toml::to_string(&reg).unwrap();
        assert!(!stored.contains(key.key.rsplit('_').next().unwrap()));
        // tampered, malformed and revoked keys fail
        let mut tampered = key.key.clone();
        tampered.pop();
        tampered.push('x');
        assert!(reg.authenticate(&tampered).is_none());
        assert!(reg.authenticate("nope").is_none());
        assert!(reg.authenticate("csk_").is_none());
        reg.revoke_key(&id("acme"), &key.key_id).unwrap();
        assert!(reg.authenticate(&key.key).is_none());
    }

    #[test]
    fn save_and_load_round_trip_and_reject_garbage() {
        let dir = std::env::temp_dir().join(format!("tenancy-{}", uuid::Uuid::new_v4()));
        let path = dir.join("tenants.toml");
        assert_eq!(Registry::load(&path).unwrap(), Registry::default());
        let mut reg = Registry::default();
        reg.add_tenant(id("acme"), "Acme").unwrap();
        reg.tenants[0]
            .zone_map
            .insert("us-east-1a".into(), "use1-az4".into());
        reg.issue_key(&id("acme")).unwrap();
        reg.save(&path).unwrap();
        assert_eq!(Registry::load(&path).unwrap(), reg);
        std::fs::write(&path, "[[tenants]]\nid = \"Bad Id\"\n").unwrap();
        assert!(Registry::load(&path).is_err());
        std::fs::remove_dir_all(dir).unwrap();
        assert!(matches!(
            reg.add_tenant(id("acme"), "again"),
            Err(RegistryError::DuplicateTenant(_))
        ));
        assert!(TenantId::parse("").is_err());
    }

    #[test]
    fn external_ids_are_generated_unique_kept_and_rotated_on_request() {
        let mut reg = Registry::default();
        reg.add_tenant(id("acme"), "Acme").unwrap();
        reg.add_tenant(id("globex"), "Globex").unwrap();
        let arn = "arn:aws:iam::123456789012:role/capsight".to_owned();
        let first = reg
            .register_aws_role(&id("acme"), arn.clone(), false)
            .unwrap()
            .unwrap();
        assert!(
            first.starts_with("capsight-") && first.len() == 41,
            "{first}"
        );
        // re-registering (a new role name) keeps the id the tenant already trusts
        let again = reg
            .register_aws_role(&id("acme"), format!("{arn}2"), false)
            .unwrap();
        assert_eq!(again, None);
        let role = reg.tenant(&id("acme")).unwrap().aws_role.clone().unwrap();
        assert_eq!(
            (role.role_arn, role.external_id.clone()),
            (format!("{arn}2"), first.clone())
        );
        let rotated = reg
            .register_aws_role(&id("acme"), arn.clone(), true)
            .unwrap()
            .unwrap();
        assert_ne!(rotated, first);
        let other = reg
            .register_aws_role(&id("globex"), arn, false)
            .unwrap()
            .unwrap();
        assert_ne!(other, rotated);
        assert!(
            reg.register_aws_role(&id("nobody"), String::new(), false)
                .is_err()
        );
    }

    #[test]
    fn discovered_zone_names_replace_only_their_regions_names() {
        let mut reg = Registry::default();
        reg.add_tenant(id("acme"), "Acme").unwrap();
        let pairs = |p: &[(&str, &str)]| -> Vec<(String, String)> {
            p.iter()
                .map(|(n, z)| ((*n).to_owned(), (*z).to_owned()))
                .collect()
        };
        reg.set_zone_names(
            &id("acme"),
            "us-west-2",
            pairs(&[("us-west-2a", "usw2-az2")]),
        )
        .unwrap();
        // a stale typed entry of us-east-1 goes, us-west-2's stays
        reg.set_zone_names(
            &id("acme"),
            "us-east-1",
            pairs(&[("us-east-1a", "use1-az9")]),
        )
        .unwrap();
        let changed = reg
            .set_zone_names(
                &id("acme"),
                "us-east-1",
                pairs(&[
                    ("us-east-1b", "use1-az4"),
                    ("us-east-1-bos-1a", "use1-bos1-az1"),
                ]),
            )
            .unwrap();
        assert!(changed);
        let map = &reg.tenant(&id("acme")).unwrap().zone_map;
        assert_eq!(
            map.iter()
                .map(|(n, z)| (n.as_str(), z.as_str()))
                .collect::<Vec<_>>(),
            vec![
                ("us-east-1-bos-1a", "use1-bos1-az1"),
                ("us-east-1b", "use1-az4"),
                ("us-west-2a", "usw2-az2")
            ]
        );
        // the same names again change nothing
        assert!(
            !reg.set_zone_names(
                &id("acme"),
                "us-east-1",
                pairs(&[
                    ("us-east-1b", "use1-az4"),
                    ("us-east-1-bos-1a", "use1-bos1-az1")
                ]),
            )
            .unwrap()
        );
        assert!(reg.set_zone_names(&id("nobody"), "us-east-1", []).is_err());
    }

    #[test]
    fn gpu_quota_is_optional_and_round_trips() {
        let dir = std::env::temp_dir().join(format!("tenancy-{}", uuid::Uuid::new_v4()));
        let path = dir.join("tenants.toml");
        let mut reg = Registry::default();
        reg.add_tenant(id("acme"), "Acme").unwrap();
        reg.add_tenant(id("free"), "Free").unwrap();
        reg.set_gpu_quota(&id("acme"), Some(16)).unwrap();
        reg.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("gpu_quota").count(), 1, "{text}");
        let loaded = Registry::load(&path).unwrap();
        assert_eq!(loaded.tenant(&id("acme")).unwrap().gpu_quota, Some(16));
        assert_eq!(loaded.tenant(&id("free")).unwrap().gpu_quota, None);
        reg.set_gpu_quota(&id("acme"), None).unwrap();
        assert_eq!(reg.tenant(&id("acme")).unwrap().gpu_quota, None);
        assert!(matches!(
            reg.set_gpu_quota(&id("nobody"), Some(1)),
            Err(RegistryError::UnknownTenant(_))
        ));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
