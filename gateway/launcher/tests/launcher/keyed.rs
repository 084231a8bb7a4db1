//! Launches on an API-key cloud (Lambda Cloud, RunPod) with the real `capsight-launcher`
//! binary: the same two stories for each, told once.
//!
//! * [`runs_once_after_a_kill_9`]: a job on the cloud runs with exactly one instance, named by
//!   its token, also when the launcher is `kill -9`ed right after the cloud accepted the launch
//!   (the restart finds it by name and launches nothing).
//! * [`falls_back_only_with_an_account`]: an AWS H100 job that fails for capacity falls back to
//!   the cloud's same-GPU type when the tenant allows other providers and has an account there,
//!   never otherwise.
//! * [`no_instance_outlives_its_job`]: the reconciler's sweep by name — an instance named after
//!   a job nobody has, and one a running job did not record (launched twice), are terminated
//!   after the orphan grace; the job's own instance and an instance not named by capsight are
//!   left alone.

use std::{os::unix::process::ExitStatusExt, time::Duration};

use capsight_cloud::{CloudAdapter, Instance, InstanceType, LaunchRequest, Provider};
use capsight_testkit::{
    cloud::{ROLE_ACME, Sim},
    fixtures,
    process::ChildGuard,
    signals::score,
    tenants::{TenantSpec, tenant},
    wait::eventually,
};

use super::{
    ACME, Harness, P5_AZ1, assert_fell_back, cross_provider_job as job, named_instances, states,
};

const LIMIT: Duration = Duration::from_secs(90);
/// A tenant with an AWS role and no account on the cloud.
const AWS_ONLY: &str = "awsonly";

/// One API-key cloud as the launcher tests see it.
pub struct KeyedCloud {
    /// Its provider name in keys and launch events (`lambda`).
    pub provider: &'static str,
    /// The cloudsim scenario with its pools and acme's principal.
    pub scenario: &'static str,
    /// acme's API key (the scenario's principal) and the variable naming it.
    pub key: &'static str,
    /// The variable acme's registration names.
    pub key_env: &'static str,
    /// The launcher's endpoint override for the cloud.
    pub endpoint_env: &'static str,
    /// acme's registered limit.
    pub limit: u32,
    /// acme's registration on the cloud.
    pub register: fn(TenantSpec, &'static str, u32) -> TenantSpec,
    /// The production adapter acting with `key` in `region`, at the sandbox's cloudsim.
    pub adapter: fn(&Sim, &str, &str) -> Box<dyn CloudAdapter>,
    /// A key with stock for a plain launch, and its pool's stock after one (the kill test).
    pub plain: (&'static str, u64),
    /// The key an AWS H100 job falls back to: (key, region, instance type).
    pub fallback: (&'static str, &'static str, &'static str),
    /// A type with stock in the plain key's region, for instances launched outside any job.
    pub spare: &'static str,
}

impl KeyedCloud {
    async fn harness(&self) -> Harness {
        Harness::start_with_tenants(
            fixtures::scenario(self.scenario),
            [
                (self.register)(
                    tenant(ACME).role(ROLE_ACME, "ext-acme"),
                    self.key_env,
                    self.limit,
                ),
                tenant(AWS_ONLY).role(ROLE_ACME, "ext-acme"),
            ],
        )
        .await
    }

    /// The launcher binary with the cloud's endpoint (cloudsim) and acme's key.
    fn spawn(&self, h: &Harness, env: &[(&str, &str)], log: &str) -> ChildGuard {
        let url = h.sandbox.sim().url();
        let mut all = vec![(self.endpoint_env, url.as_str()), (self.key_env, self.key)];
        all.extend_from_slice(env);
        h.spawn_binary(&all, log)
    }

    /// The job's live instances in `region`, found by the name carrying its token.
    async fn instances(&self, h: &Harness, region: &str, job_id: &str) -> Vec<Instance> {
        let adapter = (self.adapter)(h.sandbox.sim(), self.key, region);
        named_instances(adapter.as_ref(), job_id).await
    }
}

/// A job on the cloud runs with one instance, also after a `kill -9` right after the launch.
pub async fn runs_once_after_a_kill_9(cloud: &KeyedCloud) {
    let h = cloud.harness().await;
    let (key, stock_after) = cloud.plain;
    let region = key.split('/').nth(1).unwrap_or_default();

    // plain: queued -> preflight -> provisioning -> running, one instance named by the token
    let plain = job(ACME, key, 0, false);
    h.submit(&plain).await;
    let worker = cloud.spawn(&h, &[], "plain");
    let events = h.wait_state(ACME, &plain.job_id, "running", LIMIT).await;
    assert_eq!(states(&events), "queued preflight provisioning running");
    let found = cloud.instances(&h, region, &plain.job_id).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(events[3].provider, cloud.provider);
    assert_eq!(events[3].region, region);
    assert_eq!(events[3].instance_id, found[0].id.as_str());
    assert_eq!(
        found[0].client_token.as_deref(),
        Some(plain.job_id.as_str())
    );
    worker.kill();

    // killed right after the cloud accepted the launch: the restart finds it, launches nothing
    let crashed = job(ACME, key, 0, false);
    h.submit(&crashed).await;
    let mut doomed = cloud.spawn(
        &h,
        &[("CAPSIGHT_LAUNCHER__CRASH_AFTER", "launched")],
        "crash",
    );
    let status = doomed.exited(LIMIT).await;
    assert_eq!(status.signal(), Some(9), "{status:?}");
    let events = h.events(ACME, &crashed.job_id).await;
    assert_eq!(states(&events), "queued preflight provisioning");
    assert_eq!(cloud.instances(&h, region, &crashed.job_id).await.len(), 1);

    let worker = cloud.spawn(&h, &[], "restart");
    let events = h.wait_state(ACME, &crashed.job_id, "running", LIMIT).await;
    assert_eq!(states(&events), "queued preflight provisioning running");
    let found = cloud.instances(&h, region, &crashed.job_id).await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(events[3].instance_id, found[0].id.as_str());
    assert_eq!(h.sandbox.sim().stock(key).await, stock_after);
    worker.kill();
    h.sandbox.cleanup().await;
}

/// An AWS capacity failure falls back to the cloud only when allowed and with an account there.
pub async fn falls_back_only_with_an_account(cloud: &KeyedCloud) {
    let h = cloud.harness().await;
    let (key, region, instance_type) = cloud.fallback;
    h.put_scores(&[score(P5_AZ1, 20, 0.8), score(key, 90, 0.8)])
        .await;
    let worker = cloud.spawn(&h, &[], "launcher");

    // the default: other providers not allowed -> no alternative, the job fails on AWS
    let default = job(ACME, P5_AZ1, 2, false);
    h.submit(&default).await;
    let events = h.wait_state(ACME, &default.job_id, "failed", LIMIT).await;
    assert_eq!(states(&events), "queued preflight provisioning failed");
    assert!(
        events.iter().all(|e| e.provider != cloud.provider),
        "{events:?}"
    );
    assert!(
        cloud
            .instances(&h, region, &default.job_id)
            .await
            .is_empty()
    );

    // allowed, but the tenant has no account there: never falls back there
    let no_account = job(AWS_ONLY, P5_AZ1, 2, true);
    h.submit(&no_account).await;
    let events = h
        .wait_state(AWS_ONLY, &no_account.job_id, "failed", LIMIT)
        .await;
    assert_eq!(states(&events), "queued preflight provisioning failed");
    assert!(
        events.iter().all(|e| e.provider != cloud.provider),
        "{events:?}"
    );

    // allowed: falls back to the cloud's same-GPU type and runs there
    let allowed = job(ACME, P5_AZ1, 2, true);
    h.submit(&allowed).await;
    let events = h.wait_state(ACME, &allowed.job_id, "running", LIMIT).await;
    assert_eq!(events[3].region, region);
    let there = cloud.instances(&h, region, &allowed.job_id).await;
    let fell_back = (cloud.provider, instance_type);
    assert_fell_back(&h, &allowed.job_id, &events, fell_back, &there).await;
    worker.kill();
    h.sandbox.cleanup().await;
}

/// The reconciler every half second with a 3 s orphan grace.
const QUICK_RECONCILE: &[(&str, &str)] = &[
    ("CAPSIGHT_LAUNCHER__RECONCILE__INTERVAL", "500ms"),
    ("CAPSIGHT_LAUNCHER__RECONCILE__ORPHAN_GRACE", "3s"),
];

/// Instances named after a job no one has, or launched twice for a running job, are terminated
/// by the reconciler's sweep by name; the job's instance and other names are not.
pub async fn no_instance_outlives_its_job(cloud: &KeyedCloud) {
    let h = cloud.harness().await;
    let (key, _) = cloud.plain;
    let parsed: capsight_proto::domain::CapacityKey = key.parse().unwrap();
    let region = parsed.region.as_str().to_owned();
    let worker = cloud.spawn(&h, QUICK_RECONCILE, "reconcile");

    // a job that runs there: the scope the sweep looks at, and an owner to respect
    let owned = job(ACME, key, 0, false);
    h.submit(&owned).await;
    h.wait_state(ACME, &owned.job_id, "running", LIMIT).await;

    let adapter = (cloud.adapter)(h.sandbox.sim(), cloud.key, &region);
    let provider = Provider::parse("provider", cloud.provider).unwrap();
    let itype = InstanceType::parse("t", provider, cloud.spare).unwrap();
    let launch = |name: String| {
        let request = LaunchRequest::new(itype.clone(), None, "", name);
        let adapter = &adapter;
        async move { adapter.launch(&request).await.unwrap() }
    };
    let unknown = uuid::Uuid::now_v7().to_string();
    let orphan = launch(unknown.clone()).await;
    let extra = launch(format!("{}-5", owned.job_id)).await;
    let foreign = launch("my-own-training-box".to_owned()).await;

    eventually(
        LIMIT,
        "the unknown job's and the extra instance terminated",
        || async {
            let live: Vec<String> = adapter
                .describe(&[])
                .await
                .unwrap()
                .into_iter()
                .filter(|i| i.state.is_live())
                .map(|i| i.id.as_str().to_owned())
                .collect();
            (!live.contains(&orphan[0].id.as_str().to_owned())
                && !live.contains(&extra[0].id.as_str().to_owned()))
            .then_some(live)
        },
    )
    .await;
    let live: Vec<Instance> = adapter
        .describe(&[])
        .await
        .unwrap()
        .into_iter()
        .filter(|i| i.state.is_live())
        .collect();
    // the job's own instance and the tenant's own box are untouched
    assert!(
        live.iter()
            .any(|i| i.client_token.as_deref() == Some(owned.job_id.as_str())),
        "{live:?}"
    );
    assert!(live.iter().any(|i| i.id == foreign[0].id), "{live:?}");
    let events = h.events(ACME, &owned.job_id).await;
    assert_eq!(states(&events), "queued preflight provisioning running");
    assert!(named_instances(adapter.as_ref(), &unknown).await.is_empty());
    worker.kill();
    h.sandbox.cleanup().await;
}
