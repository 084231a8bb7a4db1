//! cloudsim for tests: [`Sim`] runs it in-process from a scenario on an ephemeral port (a
//! frozen clock unless a test asks for a running one) and stops it on drop; its admin API
//! ([`Sim::advance`], [`Sim::fault`], [`Sim::stock`], [`Sim::interrupt`]); AWS adapters and
//! tenant clouds with the real AWS SDK pointed at it ([`Sim::adapter`], [`Sim::clouds`]); the
//! environment that points a binary at it ([`Sim::aws_env`], [`Sim::lambda_env`],
//! [`Sim::runpod_env`]); Lambda Cloud adapters against its `/api/v1` ([`Sim::lambda_adapter`]),
//! RunPod adapters against its `/graphql` ([`Sim::runpod_adapter`]); GCP service-account key
//! files pointed at its token endpoint ([`Sim::gcp_credentials`]) and GCP adapters
//! ([`Sim::gcp_adapter`], [`Sim::gcp_clouds`]); Azure adapters against its Resource Manager and
//! Entra ID endpoints ([`Sim::azure_adapter`], [`Sim::azure_env`]); and reads of instances.
//!
//! Credentials, region and endpoint go to the SDK config builder; the process environment is
//! never touched.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use aws_config::BehaviorVersion;
use aws_sdk_ec2::config::Credentials;
use capsight_catalog::Catalog;
use capsight_cloud::{
    CloudAdapter, CloudSettings, Instance, InstanceId, InstanceState, Provider, Region,
    aws::AwsAdapter,
    azure::{AzureAdapter, AzureCredentials, AzureScope, AzureSettings},
    gcp::{GcpAdapter, GcpSettings, ServiceAccount, Tokens},
    lambda::{LambdaAdapter, LambdaSettings},
    runpod::{RunPodAdapter, RunPodSettings},
    tenants::{
        AwsClouds, AzureClouds, GcpClouds, KeyLookup, LambdaClouds, RunPodClouds, TenantClouds,
    },
};
use capsight_cloudsim::{CloudsimSettings, Running, scenario::Scenario};
use capsight_runtime::shutdown::Shutdown;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// The operator's access key in the scenarios with tenants (gateway, launcher, standby,
/// adapter).
pub const OPERATOR: &str = "AKIATESTOPERATOR";
/// Tenant `acme`'s role in those scenarios (external id `ext-acme`, or `ext-123` in
/// `adapter`).
pub const ROLE_ACME: &str = "arn:aws:iam::222222222222:role/capsight";
/// The read-only tenant's role in the gateway scenario (external id `ext-ro`).
pub const ROLE_READONLY: &str = "arn:aws:iam::333333333333:role/capsight";
/// The Entra ID directory (tenant id) of the Azure scenarios' app registrations.
pub const AZURE_DIRECTORY: &str = "11111111-1111-1111-1111-111111111111";
/// The operator's subscription in the Azure scenarios.
pub const AZURE_OPS_SUBSCRIPTION: &str = "00000000-0000-0000-0000-0000000000a1";
/// The operator's app registration in the Azure scenarios: (client id, client secret).
pub const AZURE_OPS_APP: (&str, &str) = (
    "aaaaaaaa-0000-0000-0000-000000000001",
    "secret-ops-0123456789",
);
/// An app registration with the Reader role only: (client id, client secret).
pub const AZURE_READER_APP: (&str, &str) = (
    "aaaaaaaa-0000-0000-0000-000000000002",
    "secret-reader-0123456789",
);
/// An app registration that may launch in [`AZURE_SMALL_SUBSCRIPTION`], whose GPU quota is
/// small: (client id, client secret).
pub const AZURE_SMALL_APP: (&str, &str) = (
    "aaaaaaaa-0000-0000-0000-000000000003",
    "secret-small-0123456789",
);
/// The subscription with a small GPU quota in the Azure scenarios.
pub const AZURE_SMALL_SUBSCRIPTION: &str = "00000000-0000-0000-0000-0000000000b2";
/// The resource group the Azure helpers act in.
pub const AZURE_RESOURCE_GROUP: &str = "capsight";

/// The region every scenario simulates.
pub const REGION: &str = "us-east-1";
/// The tag the launcher puts on a job's instances.
pub const JOB_TAG: &str = "capsight:job";

/// `us-east-1` as a domain region.
pub fn region() -> Region {
    Region::parse("region", Provider::Aws, REGION).unwrap()
}

/// The embedded GPU catalog.
pub fn catalog() -> Arc<Catalog> {
    Arc::new(Catalog::embedded().unwrap())
}

/// A key lookup over `keys` ((variable name, API key) pairs) instead of the environment.
fn key_lookup(keys: &[(&str, &str)]) -> KeyLookup {
    let keys: std::collections::BTreeMap<String, String> = keys
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Arc::new(move |name: &str| keys.get(name).cloned())
}

/// Cloud settings with `max_attempts` per call and almost no backoff (5-20 ms).
pub fn quick_retries(max_attempts: u32) -> CloudSettings {
    CloudSettings {
        max_attempts,
        retry_min_delay: Duration::from_millis(5),
        retry_max_delay: Duration::from_millis(20),
        ..CloudSettings::default()
    }
}

/// How a [`Sim`] starts.
#[derive(Debug)]
pub struct SimBuilder {
    scenario: Scenario,
    settings: CloudsimSettings,
}

impl SimBuilder {
    /// Simulated seconds per real second (a running clock, advanced every 50 ms).
    #[must_use]
    pub fn time_scale(mut self, scale: f64) -> Self {
        self.settings.time_scale = scale;
        self.settings.tick = Duration::from_millis(50);
        self
    }

    /// POSTs EventBridge events to `url` with `api_key` as `x-api-key`.
    #[must_use]
    pub fn webhook(mut self, url: &str, api_key: &str) -> Self {
        url.clone_into(&mut self.settings.webhook_url);
        api_key.clone_into(&mut self.settings.webhook_api_key);
        self
    }

    /// Starts it.
    pub async fn start(self) -> Sim {
        let shutdown = Shutdown::new();
        let running =
            capsight_cloudsim::start(&self.settings, self.scenario, None, shutdown.clone())
                .await
                .unwrap();
        let scratch =
            std::env::temp_dir().join(format!("capsight-sim-{}", uuid::Uuid::new_v4().simple()));
        Sim {
            running,
            shutdown,
            scratch,
        }
    }
}

/// A cloudsim of one test, stopped on drop (with the files written for it).
#[derive(Debug)]
pub struct Sim {
    running: Running,
    shutdown: Shutdown,
    /// Where credential files pointing at this cloudsim are written; removed on drop.
    scratch: std::path::PathBuf,
}

impl Drop for Sim {
    fn drop(&mut self) {
        self.shutdown.trigger();
        let _ = std::fs::remove_dir_all(&self.scratch);
    }
}

impl Sim {
    /// A cloudsim of `scenario` with a frozen clock (`time_scale = 0`: simulated time moves
    /// only with [`Sim::advance`]), ticking every 20 ms.
    pub fn builder(scenario: Scenario) -> SimBuilder {
        SimBuilder {
            scenario,
            settings: CloudsimSettings {
                listen: "127.0.0.1:0".parse().unwrap(),
                time_scale: 0.0,
                tick: Duration::from_millis(20),
                ..CloudsimSettings::default()
            },
        }
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.running.addr
    }

    /// `http://addr`.
    pub fn url(&self) -> String {
        self.running.url()
    }

    /// The standard AWS variables that point a binary at this cloudsim as `access_key`.
    pub fn aws_env(&self, access_key: &str) -> [(&'static str, String); 4] {
        [
            ("AWS_ENDPOINT_URL", self.url()),
            ("AWS_ACCESS_KEY_ID", access_key.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "secret".to_owned()),
            ("AWS_REGION", REGION.to_owned()),
        ]
    }

    async fn sdk(&self, access_key: &str, region: &str) -> aws_config::SdkConfig {
        sdk(self.url(), access_key, region).await
    }

    /// A Lambda Cloud adapter with `api_key` in `region` (a scenario's Lambda principal),
    /// through the same HTTP client production uses, pointed at this cloudsim.
    pub fn lambda_adapter(
        &self,
        api_key: &str,
        region: &str,
        settings: CloudSettings,
    ) -> LambdaAdapter {
        LambdaAdapter::new(
            LambdaSettings {
                endpoint: self.url(),
                ..LambdaSettings::default()
            },
            settings,
            api_key,
            Region::parse("region", Provider::Lambda, region).unwrap(),
        )
        .unwrap()
    }

    /// Tenants' Lambda clouds at this cloudsim: `keys` maps the environment variable names
    /// tenants' registrations give to API keys (no process environment is touched).
    pub fn lambda_clouds(&self, keys: &[(&str, &str)], settings: CloudSettings) -> LambdaClouds {
        LambdaClouds::with_keys(
            LambdaSettings {
                endpoint: self.url(),
                ..LambdaSettings::default()
            },
            settings,
            key_lookup(keys),
        )
    }

    /// Tenants' RunPod clouds at this cloudsim: `keys` maps the environment variable names
    /// tenants' registrations give to API keys (no process environment is touched).
    pub fn runpod_clouds(&self, keys: &[(&str, &str)], settings: CloudSettings) -> RunPodClouds {
        RunPodClouds::with_keys(
            self.runpod_settings(),
            settings,
            catalog(),
            key_lookup(keys),
        )
    }

    /// A RunPod adapter with `api_key` in cloud type `cloud` (a scenario's RunPod principal),
    /// through the same HTTP client production uses, pointed at this cloudsim.
    pub fn runpod_adapter(
        &self,
        api_key: &str,
        cloud: &str,
        settings: CloudSettings,
    ) -> RunPodAdapter {
        RunPodAdapter::new(
            self.runpod_settings(),
            settings,
            catalog(),
            api_key,
            Region::parse("region", Provider::RunPod, cloud).unwrap(),
        )
        .unwrap()
    }

    /// `[runpod]` pointed at this cloudsim.
    pub fn runpod_settings(&self) -> RunPodSettings {
        RunPodSettings {
            endpoint: self.url(),
            ..RunPodSettings::default()
        }
    }

    /// The environment that points a binary's RunPod adapter at this cloudsim with `api_key`.
    pub fn runpod_env(&self, api_key: &str) -> [(&'static str, String); 2] {
        [
            ("CAPSIGHT_RUNPOD__ENDPOINT", self.url()),
            ("RUNPOD_API_KEY", api_key.to_owned()),
        ]
    }

    /// The environment that points a binary's Lambda adapter at this cloudsim with `api_key`.
    pub fn lambda_env(&self, api_key: &str) -> [(&'static str, String); 2] {
        [
            ("CAPSIGHT_LAMBDA__ENDPOINT", self.url()),
            ("LAMBDA_API_KEY", api_key.to_owned()),
        ]
    }

    /// The `[gcp]` settings that point a GCP adapter at this cloudsim, for `project`.
    pub fn gcp_settings(&self, project: &str) -> GcpSettings {
        GcpSettings {
            project: project.to_owned(),
            endpoint: self.url(),
            ..GcpSettings::default()
        }
    }

    /// A copy of the service-account key file `tests/fixtures/gcp/<name>.json` whose
    /// `token_uri` is this cloudsim's token endpoint, in a fresh file that lives as long as this
    /// cloudsim: its path.
    pub fn gcp_credentials(&self, name: &str) -> std::path::PathBuf {
        let fixture = crate::fixtures::dir()
            .join("gcp")
            .join(format!("{name}.json"));
        let text = std::fs::read_to_string(&fixture)
            .unwrap_or_else(|e| panic!("fixture {}: {e}", fixture.display()));
        let mut key: serde_json::Value = serde_json::from_str(&text).unwrap();
        key["token_uri"] = serde_json::json!(format!("{}/token", self.url()));
        std::fs::create_dir_all(&self.scratch).unwrap();
        let path = self
            .scratch
            .join(format!("gcp-{name}-{}.json", uuid::Uuid::new_v4().simple()));
        std::fs::write(&path, key.to_string()).unwrap();
        path
    }

    /// A GCP adapter acting as the service account of fixture `credentials` on `project` in
    /// `region`, through the same HTTP client production uses, pointed at this cloudsim.
    pub fn gcp_adapter(
        &self,
        credentials: &str,
        project: &str,
        region: &str,
        settings: CloudSettings,
    ) -> GcpAdapter {
        let account = ServiceAccount::from_file(&self.gcp_credentials(credentials)).unwrap();
        GcpAdapter::new(
            self.gcp_settings(project),
            settings,
            Tokens::new(account),
            project,
            Region::parse("region", Provider::Gcp, region).unwrap(),
            catalog(),
        )
        .unwrap()
    }

    /// `[azure]` pointed at this cloudsim (Resource Manager, Entra ID and prices) for
    /// `subscription`, resource group [`AZURE_RESOURCE_GROUP`], launches not waiting for their
    /// create operations beyond the first look (the clock is frozen).
    pub fn azure_settings(&self, subscription: &str) -> AzureSettings {
        AzureSettings {
            endpoint: self.url(),
            authority: self.url(),
            prices_endpoint: self.url(),
            subscription_id: subscription.to_owned(),
            resource_group: AZURE_RESOURCE_GROUP.to_owned(),
            launch_wait: Duration::ZERO,
            ..AzureSettings::default()
        }
    }

    /// An Azure adapter of the app registration `(client id, secret)` (directory
    /// [`AZURE_DIRECTORY`]) in `subscription` and `region`, pointed at this cloudsim.
    pub fn azure_adapter(
        &self,
        app: (&str, &str),
        subscription: &str,
        region: &str,
        settings: CloudSettings,
    ) -> AzureAdapter {
        AzureAdapter::new(
            self.azure_settings(subscription),
            settings,
            AzureCredentials {
                tenant_id: AZURE_DIRECTORY.to_owned(),
                client_id: app.0.to_owned(),
                client_secret: app.1.to_owned(),
            },
            AzureScope {
                subscription_id: subscription.to_owned(),
                resource_group: AZURE_RESOURCE_GROUP.to_owned(),
            },
            Region::parse("region", Provider::Azure, region).unwrap(),
            catalog(),
        )
        .unwrap()
    }

    /// Tenants' GCP clouds at this cloudsim: `keys` maps the environment variable names
    /// tenants' registrations give to fixture names (`acme`), whose key files are written with
    /// this cloudsim's token endpoint (no process environment is touched).
    pub fn gcp_clouds(&self, keys: &[(&str, &str)], settings: CloudSettings) -> GcpClouds {
        let paths: std::collections::BTreeMap<String, String> = keys
            .iter()
            .map(|(k, fixture)| {
                (
                    (*k).to_owned(),
                    self.gcp_credentials(fixture).display().to_string(),
                )
            })
            .collect();
        GcpClouds::with_paths(
            self.gcp_settings(""),
            settings,
            catalog(),
            Arc::new(move |name: &str| paths.get(name).cloned()),
        )
    }

    /// The environment that points a binary's GCP adapters at this cloudsim: the endpoint,
    /// and `GOOGLE_APPLICATION_CREDENTIALS` = a key file of fixture `credentials`.
    pub fn gcp_env(&self, credentials: &str) -> [(&'static str, String); 2] {
        [
            ("CAPSIGHT_GCP__ENDPOINT", self.url()),
            (
                "GOOGLE_APPLICATION_CREDENTIALS",
                self.gcp_credentials(credentials).display().to_string(),
            ),
        ]
    }

    /// Tenants' Azure clouds at this cloudsim: `secrets` maps the environment variable names
    /// tenants' registrations give to client secrets (no process environment is touched).
    pub fn azure_clouds(&self, secrets: &[(&str, &str)], settings: CloudSettings) -> AzureClouds {
        let secrets: std::collections::BTreeMap<String, String> = secrets
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        AzureClouds::with_secrets(
            self.azure_settings(""),
            settings,
            catalog(),
            Arc::new(move |name: &str| secrets.get(name).cloned()),
        )
    }

    /// The environment that points a binary's `[azure]` endpoints (Resource Manager, Entra ID,
    /// prices) at this cloudsim, launches not waiting beyond the first look at their create
    /// operation.
    pub fn azure_endpoint_env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("CAPSIGHT_AZURE__ENDPOINT", self.url()),
            ("CAPSIGHT_AZURE__AUTHORITY", self.url()),
            ("CAPSIGHT_AZURE__PRICES_ENDPOINT", self.url()),
            ("CAPSIGHT_AZURE__LAUNCH_WAIT", "0s".to_owned()),
        ]
    }

    /// [`Sim::azure_endpoint_env`] plus the operator's subscription
    /// ([`AZURE_OPS_SUBSCRIPTION`]) and app registration, watching `regions` (a TOML array,
    /// e.g. `["eastus"]`).
    pub fn azure_env(&self, regions: &str) -> Vec<(&'static str, String)> {
        let mut env = self.azure_endpoint_env();
        env.extend([
            (
                "CAPSIGHT_AZURE__SUBSCRIPTION_ID",
                AZURE_OPS_SUBSCRIPTION.to_owned(),
            ),
            ("CAPSIGHT_AZURE__REGIONS", regions.to_owned()),
            ("AZURE_TENANT_ID", AZURE_DIRECTORY.to_owned()),
            ("AZURE_CLIENT_ID", AZURE_OPS_APP.0.to_owned()),
            ("AZURE_CLIENT_SECRET", AZURE_OPS_APP.1.to_owned()),
        ]);
        env
    }

    /// An adapter acting as `access_key` in `us-east-1`.
    pub async fn adapter(&self, access_key: &str, settings: CloudSettings) -> AwsAdapter {
        AwsAdapter::from_sdk_config(self.sdk(access_key, REGION).await, settings, catalog())
            .unwrap()
    }

    /// Tenant clouds whose operator is [`OPERATOR`] with `settings` (per region).
    pub fn clouds(&self, settings: CloudSettings) -> Arc<AwsClouds> {
        let url = self.url();
        let catalog = catalog();
        Arc::new(AwsClouds::with_base(Arc::new(move |region: Region| {
            let url = url.clone();
            let catalog = Arc::clone(&catalog);
            let settings = CloudSettings {
                region: region.as_str().to_owned(),
                ..settings.clone()
            };
            Box::pin(async move {
                let sdk = sdk(url, OPERATOR, region.as_str()).await;
                AwsAdapter::from_sdk_config(sdk, settings, catalog)
            })
        })))
    }

    /// Raw HTTP/1.0 to its admin API with a JSON body: (status, body).
    pub async fn admin(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        http(
            self.addr(),
            method,
            path,
            &[("Content-Type", "application/json")],
            body,
        )
        .await
    }

    /// An admin call that must answer `want`.
    async fn admin_ok(&self, method: &str, path: &str, body: &str, want: u16) {
        let (status, answer) = self.admin(method, path, body).await;
        assert_eq!(status, want, "{method} {path}: {answer}");
    }

    /// Moves simulated time `seconds` ahead.
    pub async fn advance(&self, seconds: u64) {
        let body = format!("{{\"seconds\": {seconds}}}");
        self.admin_ok("POST", "/admin/advance", &body, 200).await;
    }

    /// Makes the next `count` calls of `action` fail with the error `code`.
    pub async fn fault(&self, action: &str, code: &str, count: u32) {
        let body = format!("{{\"action\":\"{action}\",\"code\":\"{code}\",\"count\":{count}}}");
        self.admin_ok("POST", "/admin/faults", &body, 204).await;
    }

    /// Clears every armed fault.
    pub async fn clear_faults(&self) {
        self.admin_ok("DELETE", "/admin/faults", "", 204).await;
    }

    /// Interrupts a spot instance (rebalance recommendation, then the interruption); the
    /// status code of the admin call.
    pub async fn interrupt(&self, instance_id: &str) -> u16 {
        self.admin(
            "POST",
            "/admin/interrupt",
            &serde_json::json!({ "instance_id": instance_id }).to_string(),
        )
        .await
        .0
    }

    /// A pool's stock from `/admin/state` (`key` as `aws/us-east-1/use1-az1/p5.48xlarge/on_demand`).
    pub async fn stock(&self, key: &str) -> u64 {
        let (_, body) = self.admin("GET", "/admin/state", "").await;
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["pools"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["key"] == key)
            .unwrap_or_else(|| panic!("no pool {key} in {v}"))["stock"]
            .as_u64()
            .unwrap()
    }
}

async fn sdk(url: String, access_key: &str, region: &str) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(url)
        .region(aws_config::Region::new(region.to_owned()))
        .credentials_provider(Credentials::new(access_key, "secret", None, None, "test"))
        .load()
        .await
}

/// Raw HTTP/1.0 to `addr` with `headers`: (status, body).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.0\r\nHost: x\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The adapter acting as `tenant` in `us-east-1`.
pub async fn tenant_adapter(
    clouds: &dyn TenantClouds,
    tenant: &capsight_tenancy::Tenant,
) -> Arc<dyn CloudAdapter> {
    clouds.adapter(tenant, &region()).await.unwrap()
}

/// A launch job's instances (by [`JOB_TAG`]) that are not terminated or shutting down.
pub async fn instances_of(adapter: &dyn CloudAdapter, job_id: &str) -> Vec<Instance> {
    adapter
        .describe(&[])
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.tags.get(JOB_TAG).map(String::as_str) == Some(job_id))
        .filter(|i| i.state.is_live())
        .collect()
}

/// The state of instance `id`; `Other("gone")` when it is not described.
pub async fn instance_state(adapter: &dyn CloudAdapter, id: &str) -> InstanceState {
    adapter
        .describe(&[InstanceId::new(id).unwrap()])
        .await
        .unwrap()
        .into_iter()
        .next()
        .map_or(InstanceState::Other("gone".into()), |i| i.state)
}

/// Waits (checking every 25 ms) until instance `id` is in one of `want`; returns how long that
/// took, panics after `within`.
pub async fn wait_instance(
    adapter: &dyn CloudAdapter,
    id: &str,
    want: &[InstanceState],
    within: Duration,
) -> Duration {
    let start = std::time::Instant::now();
    loop {
        let s = instance_state(adapter, id).await;
        if want.contains(&s) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "{id} still {s:?} after {within:?}, want {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// Launches one g5.xlarge in us-east-1's use1-az1 on `market` with client token `token`
/// through `adapter` and waits (30 s at most) until it runs; its id.
pub async fn run_g5(
    adapter: &dyn CloudAdapter,
    token: &str,
    market: capsight_proto::domain::Market,
) -> String {
    use capsight_proto::domain::{InstanceType, ZoneId};
    let region = Region::parse("r", Provider::Aws, "us-east-1").unwrap();
    let req = capsight_cloud::LaunchRequest::new(
        InstanceType::parse("t", Provider::Aws, "g5.xlarge").unwrap(),
        ZoneId::parse_optional("z", Provider::Aws, &region, "use1-az1").unwrap(),
        "ami-test",
        token,
    )
    .market(market);
    let id = adapter.launch(&req).await.unwrap()[0]
        .id
        .as_str()
        .to_owned();
    wait_instance(
        adapter,
        &id,
        &[InstanceState::Running],
        Duration::from_secs(30),
    )
    .await;
    id
}
