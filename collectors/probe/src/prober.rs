//! Executes one probe: quota pre-check, budget, the cloud calls, cleanup, the launch-attempt
//! signal and the audit rows.
//!
//! Contract of [`Prober::probe`]:
//! 1. the key's quota headroom is read first; headroom 0 means no probe (audited `skipped`);
//! 2. the estimate of the method about to run is reserved from the day's [`Budget`] and the
//!    `reserved` audit row is written — both BEFORE any call that can cost money; a refused
//!    reservation or a failed audit write means no probe (`skipped`);
//! 3. on-demand zonal keys are probed with a capacity reservation for 1 instance (tagged
//!    `capsight:probe=<probe id>`, ClientToken = probe id, `EndDate` = now +
//!    `reservation_expiry`), cancelled at once; when the reservation cannot answer (permission
//!    or unknown error), for spot or region-level keys and on GCP, a launch probe follows: RunInstances
//!    count 1 (same tag and token), terminated as soon as the cloud returns it (pending);
//! 4. the outcome is classified (success, capacity, quota, permission, ...) into a
//!    `launch_attempt` signal (source `probe`, id derived from the probe id: a retried
//!    publication keeps its id); a resource whose cleanup failed stays tagged for the sweeper and
//!    is charged at its worst case (until the sweeper removes it);
//! 5. the budget is settled with the actual cost and the `done` audit row is written, carrying
//!    the signal (the outbox); then the signal is published and, once the broker acknowledged
//!    it, a `published` row is appended. A prober killed in between re-publishes it at its next
//!    start ([`Prober::republish`]), so no observation is lost.
//!
//! Every cloud call waits for the [`Limits`] first.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Arc,
    time::{Duration, Instant},
};

use capsight_catalog::{Catalog, GpuType};
use capsight_clickhouse::rows::{ProbeAuditRow, split_time};
use capsight_cloud::{CloudAdapter, CloudError, LaunchRequest, ReservationRequest};
use capsight_proto::codec;
use capsight_proto::domain::{
    CapacityKey, ErrorClass, LaunchAttempt, LaunchOutcome, Market, Payload, ProbeMethod, Region,
    Signal, SignalId, SignalSource,
};
use capsight_publisher::Publisher;
use chrono::{DateTime, Utc};
use tracing::Instrument;

use crate::{
    audit::{
        Audit, AuditError, PHASE_DONE, PHASE_PUBLISHED, PHASE_RESERVED, Unpublished, day_number,
    },
    budget::Budget,
    cost::{self, Method},
    limits::Limits,
    plan::Outcome,
    settings::ProbeSettings,
};

/// The tag every probe resource carries; its value is the probe id.
pub const PROBE_TAG: &str = "capsight:probe";
/// When the prober created the resource (unix seconds, the prober's clock): the sweeper's age.
pub const PROBE_AT_TAG: &str = "capsight:probe-at";

/// A key chosen by a planning pass, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    /// The key.
    pub key: CapacityKey,
    /// Rank in its pass (0 = first).
    pub priority: u32,
    /// Tenant demand, requests per day.
    pub demand: f64,
}

/// What one probe did.
#[derive(Debug, Clone)]
pub struct ProbeReport {
    /// The probe id.
    pub probe_id: String,
    /// What the planner learns.
    pub outcome: Outcome,
    /// The signal published, when a cloud call answered.
    pub signal: Option<Signal>,
    /// The `done` audit row.
    pub audit: ProbeAuditRow,
}

/// One attempt's result.
struct Attempt {
    method: Method,
    result: Result<(), CloudError>,
    provisioning_ms: Option<u32>,
    actual_usd: f64,
    resources: Vec<String>,
    leftover: Option<String>,
}

impl Attempt {
    /// An attempt the cloud refused (or that could not be made): nothing held, nothing spent.
    fn failed(method: Method, err: CloudError) -> Self {
        Self {
            method,
            result: Err(err),
            provisioning_ms: None,
            actual_usd: 0.0,
            resources: Vec::new(),
            leftover: None,
        }
    }
}

/// Executes probes; shared by the prober's tasks.
pub struct Prober {
    adapters: HashMap<Region, Arc<dyn CloudAdapter>>,
    catalog: Arc<Catalog>,
    settings: ProbeSettings,
    publisher: Publisher,
    audit: Audit,
    budget: Budget,
    limits: Limits,
    account: String,
    /// Publications under way: a probe hands its signal over and frees its slot, so probing
    /// goes on while the broker is away (the outbox row is already durable).
    publishing: tokio_util::task::TaskTracker,
}

impl std::fmt::Debug for Prober {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prober")
            .field("instance", &self.settings.instance)
            .field("account", &self.account)
            .field("regions", &self.adapters.len())
            .finish_non_exhaustive()
    }
}

fn method_name(m: Method) -> &'static str {
    match m {
        Method::CapacityReservation => ProbeMethod::CapacityReservation.as_str(),
        Method::Launch => ProbeMethod::Launch.as_str(),
    }
}

impl Prober {
    /// A prober over one adapter per region, spending at most `budget` a day.
    #[allow(
        clippy::too_many_arguments,
        reason = "one constructor wiring the parts"
    )]
    pub fn new(
        adapters: Vec<Arc<dyn CloudAdapter>>,
        catalog: Arc<Catalog>,
        settings: ProbeSettings,
        publisher: Publisher,
        audit: Audit,
        budget: Budget,
        account: String,
    ) -> Self {
        let limits = Limits::new(&settings.limits);
        Self {
            adapters: adapters
                .into_iter()
                .map(|a| (a.region().clone(), a))
                .collect(),
            catalog,
            settings,
            publisher,
            audit,
            budget,
            limits,
            account,
            publishing: tokio_util::task::TaskTracker::new(),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &ProbeSettings {
        &self.settings
    }

    /// The adapters, one per region.
    pub fn adapters(&self) -> impl Iterator<Item = &Arc<dyn CloudAdapter>> {
        self.adapters.values()
    }

    /// The catalog.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The audit.
    pub fn audit(&self) -> &Audit {
        &self.audit
    }

    /// The budget.
    pub fn budget(&self) -> &Budget {
        &self.budget
    }

    /// The account probed with.
    pub fn account(&self) -> &str {
        &self.account
    }

    /// Waits for the rate limits of `operation`.
    pub async fn limit(&self, provider: &str, operation: &str) {
        self.limits
            .acquire(provider, &self.account, operation)
            .await;
    }

    /// Waits for the rate limits of `operation` on `key`'s provider, then makes the call: its
    /// result, and when it started (after the wait).
    async fn call<T>(
        &self,
        key: &CapacityKey,
        operation: &str,
        call: impl Future<Output = T>,
    ) -> (T, Instant) {
        self.limit(key.provider.as_str(), operation).await;
        let started = Instant::now();
        (call.await, started)
    }

    fn row(
        &self,
        probe_id: &str,
        planned: &Planned,
        phase: &str,
        now: DateTime<Utc>,
    ) -> ProbeAuditRow {
        let (at, at_ms) = split_time(now);
        let k = &planned.key;
        ProbeAuditRow {
            probe_id: probe_id.to_owned(),
            phase: phase.to_owned(),
            day: day_number(now.date_naive()),
            at,
            at_ms,
            prober: self.settings.instance.clone(),
            account: self.account.clone(),
            provider: k.provider.as_str().to_owned(),
            region: k.region.as_str().to_owned(),
            zone_id: k.zone_str().to_owned(),
            instance_type: k.instance_type.as_str().to_owned(),
            market: k.market.as_str().to_owned(),
            method: String::new(),
            priority: planned.priority,
            demand: planned.demand,
            reason: String::new(),
            estimated_usd: 0.0,
            actual_usd: 0.0,
            outcome: String::new(),
            error_class: String::new(),
            error_code: String::new(),
            provisioning_ms: 0,
            resources: String::new(),
            signal: String::new(),
        }
    }

    async fn skip(&self, probe_id: String, planned: &Planned, reason: String) -> ProbeReport {
        let mut row = self.row(&probe_id, planned, PHASE_DONE, Utc::now());
        row.outcome = "skipped".into();
        row.error_class = ErrorClass::None.as_str().into();
        row.reason = reason;
        tracing::info!(probe = %probe_id, key = %planned.key, reason = %row.reason, "probe skipped");
        if let Err(e) = self.audit.write(&row).await {
            tracing::error!(probe = %probe_id, error = %e, "audit write failed for a skipped probe");
        }
        ProbeReport {
            probe_id,
            outcome: Outcome::Skipped,
            signal: None,
            audit: row,
        }
    }

    /// Waits up to `grace` for the publications under way (shutdown, end of `--once`); what is
    /// left stays in the outbox for the next start.
    pub async fn drain(&self, grace: std::time::Duration) {
        self.publishing.close();
        if tokio::time::timeout(grace, self.publishing.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                left = self.publishing.len(),
                "probe signals not acknowledged in time; they stay in the outbox"
            );
        }
    }

    /// Re-publishes the outbox: signals of done probes whose publication was never
    /// acknowledged (a crash between the cloud's answer and the broker's ack). Returns how many.
    pub async fn republish(&self) -> Result<usize, AuditError> {
        let pending = self.audit.unpublished(&self.settings.instance).await?;
        let mut sent = 0;
        for Unpublished { probe_id, signal } in pending {
            let encoded = signal;
            let signal = match hex::decode(&encoded)
                .map_err(|e| e.to_string())
                .and_then(|b| codec::decode_signal(&b).map_err(|e| e.to_string()))
            {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!(error = %e, "undecodable signal in the probe outbox; skipped");
                    continue;
                }
            };
            let key = signal.key.clone();
            let planned = Planned {
                key,
                priority: 0,
                demand: 0.0,
            };
            let mut done = self.row(&probe_id, &planned, PHASE_DONE, signal.observed_at);
            done.signal = encoded;
            publish_and_mark(self.publisher.clone(), self.audit.clone(), signal, done).await;
            sent += 1;
        }
        if sent > 0 {
            tracing::info!(sent, "probe outbox re-published");
        }
        Ok(sent)
    }

    fn tags(probe_id: &str, now: DateTime<Utc>) -> BTreeMap<String, String> {
        BTreeMap::from([
            (PROBE_TAG.to_owned(), probe_id.to_owned()),
            (PROBE_AT_TAG.to_owned(), now.timestamp().to_string()),
        ])
    }

    fn estimate(&self, t: &GpuType, method: Method) -> f64 {
        cost::estimate_usd(
            t,
            method,
            self.settings.reservation_hold,
            self.settings.launch_hold,
        )
    }

    /// Worst-case billing of a resource left for the sweeper.
    fn leftover_cost(&self, t: &GpuType, method: Method) -> f64 {
        let until_swept = self.settings.sweep_after + self.settings.sweep_interval;
        let held = match method {
            Method::CapacityReservation => until_swept.min(self.settings.reservation_expiry),
            Method::Launch => until_swept.max(cost::MIN_BILLED),
        };
        t.on_demand_usd_per_hour * held.as_secs_f64() / 3600.0
    }

    /// A granted attempt on `resources` (each billed as one `gpu`), held for `held` and then
    /// released as `released` says: it cost the time held at the on-demand price; when the
    /// release failed, what the sweeper will let each resource cost, and they are its leftover.
    fn granted(
        &self,
        method: Method,
        gpu: &GpuType,
        provisioning_ms: u32,
        held: Duration,
        resources: Vec<String>,
        released: Result<(), CloudError>,
    ) -> Attempt {
        let (actual_usd, leftover) = match released {
            Ok(()) => (
                gpu.on_demand_usd_per_hour * held.as_secs_f64() / 3600.0,
                None,
            ),
            Err(e) => {
                let leftover = resources.join(",");
                tracing::error!(?method, resources = %leftover, error = %e,
                    "cannot release the probe's resources; the sweeper will");
                (
                    self.leftover_cost(gpu, method) * resources.len().max(1) as f64,
                    Some(leftover),
                )
            }
        };
        Attempt {
            method,
            result: Ok(()),
            provisioning_ms: Some(provisioning_ms),
            actual_usd,
            resources,
            leftover,
        }
    }

    /// Probes `planned.key` once (see the module contract).
    /// Runs one probe of `planned` (see the crate doc) and records it: probes by outcome, the
    /// day's spend against the budget.
    /// One trace per probe: its `probe` span holds the cloud calls and the publication,
    /// which carries the trace to the scorer.
    pub async fn probe(&self, planned: &Planned) -> ProbeReport {
        let span = tracing::info_span!(
            parent: None,
            "probe",
            key = %planned.key,
            probe.outcome = tracing::field::Empty,
        );
        let report = self.probe_once(planned).instrument(span.clone()).await;
        span.record("probe.outcome", report.outcome.as_str());
        let now = Utc::now();
        crate::metrics::probed(report.outcome, self.budget.spent(now), self.budget.limit());
        report
    }

    async fn probe_once(&self, planned: &Planned) -> ProbeReport {
        let probe_id = format!("probe-{}", uuid::Uuid::now_v7().simple());
        let key = &planned.key;
        let provider = key.provider.as_str();
        let Some(adapter) = self.adapters.get(&key.region).cloned() else {
            return self
                .skip(
                    probe_id,
                    planned,
                    format!("no cloud adapter for region {}", key.region),
                )
                .await;
        };
        let Some(gpu) = self.catalog.get(key.provider, &key.instance_type).cloned() else {
            return self
                .skip(probe_id, planned, "instance type not in the catalog".into())
                .await;
        };
        if key.market == Market::CapacityBlock {
            return self
                .skip(probe_id, planned, "capacity blocks are not probed".into())
                .await;
        }

        // 1. quota pre-check
        self.limit(provider, "GetServiceQuota").await;
        let mut why = String::from("due");
        match adapter.quota_headroom(&key.instance_type, key.market).await {
            Ok(h) if h.headroom_instances == 0 => {
                return self
                    .skip(
                        probe_id,
                        planned,
                        format!(
                            "quota headroom 0 ({}: limit {} vCPUs, used {})",
                            h.quota_code, h.limit_vcpus, h.used_vcpus
                        ),
                    )
                    .await;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(%key, error = %e, "quota pre-check failed; probing anyway");
                why = format!("due (quota unknown: {})", e.class());
            }
        }

        // 2.-3. budget, audit, cloud
        // GCP has no reservation probe here: insert, then delete
        let first = if key.market == Market::OnDemand
            && key.zone.is_some()
            && key.provider != capsight_proto::domain::Provider::Gcp
        {
            Method::CapacityReservation
        } else {
            Method::Launch
        };
        let mut estimated = 0.0;
        let mut actual = 0.0;
        let mut resources = Vec::new();
        let mut leftovers = Vec::new();
        let mut method = first;
        let mut last: Option<Attempt> = None;
        loop {
            let estimate = self.estimate(&gpu, method);
            let reservation = match self.budget.reserve(estimate, Utc::now()) {
                Ok(r) => r,
                Err(e) if last.is_none() => {
                    return self.skip(probe_id, planned, e.to_string()).await;
                }
                Err(e) => {
                    why = format!("{why}; no fallback: {e}");
                    break;
                }
            };
            let mut row = self.row(&probe_id, planned, PHASE_RESERVED, Utc::now());
            row.method = method_name(method).into();
            row.estimated_usd = estimate;
            row.reason = why.clone();
            if let Err(e) = self.audit.write(&row).await {
                self.budget.settle(reservation, 0.0, Utc::now());
                if last.is_none() {
                    return self
                        .skip(
                            probe_id,
                            planned,
                            format!("not probing without an audit record: {e}"),
                        )
                        .await;
                }
                why = format!("{why}; no fallback: audit unavailable");
                break;
            }
            estimated += estimate;
            let attempt = match method {
                Method::CapacityReservation => self.reserve(&*adapter, key, &gpu, &probe_id).await,
                Method::Launch => self.launch(&*adapter, key, &gpu, &probe_id).await,
            };
            self.budget
                .settle(reservation, attempt.actual_usd, Utc::now());
            actual += attempt.actual_usd;
            resources.extend(attempt.resources.iter().cloned());
            leftovers.extend(attempt.leftover.iter().cloned());
            let fallback = method == Method::CapacityReservation
                && attempt.result.as_ref().is_err_and(|e| {
                    matches!(e.class(), ErrorClass::Permission | ErrorClass::Unknown)
                });
            if fallback {
                let code = attempt
                    .result
                    .as_ref()
                    .err()
                    .and_then(|e| e.code().map(str::to_owned))
                    .unwrap_or_else(|| "error".into());
                why = format!("{why}; fallback to launch: reservation {code}");
                last = Some(attempt);
                method = Method::Launch;
                continue;
            }
            last = Some(attempt);
            break;
        }
        let Some(attempt) = last else {
            return self
                .skip(probe_id, planned, format!("{why}: nothing ran"))
                .await;
        };

        // 4. classify, publish
        let answered_at = Utc::now();
        let (outcome, class, code, message, hinted) = match &attempt.result {
            Ok(()) => (
                LaunchOutcome::Succeeded,
                ErrorClass::None,
                String::new(),
                String::new(),
                Vec::new(),
            ),
            Err(e) => (
                LaunchOutcome::Failed,
                e.class(),
                e.code().unwrap_or_default().to_owned(),
                e.classified()
                    .map(|c| c.message.clone())
                    .unwrap_or_else(|| e.to_string()),
                e.zone_id_hints().to_vec(),
            ),
        };
        let planner_outcome = match class {
            ErrorClass::None => Outcome::Success,
            ErrorClass::Quota | ErrorClass::Permission => Outcome::Skipped,
            _ => Outcome::Failure,
        };
        let signal = Signal {
            id: SignalId::derived(SignalSource::Probe, &[&probe_id]),
            observed_at: answered_at,
            source: SignalSource::Probe,
            tenant: None,
            key: key.clone(),
            payload: Payload::LaunchAttempt(LaunchAttempt {
                outcome,
                error_class: class,
                error_code: code.clone(),
                error_message: message,
                provisioning_ms: attempt.provisioning_ms,
                hinted_zones: hinted,
                hinted_regions: Vec::new(),
                method: match attempt.method {
                    Method::CapacityReservation => ProbeMethod::CapacityReservation,
                    Method::Launch => ProbeMethod::Launch,
                },
                count: 1,
            }),
        };
        // 5. done: the outcome (and the signal: the outbox) is durable before it is published
        let mut row = self.row(&probe_id, planned, PHASE_DONE, answered_at);
        row.method = method_name(attempt.method).into();
        row.estimated_usd = estimated;
        row.actual_usd = actual;
        row.outcome = outcome.as_str().into();
        row.error_class = class.as_str().into();
        row.error_code = code;
        row.provisioning_ms = attempt.provisioning_ms.unwrap_or(0);
        row.resources = resources.join(",");
        row.reason = if leftovers.is_empty() {
            why
        } else {
            format!("{why}; left for the sweeper: {}", leftovers.join(", "))
        };
        row.signal = hex::encode(codec::encode_signal(&signal));
        tracing::info!(probe = %probe_id, key = %key, method = %row.method, outcome = %row.outcome,
            class = %row.error_class, cost_usd = actual, "probe done");
        if let Err(e) = self.audit.write(&row).await {
            // the reserved row stays: a restart counts the estimate, never less
            tracing::error!(probe = %probe_id, error = %e, "audit write failed for a done probe");
        }
        if self.settings.crash_after == "done" {
            crash_now(&probe_id);
        }
        self.publishing.spawn(
            publish_and_mark(
                self.publisher.clone(),
                self.audit.clone(),
                signal.clone(),
                row.clone(),
            )
            .in_current_span(),
        );
        ProbeReport {
            probe_id,
            outcome: planner_outcome,
            signal: Some(signal),
            audit: row,
        }
    }

    async fn reserve(
        &self,
        adapter: &dyn CloudAdapter,
        key: &CapacityKey,
        gpu: &GpuType,
        probe_id: &str,
    ) -> Attempt {
        let Some(zone) = key.zone.clone() else {
            return Attempt::failed(
                Method::CapacityReservation,
                CloudError::Invalid("a reservation needs a zone".into()),
            );
        };
        let now = Utc::now();
        let request = ReservationRequest {
            instance_type: key.instance_type.clone(),
            zone,
            count: 1,
            client_token: probe_id.to_owned(),
            tags: Self::tags(probe_id, now),
            expires_at: Some(
                now + chrono::TimeDelta::from_std(self.settings.reservation_expiry)
                    .unwrap_or(chrono::TimeDelta::minutes(10)),
            ),
        };
        let (created, started) = self
            .call(
                key,
                "CreateCapacityReservation",
                adapter.create_capacity_reservation(&request),
            )
            .await;
        let granted = elapsed_ms(started);
        match created {
            Ok(r) => {
                let cancel = adapter.cancel_capacity_reservation(&r.id);
                let (cancelled, _) = self.call(key, "CancelCapacityReservation", cancel).await;
                let held = started.elapsed();
                self.granted(
                    Method::CapacityReservation,
                    gpu,
                    granted,
                    held,
                    vec![r.id],
                    cancelled,
                )
            }
            Err(e) => Attempt::failed(Method::CapacityReservation, e),
        }
    }

    async fn launch(
        &self,
        adapter: &dyn CloudAdapter,
        key: &CapacityKey,
        gpu: &GpuType,
        probe_id: &str,
    ) -> Attempt {
        let mut request = LaunchRequest::new(
            key.instance_type.clone(),
            key.zone.clone(),
            self.settings.image_id.clone(),
            probe_id,
        )
        .market(key.market);
        request.tags = Self::tags(probe_id, Utc::now());
        let (launched, started) = self
            .call(key, "RunInstances", adapter.launch(&request))
            .await;
        let granted = elapsed_ms(started);
        match launched {
            Ok(instances) => {
                let ids: Vec<_> = instances.iter().map(|i| i.id.clone()).collect();
                let terminate = adapter.terminate(&ids);
                let (terminated, _) = self.call(key, "TerminateInstances", terminate).await;
                let terminated = terminated.map(|_| ());
                let held = started.elapsed().max(cost::MIN_BILLED);
                let resources = ids.iter().map(|i| i.to_string()).collect();
                self.granted(Method::Launch, gpu, granted, held, resources, terminated)
            }
            Err(e) => Attempt::failed(Method::Launch, e),
        }
    }
}

/// Publishes `signal` and, once the broker acknowledged it, appends the `published` row that
/// takes the probe out of the outbox.
async fn publish_and_mark(publisher: Publisher, audit: Audit, signal: Signal, done: ProbeAuditRow) {
    if let Err(e) = publisher.publish(&signal).await {
        tracing::error!(probe = %done.probe_id, error = %e,
            "probe signal not published; it stays in the outbox for the next start");
        return;
    }
    let mut row = done;
    row.phase = PHASE_PUBLISHED.to_owned();
    (row.at, row.at_ms) = split_time(Utc::now());
    if let Err(e) = audit.write(&row).await {
        // published twice at worst: the id is stable and consumers de-duplicate
        tracing::warn!(probe = %row.probe_id, error = %e, "published row not written");
    }
}

fn elapsed_ms(since: Instant) -> u32 {
    u32::try_from(since.elapsed().as_millis()).unwrap_or(u32::MAX)
}

/// The `crash_after` failpoint (tests only): SIGKILL, as an operator's `kill -9` or the OOM
/// killer would.
fn crash_now(probe_id: &str) -> ! {
    tracing::warn!(probe = %probe_id, "crash_after failpoint reached");
    capsight_runtime::failpoint::kill_self("probe.crash_after", "done");
}

/// How long ago `tags` say the prober created a resource, else `fallback` (the cloud's time).
pub fn probe_age(
    tags: &BTreeMap<String, String>,
    fallback: Option<DateTime<Utc>>,
    now: DateTime<Utc>,
) -> Option<Duration> {
    let created = tags
        .get(PROBE_AT_TAG)
        .and_then(|t| t.parse::<i64>().ok())
        .and_then(|s| DateTime::from_timestamp(s, 0))
        .or(fallback)?;
    // a cloud clock ahead of ours reads as brand new
    Some((now - created).to_std().unwrap_or(Duration::ZERO))
}
