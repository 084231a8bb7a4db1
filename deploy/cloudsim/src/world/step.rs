//! The world's clock: each simulated step applies due scenario events, delayed actions
//! (interruption warnings, terminations), the seeded random market, settles instance states,
//! records the ground truth, and queues the EventBridge events it causes.

use super::*;

impl World {
    // ---------------------------------------------------------------- time

    /// Runs every step due by `elapsed` (simulated time since the start).
    pub fn advance(&mut self, elapsed: Duration) {
        let step = self.scenario.step;
        loop {
            let next = step * u32::try_from(self.steps_done + 1).unwrap_or(u32::MAX);
            if next > elapsed {
                break;
            }
            self.steps_done += 1;
            self.apply_events(next);
            self.apply_delayed(next);
            self.random_step(next);
            self.record(next.as_secs());
        }
        self.settle_instances(elapsed);
    }

    pub(super) fn apply_events(&mut self, now: Duration) {
        while let Some(event) = self.scenario.events.get(self.next_event) {
            let offset = self
                .scenario
                .repeat
                .map_or(Duration::ZERO, |r| r * self.cycle);
            if event.at + offset > now {
                break;
            }
            let kind = event.kind.clone();
            self.next_event += 1;
            if self.next_event == self.scenario.events.len() && self.scenario.repeat.is_some() {
                self.next_event = 0;
                self.cycle += 1;
            }
            tracing::info!(at = ?now, event = ?kind, "scenario event");
            let label = format!("{kind:?}");
            let name = label
                .split([' ', '{'])
                .next()
                .unwrap_or_default()
                .to_owned();
            self.applied.push((now.as_secs(), name, label));
            self.apply_event(kind, now);
        }
    }

    pub(super) fn apply_event(&mut self, kind: EventKind, now: Duration) {
        match kind {
            EventKind::Stockout { .. } | EventKind::Recover { .. } => {
                if let Some(e) = kind.pool_event() {
                    self.apply_pool_event(e, now);
                }
            }
            EventKind::PriceSpike {
                zone,
                instance_type,
                factor,
                duration,
            } => {
                for ((z, t), price) in &mut self.prices {
                    if *t == instance_type && zone.as_ref().is_none_or(|zz| zz == z) {
                        price.spike = Some((factor, now + duration));
                    }
                }
            }
            EventKind::InterruptionStorm {
                zone,
                instance_type,
                fraction,
            } => {
                let candidates: Vec<String> = self
                    .running_spot(zone.as_deref(), instance_type.as_deref())
                    .map(|i| i.id.clone())
                    .collect();
                let victims: Vec<String> = candidates
                    .into_iter()
                    .filter(|_| self.rng.random::<f64>() < fraction)
                    .collect();
                self.schedule_interruptions(&victims, now);
            }
            EventKind::Quota {
                account,
                code,
                value,
            } => {
                self.quotas.insert((account, code), value);
            }
            EventKind::Status {
                component,
                status,
                title,
                body,
            } => self.status_change(now, component, status, title, body),
            EventKind::Fault {
                action,
                code,
                count,
                message,
            } => self.faults.push(Fault {
                action,
                code,
                count,
                message,
            }),
        }
    }

    /// A `stockout` or `recover` on any provider's pool; a stockout with `interrupt` of a spot
    /// pool also interrupts its running AWS instances or RunPod pods.
    fn apply_pool_event(&mut self, e: PoolEvent<'_>, now: Duration) {
        let zonal = || PoolKey {
            zone_id: e.zone.to_owned(),
            instance_type: e.instance_type.to_owned(),
            market: e.market,
        };
        let (region, itype) = (e.region.to_owned(), e.instance_type.to_owned());
        let pool = match e.provider {
            SimProvider::Aws => self.pools.get_mut(&zonal()),
            SimProvider::Azure => self.azure_pools.get_mut(&zonal()),
            SimProvider::Gcp => self.gcp.pools.get_mut(&zonal()),
            SimProvider::Lambda => self.lambda_pools.get_mut(&(region, itype)),
            SimProvider::RunPod => self.runpod_pools.get_mut(&(region, itype, e.market)),
        };
        if let Some(pool) = pool {
            match e.recover {
                Some(stock) => pool.recover(stock),
                None => pool.stock_out(),
            }
        }
        if !(e.interrupt && e.market == PoolMarket::Spot) {
            return;
        }
        match e.provider {
            SimProvider::Aws => {
                let victims: Vec<String> = self
                    .running_spot(Some(e.zone), Some(e.instance_type))
                    .map(|i| i.id.clone())
                    .collect();
                self.schedule_interruptions(&victims, now);
            }
            SimProvider::RunPod => self.interrupt_runpod(e.region, e.instance_type),
            SimProvider::Azure | SimProvider::Gcp | SimProvider::Lambda => {}
        }
    }

    /// Spot instances holding capacity (pending or running), in `zone` and of `instance_type`
    /// when given.
    fn running_spot<'a>(
        &'a self,
        zone: Option<&'a str>,
        instance_type: Option<&'a str>,
    ) -> impl Iterator<Item = &'a Instance> {
        self.instances.values().filter(move |i| {
            i.market == PoolMarket::Spot
                && i.state.holds_capacity()
                && zone.is_none_or(|z| z == i.zone_id)
                && instance_type.is_none_or(|t| t == i.instance_type)
        })
    }

    pub(super) fn schedule_interruptions(&mut self, victims: &[String], now: Duration) {
        let lead = self.scenario.defaults.rebalance_lead;
        let notice = self.scenario.defaults.interruption_notice;
        for id in victims {
            // An instance already on its way out is not interrupted twice.
            if self.delayed.iter().any(|(_, d, _)| d == id) {
                continue;
            }
            if let Some(i) = self.instances.get(id).cloned() {
                self.emit(
                    &i,
                    "EC2 Instance Rebalance Recommendation",
                    serde_json::json!({
                        "instance-id": i.id,
                    }),
                    now,
                );
                self.delayed
                    .push((now + lead, id.clone(), Delayed::Warning));
                self.delayed
                    .push((now + lead + notice, id.clone(), Delayed::Terminate));
            }
        }
    }

    pub(super) fn apply_delayed(&mut self, now: Duration) {
        let (due, rest): (Vec<_>, Vec<_>) = std::mem::take(&mut self.delayed)
            .into_iter()
            .partition(|(t, _, _)| *t <= now);
        self.delayed = rest;
        for (_, id, what) in due {
            let Some(instance) = self.instances.get(&id).cloned() else {
                continue;
            };
            if !instance.state.holds_capacity() {
                continue;
            }
            match what {
                Delayed::Warning => self.emit(
                    &instance,
                    "EC2 Spot Instance Interruption Warning",
                    serde_json::json!({"instance-id": id, "instance-action": "terminate"}),
                    now,
                ),
                Delayed::Terminate => {
                    self.set_state(&id, State::Terminated, None);
                    if let Some(i) = self.instances.get_mut(&id) {
                        i.state_reason = Some((
                            "Server.SpotInstanceTermination".into(),
                            "Server.SpotInstanceTermination: Spot instance termination".into(),
                        ));
                    }
                    self.emit(
                        &instance,
                        "EC2 Instance State-change Notification",
                        serde_json::json!({"instance-id": id, "state": "terminated"}),
                        now,
                    );
                }
            }
        }
    }

    pub(super) fn random_step(&mut self, now: Duration) {
        let hours = self.scenario.step.as_secs_f64() / 3600.0;
        let mut reclaim: Vec<(PoolKey, u32)> = Vec::new();
        for (key, pool) in &mut self.pools {
            // Always draw, so a pool's state never shifts another pool's randomness.
            let refill = arrivals(&mut self.rng, pool.refill_per_hour * hours);
            let demand = arrivals(&mut self.rng, pool.demand_per_hour * hours);
            if pool.stocked_out {
                pool.stock = 0;
                continue;
            }
            let stock = i64::from(pool.stock) + i64::from(refill) - i64::from(demand);
            if stock < 0 && key.market == PoolMarket::Spot {
                // Demand the pool cannot meet reclaims running spot instances.
                reclaim.push((key.clone(), u32::try_from(-stock).unwrap_or(u32::MAX)));
            }
            pool.stock = u32::try_from(stock.clamp(0, i64::from(pool.capacity))).unwrap_or(0);
        }
        for (key, shortfall) in reclaim {
            let victims: Vec<String> = self
                .running_spot(Some(&key.zone_id), Some(&key.instance_type))
                .filter(|i| !self.delayed.iter().any(|(_, d, _)| *d == i.id))
                .map(|i| i.id.clone())
                .take(usize::try_from(shortfall).unwrap_or(usize::MAX))
                .collect();
            self.schedule_interruptions(&victims, now);
        }
        let time = self.time_at(now);
        for ((zone, itype), price) in &mut self.prices {
            let noise = normal(&mut self.rng);
            price.level += 0.1 * (0.0 - price.level) + price.volatility * noise;
            if price.spike.is_some_and(|(_, until)| until <= now) {
                price.spike = None;
            }
            let scarcity = self
                .pools
                .get(&PoolKey {
                    zone_id: zone.clone(),
                    instance_type: itype.clone(),
                    market: PoolMarket::Spot,
                })
                .map_or(1.0, |p| {
                    1.0 + 0.6 * (1.0 - f64::from(p.stock) / f64::from(p.capacity.max(1)))
                });
            let spike = price.spike.map_or(1.0, |(f, _)| f);
            let value =
                round4((price.base * (1.0 + price.level) * scarcity * spike).max(price.base * 0.1));
            if value != price.current {
                price.current = value;
                price.history.push_back((time, value));
                if price.history.len() > PRICE_HISTORY_CAP {
                    price.history.pop_front();
                }
            }
        }
        // Lambda pools draw after every AWS draw, RunPod pools after those, Azure's last: a
        // scenario without them keeps its randomness.
        for pool in self
            .lambda_pools
            .values_mut()
            .chain(self.runpod_pools.values_mut())
        {
            pool.drift(&mut self.rng, hours);
        }
        for pool in self.azure_pools.values_mut() {
            pool.drift(&mut self.rng, hours);
        }
        // GCP pools draw from their own RNG: AWS and Lambda randomness stays as it was.
        self.gcp.drift(hours);
    }

    pub(super) fn record(&mut self, secs: u64) {
        let points: Vec<(String, u32)> =
            self.keyed_pools().map(|p| (p.key, p.state.stock)).collect();
        for (name, stock) in points {
            let series = self.truth.entry(name).or_default();
            if series.last().is_none_or(|(_, s)| *s != stock) {
                series.push((secs, stock));
            }
        }
    }

    /// Moves transitional states whose time has come and expires limited reservations.
    pub(super) fn settle_instances(&mut self, elapsed: Duration) {
        let expired: Vec<String> = self
            .reservations
            .values()
            .filter(|r| r.state == "active" && r.ends.is_some_and(|e| e <= elapsed))
            .map(|r| r.id.clone())
            .collect();
        for id in expired {
            self.release_reservation(&id, "expired");
        }
        self.settle_lambda(elapsed);
        self.settle_gcp(elapsed);
        self.settle_azure(elapsed);
        self.settle_runpod(elapsed);
        for i in self.instances.values_mut() {
            if let Some(at) = i.transition_at
                && at <= elapsed
            {
                i.state = match i.state {
                    State::Pending => State::Running,
                    State::ShuttingDown => State::Terminated,
                    State::Stopping => State::Stopped,
                    s => s,
                };
                i.transition_at = None;
            }
        }
    }

    pub(super) fn set_state(&mut self, id: &str, to: State, transition: Option<Duration>) {
        let Some(i) = self.instances.get_mut(id) else {
            return;
        };
        let held = i.state.holds_capacity();
        let holds = to.holds_capacity();
        i.state = to;
        i.transition_at = transition;
        let key = PoolKey {
            zone_id: i.zone_id.clone(),
            instance_type: i.instance_type.clone(),
            market: i.market,
        };
        if held
            && !holds
            && let Some(pool) = self.pools.get_mut(&key)
            && !pool.stocked_out
        {
            pool.stock = (pool.stock + 1).min(pool.capacity);
        }
    }

    pub(super) fn emit(
        &mut self,
        i: &Instance,
        detail_type: &str,
        detail: serde_json::Value,
        now: Duration,
    ) {
        let zone_name = self.zone_name(&i.account, &i.zone_id).unwrap_or_default();
        self.outbox.push(serde_json::json!({
            "version": "0",
            "id": uuid::Uuid::new_v4().to_string(),
            "detail-type": detail_type,
            "source": "aws.ec2",
            "account": i.account,
            "time": self.time_at(now).format("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "region": i.region,
            "resources": [format!("arn:aws:ec2:{zone_name}:{}:instance/{}", i.account, i.id)],
            "detail": detail,
        }));
    }

    /// EventBridge events produced since the last call.
    pub fn take_outbox(&mut self) -> Vec<serde_json::Value> {
        std::mem::take(&mut self.outbox)
    }

    pub(super) fn status_change(
        &mut self,
        now: Duration,
        component: String,
        status: String,
        title: String,
        body: String,
    ) {
        let time = self.time_at(now);
        self.component_status
            .insert(component.clone(), status.clone());
        let open = self
            .incidents
            .iter_mut()
            .find(|i| i.component == component && i.resolved_at.is_none());
        match (open, status == "operational") {
            (Some(incident), true) => {
                incident.resolved_at = Some(time);
                incident.updates.push((
                    time,
                    "resolved".into(),
                    if body.is_empty() {
                        "This incident has been resolved.".into()
                    } else {
                        body
                    },
                ));
            }
            (Some(incident), false) => {
                incident.status = status;
                incident.updates.push((time, "identified".into(), body));
            }
            (None, true) => {}
            (None, false) => {
                let id = self.next_id("inc", 12);
                self.incidents.push(Incident {
                    id,
                    component,
                    title: if title.is_empty() {
                        "Service disruption".into()
                    } else {
                        title
                    },
                    status,
                    updates: vec![(time, "investigating".into(), body)],
                    started_at: time,
                    resolved_at: None,
                });
            }
        }
    }
}
