//! Tenant registries for tests: [`tenant`] describes one tenant (role, GPU quota, rate, AZ
//! names, an API key), [`Tenants`] writes the registry file services read and keeps the issued
//! keys.

use std::{collections::BTreeMap, path::PathBuf};

use capsight_tenancy::{
    AzureAccount, CloudRole, GcpAccount, LambdaAccount, Registry, RunPodAccount, Tenant, TenantId,
};

/// One tenant of a test registry.
#[derive(Debug, Clone)]
pub struct TenantSpec {
    id: String,
    name: String,
    role: Option<CloudRole>,
    lambda: Option<LambdaAccount>,
    gcp: Option<GcpAccount>,
    azure: Option<AzureAccount>,
    runpod: Option<RunPodAccount>,
    gpu_quota: Option<u32>,
    rate: Option<u32>,
    zones: Vec<(String, String)>,
    key: bool,
}

/// A tenant `id` (also its display name) with nothing registered.
pub fn tenant(id: &str) -> TenantSpec {
    TenantSpec {
        id: id.to_owned(),
        name: id.to_owned(),
        role: None,
        lambda: None,
        gcp: None,
        azure: None,
        runpod: None,
        gpu_quota: None,
        rate: None,
        zones: Vec::new(),
        key: false,
    }
}

impl TenantSpec {
    /// Its display name.
    #[must_use]
    pub fn name(mut self, name: &str) -> Self {
        name.clone_into(&mut self.name);
        self
    }

    /// Its AWS role and external id.
    #[must_use]
    pub fn role(mut self, arn: &str, external_id: &str) -> Self {
        self.role = Some(CloudRole {
            role_arn: arn.into(),
            external_id: external_id.into(),
        });
        self
    }

    /// Its Lambda Cloud account: the API key in the environment variable `api_key_env`, and
    /// the account's instance limit.
    #[must_use]
    pub fn lambda(mut self, api_key_env: &str, instance_limit: u32) -> Self {
        self.lambda = Some(LambdaAccount {
            api_key_env: api_key_env.into(),
            instance_limit,
        });
        self
    }

    /// Its Google Cloud project: the id, and the environment variable holding the path of its
    /// service-account key file.
    #[must_use]
    pub fn gcp(mut self, project_id: &str, credentials_env: &str) -> Self {
        self.gcp = Some(GcpAccount {
            project_id: project_id.into(),
            credentials_env: credentials_env.into(),
        });
        self
    }

    /// Its Azure subscription: the app registration `client_id` of directory `tenant_id`,
    /// the subscription (resource group `capsight`) and the variable holding the client secret.
    #[must_use]
    pub fn azure(
        mut self,
        tenant_id: &str,
        client_id: &str,
        subscription_id: &str,
        client_secret_env: &str,
    ) -> Self {
        self.azure = Some(AzureAccount {
            tenant_id: tenant_id.into(),
            client_id: client_id.into(),
            subscription_id: subscription_id.into(),
            resource_group: crate::cloud::AZURE_RESOURCE_GROUP.into(),
            client_secret_env: client_secret_env.into(),
        });
        self
    }

    /// Its RunPod account: the API key in the environment variable `api_key_env`, and the
    /// account's GPU limit.
    #[must_use]
    pub fn runpod(mut self, api_key_env: &str, gpu_limit: u32) -> Self {
        self.runpod = Some(RunPodAccount {
            api_key_env: api_key_env.into(),
            gpu_limit,
        });
        self
    }

    /// Its GPU quota.
    #[must_use]
    pub fn gpu_quota(mut self, gpus: u32) -> Self {
        self.gpu_quota = Some(gpus);
        self
    }

    /// Its request rate per minute.
    #[must_use]
    pub fn rate(mut self, per_minute: u32) -> Self {
        self.rate = Some(per_minute);
        self
    }

    /// Maps the tenant's AZ name `name` to the zone id `id`.
    #[must_use]
    pub fn zone(mut self, name: &str, id: &str) -> Self {
        self.zones.push((name.into(), id.into()));
        self
    }

    /// Issues it an API key ([`Tenants::key`]).
    #[must_use]
    pub fn with_key(mut self) -> Self {
        self.key = true;
        self
    }
}

/// A registry file and the API keys issued in it.
#[derive(Debug)]
pub struct Tenants {
    path: PathBuf,
    registry: Registry,
    keys: BTreeMap<String, String>,
}

impl Tenants {
    /// Registers `specs` in order and saves the registry at `path`.
    pub fn write(path: PathBuf, specs: impl IntoIterator<Item = TenantSpec>) -> Self {
        let mut registry = Registry::default();
        let mut keys = BTreeMap::new();
        for spec in specs {
            let id = TenantId::parse(&spec.id).unwrap();
            registry.add_tenant(id.clone(), &spec.name).unwrap();
            registry.set_aws_role(&id, spec.role).unwrap();
            registry.set_account(&id, spec.lambda).unwrap();
            registry.set_account(&id, spec.gcp).unwrap();
            registry.set_account(&id, spec.azure).unwrap();
            registry.set_account(&id, spec.runpod).unwrap();
            registry.set_gpu_quota(&id, spec.gpu_quota).unwrap();
            let t = registry.tenants.iter_mut().find(|t| t.id == id).unwrap();
            t.rate_per_minute = spec.rate;
            t.zone_map.extend(spec.zones);
            if spec.key {
                keys.insert(spec.id, registry.issue_key(&id).unwrap().key);
            }
        }
        let tenants = Self {
            path,
            registry,
            keys,
        };
        tenants.save();
        tenants
    }

    /// The registry file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The API key issued to `tenant`.
    pub fn key(&self, tenant: &str) -> String {
        self.keys
            .get(tenant)
            .unwrap_or_else(|| panic!("no key issued to {tenant}"))
            .clone()
    }

    /// The registered tenant `id`.
    pub fn tenant(&self, id: &str) -> Tenant {
        self.registry
            .tenant(&TenantId::parse(id).unwrap())
            .unwrap_or_else(|| panic!("{id} is not registered"))
            .clone()
    }

    /// Changes the tenant `id` and saves the file (services re-read it).
    pub fn update(&mut self, id: &str, change: impl FnOnce(&mut Tenant)) {
        let id = TenantId::parse(id).unwrap();
        change(
            self.registry
                .tenants
                .iter_mut()
                .find(|t| t.id == id)
                .unwrap(),
        );
        self.save();
    }

    fn save(&self) {
        self.registry.save(&self.path).unwrap();
    }
}
