//! What the world answers without changing: ground truth, pools, status page, identities,
//! zones, instances, prices, stock, quotas, reservations; fault and throttle bookkeeping.

use super::*;

impl World {
    // ---------------------------------------------------------------- reads

    /// The ground truth so far.
    pub fn truth(&self) -> Truth {
        Truth {
            scenario: self.scenario.name.clone(),
            seed: self.seed,
            start: self.start,
            step_seconds: self.scenario.step.as_secs(),
            until_seconds: self.simulated().as_secs(),
            stock: self.truth.clone(),
            events: self.applied.clone(),
        }
    }

    /// Current pools.
    pub fn pools(&self) -> &BTreeMap<PoolKey, PoolState> {
        &self.pools
    }

    /// Every provider's pools under their capacity keys: AWS, Azure, Lambda, GCP, then RunPod.
    pub fn keyed_pools(&self) -> impl Iterator<Item = KeyedPool<'_>> {
        let zonal = |provider| move |(k, p)| KeyedPool::zonal(provider, k, p);
        self.pools
            .iter()
            .map(zonal(SimProvider::Aws))
            .chain(self.azure_pools.iter().map(zonal(SimProvider::Azure)))
            .chain(self.lambda_pools.iter().map(|((region, itype), p)| {
                let key = format!("lambda/{region}//{itype}/on_demand");
                KeyedPool::zoneless(SimProvider::Lambda, key, p)
            }))
            .chain(self.gcp.pools.iter().map(zonal(SimProvider::Gcp)))
            .chain(self.runpod_pools.iter().map(|((cloud, itype, market), p)| {
                let key = format!("runpod/{cloud}//{itype}/{}", market.as_str());
                KeyedPool::zoneless(SimProvider::RunPod, key, p)
            }))
    }

    /// Status-page components and their status.
    pub fn components(&self) -> &BTreeMap<String, String> {
        &self.component_status
    }

    /// Status incidents, oldest first.
    pub fn incidents(&self) -> &[Incident] {
        &self.incidents
    }
    /// Starts the interruption of one running spot instance now (`POST /admin/interrupt`):
    /// rebalance recommendation, then the warning after `rebalance_lead`, then termination
    /// after `interruption_notice`, exactly as a reclaim. `Err` with the reason when the id is
    /// unknown or not a pending/running spot instance.
    pub fn interrupt(&mut self, id: &str, elapsed: Duration) -> Result<(), String> {
        let Some(i) = self.instances.get(id) else {
            return Err(format!("no instance {id}"));
        };
        if i.market != PoolMarket::Spot || !i.state.holds_capacity() {
            return Err(format!("{id} is not a pending or running spot instance"));
        }
        self.schedule_interruptions(&[id.to_owned()], elapsed);
        Ok(())
    }

    /// Adds injected faults.
    pub fn add_fault(&mut self, fault: Fault) {
        self.faults.push(fault);
    }

    /// Drops every pending injected fault.
    pub fn clear_faults(&mut self) {
        self.faults.clear();
    }

    /// Takes one API request token of `account` at real time `now`; `RequestLimitExceeded` when
    /// its bucket is empty (`defaults.api_requests_per_second`, 0 = unlimited). Real time, not
    /// simulated: throttling is about how fast callers call.
    pub fn throttle(&mut self, account: &str, now: std::time::Instant) -> Result<(), ApiError> {
        let rate = self.scenario.defaults.api_requests_per_second;
        if rate <= 0.0 {
            return Ok(());
        }
        let burst = f64::from(self.scenario.defaults.api_burst.max(1));
        let (tokens, last) = self
            .buckets
            .entry(account.to_owned())
            .or_insert((burst, now));
        *tokens = (*tokens + now.saturating_duration_since(*last).as_secs_f64() * rate).min(burst);
        *last = now;
        if *tokens < 1.0 {
            return Err(ApiError::coded(
                "RequestLimitExceeded",
                "Request limit exceeded.",
            ));
        }
        *tokens -= 1.0;
        Ok(())
    }

    /// Consumes one matching fault, if any.
    pub fn take_fault(&mut self, action: &str) -> Option<ApiError> {
        let f = self
            .faults
            .iter_mut()
            .find(|f| f.count > 0 && (f.action == action || f.action == "*"))?;
        f.count -= 1;
        let message = f.message.clone().unwrap_or_else(|| match f.code.as_str() {
            "RequestLimitExceeded" => "Request limit exceeded.".into(),
            "InternalError" => "An internal error has occurred".into(),
            other => format!("Simulated {other} fault"),
        });
        let err = ApiError::coded(f.code.clone(), message);
        self.faults.retain(|f| f.count > 0);
        Some(err)
    }

    /// Consumes one injected fault for `op` of a REST provider (`lambda`, `azure`): faults
    /// whose action is `<provider>/<op>` or `<provider>/*` (an AWS fault, `*` included, never
    /// hits them). Returns (code, message); without a message of its own, the message is
    /// `Simulated <code> fault` unless `default` gives the provider's own.
    pub(super) fn take_provider_fault(
        &mut self,
        provider: &str,
        op: &str,
        default: Option<&str>,
    ) -> Option<(String, String)> {
        let action = format!("{provider}/{op}");
        let any = format!("{provider}/*");
        let f = self
            .faults
            .iter_mut()
            .find(|f| f.count > 0 && (f.action == action || f.action == any))?;
        f.count -= 1;
        let code = f.code.clone();
        let message = f.message.clone().unwrap_or_else(|| {
            default.map_or_else(|| format!("Simulated {code} fault"), str::to_owned)
        });
        self.faults.retain(|f| f.count > 0);
        Some((code, message))
    }

    /// Resolves an access key.
    pub fn identity(&self, access_key_id: &str) -> Option<Identity> {
        if let Some(s) = self.sessions.get(access_key_id) {
            return Some(s.clone());
        }
        let p = self.scenario.principals.iter().find(|p| {
            p.provider == crate::scenario::SimProvider::Aws && p.access_key_id == access_key_id
        })?;
        Some(Identity {
            account: p.account.clone(),
            arn: format!("arn:aws:iam::{}:user/{}", p.account, p.user),
            user_id: format!(
                "AIDA{}",
                p.access_key_id
                    .chars()
                    .rev()
                    .take(16)
                    .collect::<String>()
                    .to_uppercase()
            ),
            allow: p.allow.clone(),
        })
    }

    /// The zones of `region` as (name for `account`, id), in name order.
    pub fn zones(&self, account: &str, region: &str) -> Vec<(String, String)> {
        let zones: Vec<_> = self
            .scenario
            .zones
            .iter()
            .filter(|z| z.region == region)
            .collect();
        let shift = self
            .scenario
            .accounts
            .iter()
            .find(|a| a.id == account)
            .map_or(0, |a| a.zone_shift);
        let n = zones.len();
        let mut out: Vec<(String, String)> = zones
            .iter()
            .enumerate()
            .filter_map(|(i, z)| {
                Some((
                    z.name.clone(),
                    zones.get((i + shift) % n.max(1))?.id.clone(),
                ))
            })
            .collect();
        out.sort();
        out
    }

    /// AZ name of `zone_id` for `account`.
    pub fn zone_name(&self, account: &str, zone_id: &str) -> Option<String> {
        let region = self
            .scenario
            .zones
            .iter()
            .find(|z| z.id == zone_id)?
            .region
            .clone();
        self.zones(account, &region)
            .into_iter()
            .find(|(_, id)| id == zone_id)
            .map(|(name, _)| name)
    }

    /// AZ ID of `name` for `account`.
    pub fn zone_id(&self, account: &str, region: &str, name: &str) -> Option<String> {
        self.zones(account, region)
            .into_iter()
            .find(|(n, _)| n == name)
            .map(|(_, id)| id)
    }

    /// The region's regions list, for placement scores.
    pub fn regions(&self) -> BTreeSet<String> {
        self.scenario
            .zones
            .iter()
            .filter(|z| z.provider != crate::scenario::SimProvider::Azure)
            .map(|z| z.region.clone())
            .collect()
    }

    /// Type info.
    pub fn type_info(&self, instance_type: &str) -> Option<&TypeInfo> {
        self.types.get(instance_type)
    }

    /// The caller's instances.
    pub fn instances(&self, account: &str) -> impl Iterator<Item = &Instance> {
        self.instances
            .values()
            .filter(move |i| i.account == account)
    }

    /// One instance of the caller.
    pub fn instance(&self, account: &str, id: &str) -> Option<&Instance> {
        self.instances.get(id).filter(|i| i.account == account)
    }

    /// Current spot price.
    pub fn spot_price(&self, zone_id: &str, instance_type: &str) -> Option<f64> {
        self.prices
            .get(&(zone_id.to_owned(), instance_type.to_owned()))
            .map(|p| p.current)
    }

    /// Spot price history: (zone id, type, time, price), newest first.
    pub fn spot_history(
        &self,
        region: &str,
        types: &[String],
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
    ) -> Vec<(String, String, DateTime<Utc>, f64)> {
        let mut out = Vec::new();
        for ((zone, itype), price) in &self.prices {
            let in_region = self
                .scenario
                .zones
                .iter()
                .any(|z| z.id == *zone && z.region == region);
            if !in_region || (!types.is_empty() && !types.contains(itype)) {
                continue;
            }
            for (i, (t, p)) in price.history.iter().enumerate() {
                // A point is in range if it was in force at any time of the range.
                let next = price.history.get(i + 1).map(|(t, _)| *t);
                let after_from = from.is_none_or(|f| next.is_none_or(|n| n > f));
                let before_to = to.is_none_or(|e| *t <= e);
                if after_from && before_to {
                    out.push((zone.clone(), itype.clone(), *t, *p));
                }
            }
        }
        out.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.0.cmp(&b.0)));
        out
    }

    /// Stock of a pool (0 when there is no pool).
    pub fn stock(&self, zone_id: &str, instance_type: &str, market: PoolMarket) -> u32 {
        self.pools
            .get(&PoolKey {
                zone_id: zone_id.to_owned(),
                instance_type: instance_type.to_owned(),
                market,
            })
            .map_or(0, |p| p.stock)
    }

    /// Quota value of `code` for `account`.
    pub fn quota(&self, account: &str, code: &str) -> f64 {
        self.quotas
            .get(&(account.to_owned(), code.to_owned()))
            .copied()
            .unwrap_or(self.scenario.defaults.quota_vcpus)
    }

    /// Quota codes known for `account`: the catalog's plus any the account sets.
    pub fn quota_codes(&self, account: &str) -> BTreeSet<String> {
        let mut codes: BTreeSet<String> = self
            .types
            .values()
            .flat_map(|t| std::iter::once(t.quota_on_demand.clone()).chain(t.quota_spot.clone()))
            .collect();
        codes.extend(
            self.quotas
                .keys()
                .filter(|(a, _)| a == account)
                .map(|(_, c)| c.clone()),
        );
        codes
    }

    /// vCPUs used by `account` in `region` against quota `code`.
    pub fn quota_usage(&self, account: &str, region: &str, code: &str) -> f64 {
        self.instances(account)
            .filter(|i| i.region == region && i.state.holds_capacity())
            .filter_map(|i| {
                let t = self.types.get(&i.instance_type)?;
                let c = match i.market {
                    PoolMarket::OnDemand => Some(&t.quota_on_demand),
                    PoolMarket::Spot => t.quota_spot.as_ref(),
                }?;
                (c == code).then_some(f64::from(t.vcpus))
            })
            .sum()
    }

    /// Reservations of the caller.
    pub fn reservation(&self, account: &str, id: &str) -> Option<&Reservation> {
        self.reservations.get(id).filter(|r| r.account == account)
    }

    /// Every reservation of the caller (any state).
    pub fn reservations(&self, account: &str) -> impl Iterator<Item = &Reservation> {
        self.reservations
            .values()
            .filter(move |r| r.account == account)
    }
}
