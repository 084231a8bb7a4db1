//! A job's state machine: resume from its latest transition, preflight (tenant GPU quota),
//! provision (idempotent launch, wait until running), fall back along the ranked alternatives on
//! a capacity error, cancel, and publish every attempt as a signal.

use super::*;

impl Launcher {
    /// The latest recorded transition, or a synthesized `queued` row (seq 0, not written) when
    /// the job has none yet.
    pub(super) async fn latest_or_queued(
        &self,
        job: &Job,
    ) -> Result<Option<LaunchEventRow>, StoreError> {
        if let Some(row) = self
            .store
            .latest(&job.wire.tenant, &job.wire.job_id)
            .await?
        {
            return Ok(Some(row));
        }
        let (at, at_ms) = split_time(Utc::now());
        let mut row = LaunchEventRow {
            job_id: job.wire.job_id.clone(),
            seq: 0,
            tenant: job.wire.tenant.clone(),
            at,
            at_ms,
            state: LaunchState::Queued,
            provider: String::new(),
            region: String::new(),
            zone_id: String::new(),
            instance_type: String::new(),
            market: String::new(),
            instance_id: String::new(),
            attempt: 0,
            error_class: String::new(),
            error_code: String::new(),
            detail: String::new(),
        };
        set_key(&mut row, &job.spec.key);
        Ok(Some(row))
    }

    pub(super) fn crash_point(&self, step: &str) {
        if !self.settings.crash_after.is_empty() && self.settings.crash_after == step {
            capsight_runtime::failpoint::kill_self("launcher.crash_after", step);
        }
    }

    pub(super) async fn append(&self, row: &LaunchEventRow) -> Result<(), Fail> {
        if !fence_held() {
            // another replica may own the job now: it resumes from what is recorded
            return Err(Fail::Unavailable(
                "the job's lease was lost with the broker connection".into(),
            ));
        }
        self.store.append(row).await?;
        tracing::info!(seq = row.seq, state = %row.state, attempt = row.attempt, detail = %row.detail, "launch transition");
        Ok(())
    }

    pub(super) async fn adapter(
        &self,
        job: &Job,
        key: &CapacityKey,
    ) -> Result<Arc<dyn CloudAdapter>, AccountError> {
        match tokio::time::timeout(
            self.settings.cloud_timeout,
            self.clouds
                .adapter_on(&job.tenant, key.provider, &key.region),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Err(AccountError::Cloud(CloudError::Transport {
                operation: "AssumeRole",
                message: format!("no answer within {:?}", self.settings.cloud_timeout),
            })),
        }
    }

    pub(super) async fn timed<T>(
        &self,
        operation: &'static str,
        fut: impl Future<Output = Result<T, CloudError>>,
    ) -> Result<T, CloudError> {
        tokio::time::timeout(self.settings.cloud_timeout, fut)
            .await
            .unwrap_or_else(|_| {
                Err(CloudError::Transport {
                    operation,
                    message: format!("no answer within {:?}", self.settings.cloud_timeout),
                })
            })
    }

    /// Ends the job in `cancelled` after terminating `instances`.
    pub(super) async fn cancel(
        &self,
        prev: &LaunchEventRow,
        adapter: Option<&Arc<dyn CloudAdapter>>,
        instances: &[InstanceId],
    ) -> Result<(), Fail> {
        let mut detail = "cancelled on request".to_owned();
        if !instances.is_empty() {
            if let Some(adapter) = adapter {
                self.timed("TerminateInstances", adapter.terminate(instances))
                    .await
                    .map_err(|e| Fail::Retry(format!("terminating after cancel: {e}")))?;
            }
            let ids: Vec<&str> = instances.iter().map(InstanceId::as_str).collect();
            detail = format!("cancelled on request; terminated {}", ids.join(","));
        }
        let mut row = follow_up(prev, LaunchState::Cancelled, detail);
        if !instances.is_empty() {
            row.instance_id = instances
                .iter()
                .map(InstanceId::as_str)
                .collect::<Vec<_>>()
                .join(",");
        }
        if prev.state == LaunchState::Running {
            // the lifecycle and standby tasks write to running jobs too
            self.store.append_next(row).await?;
            return Ok(());
        }
        self.append(&row).await
    }

    /// Drives `job` from its latest recorded state to an outcome.
    pub(super) async fn process(&self, job: &Job) -> Result<(), Fail> {
        let tenant = job.wire.tenant.as_str();
        let job_id = job.wire.job_id.as_str();
        let Some(mut prev) = self.latest_or_queued(job).await? else {
            return Ok(());
        };
        loop {
            if prev.state.is_terminal() || prev.state == LaunchState::Running {
                tracing::info!(state = %prev.state, "launch job already settled");
                return Ok(());
            }
            let cancelled = self.store.cancel_requested(tenant, job_id).await?;
            match prev.state {
                LaunchState::Queued => {
                    if cancelled {
                        return self.cancel(&prev, None, &[]).await;
                    }
                    let row = follow_up(
                        &prev,
                        LaunchState::Preflight,
                        "checking the tenant's GPU quota",
                    );
                    self.append(&row).await?;
                    self.crash_point("preflight");
                    prev = row;
                }
                LaunchState::Preflight => {
                    if cancelled {
                        return self.cancel(&prev, None, &[]).await;
                    }
                    // one quota decision per tenant at a time (across replicas with leases):
                    // the next job of the tenant sees this one as live (provisioning) once it
                    // passes
                    let _quota_gate = self.quota_gate(tenant).await?;
                    let decided = quota::check(
                        &self.store,
                        &self.catalog,
                        tenant,
                        job_id,
                        job.tenant.gpu_quota,
                        &job.spec.key,
                        job.spec.count,
                    )
                    .await?;
                    if let Some(reason) = decided.refused {
                        let mut row = follow_up(&prev, LaunchState::Failed, reason);
                        row.error_class = "quota".into();
                        row.error_code = quota::EXCEEDED_CODE.into();
                        return self.append(&row).await;
                    }
                    let mut row = follow_up(
                        &prev,
                        LaunchState::Provisioning,
                        format!(
                            "launching {} x {} (attempt 1)",
                            job.spec.count, job.spec.key
                        ),
                    );
                    set_key(&mut row, &job.spec.key);
                    row.attempt = 1;
                    self.append(&row).await?;
                    self.crash_point("provisioning");
                    prev = row;
                }
                LaunchState::Provisioning => match self.provision(job, &prev, cancelled).await? {
                    Some(next) => prev = next,
                    None => return Ok(()),
                },
                // settled: returned above
                LaunchState::Running
                | LaunchState::Terminated
                | LaunchState::Failed
                | LaunchState::Cancelled => return Ok(()),
            }
        }
    }

    /// One provisioning attempt (the one `prev` records). `Ok(Some(row))` = a fallback attempt
    /// was recorded, go on; `Ok(None)` = the job is settled.
    pub(super) async fn provision(
        &self,
        job: &Job,
        prev: &LaunchEventRow,
        cancelled: bool,
    ) -> Result<Option<LaunchEventRow>, Fail> {
        let attempt = prev.attempt.max(1);
        let key = key_of(prev).ok_or_else(|| {
            Fail::Dead(format!(
                "launch_events holds an invalid key for attempt {attempt}"
            ))
        })?;
        let token = client_token(&job.wire.job_id, attempt);
        let adapter = match self.adapter(job, &key).await {
            Ok(a) => a,
            Err(e) => {
                let (class, code, message, retryable) = cloud_failure(&e);
                if retryable {
                    return Err(Fail::Retry(message));
                }
                let mut row = follow_up(prev, LaunchState::Failed, message);
                row.error_class = class;
                row.error_code = code;
                self.append(&row).await?;
                return Ok(None);
            }
        };
        if cancelled {
            // anything this attempt may have launched before a crash
            let mine = self
                .timed("DescribeInstances", adapter.describe(&[]))
                .await
                .map_err(|e| Fail::Retry(e.to_string()))?
                .into_iter()
                .filter(|i| i.client_token.as_deref() == Some(token.as_str()))
                .filter(|i| i.state.is_live())
                .map(|i| i.id)
                .collect::<Vec<_>>();
            self.cancel(prev, Some(&adapter), &mine).await?;
            return Ok(None);
        }
        let mut request = LaunchRequest::new(
            key.instance_type.clone(),
            key.zone.clone(),
            job.spec.image_id.clone(),
            token.clone(),
        )
        .market(key.market)
        .count(job.spec.count)
        .tag("capsight:job", job.wire.job_id.clone())
        .tag("capsight:tenant", job.wire.tenant.clone());
        if key.zone == job.spec.key.zone {
            request.subnet_id = job.spec.subnet_id.clone();
        }
        if key.market == Market::Spot && job.spec.key.market == Market::Spot {
            request.spot_max_price = job.spec.spot_max_price;
        }
        let started = Instant::now();
        match self.timed("RunInstances", adapter.launch(&request)).await {
            Ok(instances) => {
                self.crash_point("launched");
                self.wait_running(job, prev, &key, &adapter, instances, started)
                    .await
            }
            Err(e) if e.class() == ErrorClass::Capacity => {
                self.signal(job, &key, attempt, Err(&e), None).await;
                self.fall_back(job, prev, &key, &e).await
            }
            Err(e) if e.is_retryable() => Err(Fail::Retry(e.to_string())),
            Err(e) => {
                self.signal(job, &key, attempt, Err(&e), None).await;
                let mut row = follow_up(
                    prev,
                    LaunchState::Failed,
                    format!("attempt {attempt} on {key}: {e}"),
                );
                row.error_class = e.class().as_str().to_owned();
                row.error_code = e.code().unwrap_or_default().to_owned();
                self.append(&row).await?;
                Ok(None)
            }
        }
    }

    pub(super) async fn wait_running(
        &self,
        job: &Job,
        prev: &LaunchEventRow,
        key: &CapacityKey,
        adapter: &Arc<dyn CloudAdapter>,
        mut instances: Vec<Instance>,
        started: Instant,
    ) -> Result<Option<LaunchEventRow>, Fail> {
        let ids: Vec<InstanceId> = instances.iter().map(|i| i.id.clone()).collect();
        let deadline = Instant::now() + self.settings.provisioning_timeout;
        loop {
            if instances.iter().all(|i| i.state == InstanceState::Running) && !instances.is_empty()
            {
                break;
            }
            if let Some(gone) = instances.iter().find(|i| !i.state.is_live()) {
                let mut row = follow_up(
                    prev,
                    LaunchState::Failed,
                    format!(
                        "instance {} ended while provisioning: {}",
                        gone.id,
                        gone.state_reason.clone().unwrap_or_default()
                    ),
                );
                row.error_class = "unknown".into();
                row.error_code = "InstanceTerminated".into();
                self.append(&row).await?;
                return Ok(None);
            }
            if self
                .store
                .cancel_requested(&job.wire.tenant, &job.wire.job_id)
                .await?
            {
                self.cancel(prev, Some(adapter), &ids).await?;
                return Ok(None);
            }
            if Instant::now() >= deadline {
                return Err(Fail::Retry(format!(
                    "instances not running after {:?}",
                    self.settings.provisioning_timeout
                )));
            }
            tokio::time::sleep(self.settings.poll_interval).await;
            instances = self
                .timed("DescribeInstances", adapter.describe(&ids))
                .await
                .map_err(|e| Fail::Retry(e.to_string()))?;
        }
        let ms = u32::try_from(started.elapsed().as_millis()).unwrap_or(u32::MAX);
        self.signal(job, key, prev.attempt.max(1), Ok(()), Some(ms))
            .await;
        let mut joined: Vec<&str> = ids.iter().map(InstanceId::as_str).collect();
        joined.sort_unstable();
        let zone = instances
            .first()
            .and_then(|i| i.zone.as_ref().map(|z| z.as_str().to_owned()))
            .unwrap_or_default();
        let mut row = follow_up(
            prev,
            LaunchState::Running,
            format!(
                "{} instance(s) running in {}",
                ids.len(),
                if zone.is_empty() {
                    key.region.as_str()
                } else {
                    zone.as_str()
                }
            ),
        );
        row.instance_id = joined.join(",");
        if key.zone.is_none() && !zone.is_empty() {
            row.zone_id = zone;
        }
        self.append(&row).await?;
        self.crash_point("running");
        Ok(None)
    }

    pub(super) async fn fall_back(
        &self,
        job: &Job,
        prev: &LaunchEventRow,
        key: &CapacityKey,
        error: &CloudError,
    ) -> Result<Option<LaunchEventRow>, Fail> {
        let attempt = prev.attempt.max(1);
        let failure = format!(
            "attempt {attempt} on {key}: {} {}",
            error.code().unwrap_or("capacity"),
            error
                .classified()
                .map(|c| c.message.as_str())
                .unwrap_or_default()
        );
        let fallbacks_used = attempt - 1;
        // the alternative is checked against the tenant's GPU quota like the first attempt
        let _quota_gate = self.quota_gate(&job.wire.tenant).await?;
        let next = if fallbacks_used < job.wire.max_fallbacks {
            self.next_alternative(job).await?
        } else {
            None
        };
        match next {
            Some((alt, reason)) => {
                let mut row = follow_up(
                    prev,
                    LaunchState::Provisioning,
                    format!(
                        "{failure}; falling back to {alt} ({reason}) (attempt {})",
                        attempt + 1
                    ),
                );
                set_key(&mut row, &alt);
                row.attempt = attempt + 1;
                row.instance_id.clear();
                self.append(&row).await?;
                self.crash_point("provisioning");
                Ok(Some(row))
            }
            None => {
                let why = if job.wire.max_fallbacks == 0 {
                    "no fallbacks allowed".to_owned()
                } else if fallbacks_used >= job.wire.max_fallbacks {
                    format!("all {} fallbacks used", job.wire.max_fallbacks)
                } else {
                    "no alternative left within the job's constraints".to_owned()
                };
                let mut row = follow_up(prev, LaunchState::Failed, format!("{failure}; {why}"));
                row.error_class = ErrorClass::Capacity.as_str().to_owned();
                row.error_code = error.code().unwrap_or_default().to_owned();
                self.append(&row).await?;
                Ok(None)
            }
        }
    }

    /// The best-ranked alternative not tried yet that fits the tenant's GPU quota, with its
    /// reason.
    pub(super) async fn next_alternative(
        &self,
        job: &Job,
    ) -> Result<Option<(CapacityKey, String)>, Fail> {
        let room = match job.tenant.gpu_quota {
            Some(quota) => Some(
                quota.saturating_sub(
                    quota::in_use(
                        &self.store,
                        &self.catalog,
                        &job.wire.tenant,
                        &job.wire.job_id,
                    )
                    .await?,
                ),
            ),
            None => None,
        };
        let tried: Vec<CapacityKey> = self
            .store
            .events(&job.wire.tenant, &job.wire.job_id, None)
            .await?
            .iter()
            .filter(|r| r.state == LaunchState::Provisioning)
            .filter_map(key_of)
            .collect();
        let scores = self
            .store
            .latest_scores(self.settings.scores_max_age)
            .await?;
        // ranked as the gateway serves them: aged, unknown when too old or too thin
        let now = chrono::Utc::now();
        let scores: Vec<_> = scores
            .iter()
            .map(|s| Arc::new(self.verdict.served(s, now)))
            .collect();
        let mut constraints = job.constraints.clone();
        constraints.limit = usize::MAX;
        let ranked = alternatives::rank(&job.spec, &constraints, &scores, &self.catalog);
        Ok(ranked.into_iter().find_map(|a| {
            let key = CapacityKey::try_from(a.key?).ok()?;
            let gpus = quota::gpus(
                &self.catalog,
                key.provider.as_str(),
                key.instance_type.as_str(),
                job.spec.count,
            );
            // never a provider the tenant has no usable account on
            (key.market != Market::CapacityBlock
                && (key.provider == job.spec.key.provider
                    || self.clouds.has_account(&job.tenant, key.provider))
                && !tried.contains(&key)
                && room.is_none_or(|room| gpus <= room))
            .then_some((key, a.reason))
        }))
    }

    /// Publishes the launch-attempt signal of `attempt` (failures are logged: the signal is
    /// evidence, the launch goes on without it).
    pub(super) async fn signal(
        &self,
        job: &Job,
        key: &CapacityKey,
        attempt: u32,
        result: Result<(), &CloudError>,
        provisioning_ms: Option<u32>,
    ) {
        let (outcome, payload) = match result {
            Ok(()) => (
                "succeeded",
                LaunchAttempt {
                    outcome: LaunchOutcome::Succeeded,
                    error_class: ErrorClass::None,
                    error_code: String::new(),
                    error_message: String::new(),
                    provisioning_ms,
                    hinted_zones: Vec::new(),
                    hinted_regions: Vec::new(),
                    method: ProbeMethod::Launch,
                    count: job.spec.count,
                },
            ),
            Err(e) => (
                "failed",
                LaunchAttempt {
                    outcome: LaunchOutcome::Failed,
                    error_class: match e.class() {
                        ErrorClass::None => ErrorClass::Unknown,
                        c => c,
                    },
                    error_code: e.code().unwrap_or("Unknown").to_owned(),
                    error_message: e
                        .classified()
                        .map(|c| c.message.clone())
                        .unwrap_or_else(|| e.to_string()),
                    provisioning_ms: None,
                    hinted_zones: e.zone_id_hints().to_vec(),
                    hinted_regions: Vec::new(),
                    method: ProbeMethod::Launch,
                    count: job.spec.count,
                },
            ),
        };
        let signal = Signal {
            id: SignalId::derived(
                SignalSource::Launch,
                &[&job.wire.job_id, &attempt.to_string(), outcome],
            ),
            observed_at: Utc::now(),
            source: SignalSource::Launch,
            tenant: job.tenant_hash.clone(),
            key: key.clone(),
            payload: Payload::LaunchAttempt(payload),
        };
        match tokio::time::timeout(self.settings.cloud_timeout, self.signals.publish(&signal)).await
        {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "launch-attempt signal not published"),
            Err(_) => {
                tracing::warn!("launch-attempt signal not acknowledged in time; it stays buffered")
            }
        }
    }
}
