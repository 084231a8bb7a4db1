//! The API calls that change the world: launches, state changes, capacity reservations, role
//! assumption, with EC2's error codes and message formats.

use super::*;

/// What a launch, start or reservation asks of a region: `account` wants `itype` in `market`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Ask<'a> {
    account: &'a str,
    region: &'a str,
    itype: &'a str,
    market: PoolMarket,
}

/// `IncorrectInstanceState`: instance `id` cannot be `verb` (`stopped`, `started`).
fn incorrect_state(id: &str, verb: &str) -> ApiError {
    ApiError::bad_request(
        "IncorrectInstanceState",
        format!("The instance '{id}' is not in a state from which it can be {verb}."),
    )
}

impl World {
    // ---------------------------------------------------------------- writes

    pub(super) fn unknown_type(instance_type: &str) -> ApiError {
        ApiError::bad_request(
            "InvalidParameterValue",
            format!("Invalid value '{instance_type}' for InstanceType."),
        )
    }

    /// Zones of the region whose pool has at least `count` stock, by name for `account`.
    pub(super) fn zones_with_stock(&self, ask: Ask<'_>, count: u32) -> Vec<String> {
        self.zones(ask.account, ask.region)
            .into_iter()
            .filter(|(_, id)| self.stock(id, ask.itype, ask.market) >= count.max(1))
            .map(|(name, _)| name)
            .collect()
    }

    /// Whether zone `zone_id` has a pool of `itype` in `market`.
    fn has_pool(&self, zone_id: &str, itype: &str, market: PoolMarket) -> bool {
        self.pools.contains_key(&PoolKey {
            zone_id: zone_id.to_owned(),
            instance_type: itype.to_owned(),
            market,
        })
    }

    /// Zones of the region, as (name, AZ ID) for `account`, that have a pool of `itype` in
    /// `market`.
    fn zones_with_pool(&self, ask: Ask<'_>) -> impl Iterator<Item = (String, String)> + '_ {
        let (itype, market) = (ask.itype.to_owned(), ask.market);
        self.zones(ask.account, ask.region)
            .into_iter()
            .filter(move |(_, id)| self.has_pool(id, &itype, market))
    }

    pub(super) fn capacity_error(
        &self,
        ask: Ask<'_>,
        zone_name: Option<&str>,
        count: u32,
    ) -> ApiError {
        let itype = ask.itype;
        let others: Vec<String> = self
            .zones_with_stock(ask, count)
            .into_iter()
            .filter(|z| Some(z.as_str()) != zone_name)
            .collect();
        let mut message = match zone_name {
            Some(z) => format!(
                "We currently do not have sufficient {itype} capacity in the Availability Zone you requested ({z}). Our system will be working on provisioning additional capacity."
            ),
            None => format!(
                "We currently do not have sufficient {itype} capacity in the Availability Zones you can use. Our system will be working on provisioning additional capacity."
            ),
        };
        if !others.is_empty() {
            message.push_str(&format!(
                " You can currently get {itype} capacity by not specifying an Availability Zone in your request or choosing {}.",
                others.join(", ")
            ));
        }
        ApiError::coded("InsufficientInstanceCapacity", message)
    }

    /// Resolves the zone of a request to (AZ ID, AZ name), or picks the zone with most stock.
    pub(super) fn resolve_zone(
        &self,
        ask: Ask<'_>,
        spec_name: Option<&str>,
        spec_id: Option<&str>,
        count: u32,
    ) -> Result<(String, String), ApiError> {
        if let Some(name) = spec_name {
            let id = self.zone_id(ask.account, ask.region, name).ok_or_else(|| {
                ApiError::bad_request(
                    "InvalidParameterValue",
                    format!("Invalid availability zone: [{name}]"),
                )
            })?;
            return Ok((id, name.to_owned()));
        }
        if let Some(id) = spec_id {
            let name = self
                .zones(ask.account, ask.region)
                .into_iter()
                .find(|(_, i)| i == id)
                .map(|(n, _)| n)
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "InvalidParameterValue",
                        format!("Invalid availability zone ID: [{id}]"),
                    )
                })?;
            return Ok((id.to_owned(), name));
        }
        let best = self
            .zones_with_pool(ask)
            .max_by_key(|(_, id)| self.stock(id, ask.itype, ask.market));
        match best {
            Some((name, id)) => Ok((id, name)),
            None => Err(self.not_offered(ask, None)),
        }
        .and_then(|(id, name)| {
            if self.stock(&id, ask.itype, ask.market) >= count {
                Ok((id, name))
            } else {
                Err(self.capacity_error(ask, None, count))
            }
        })
    }

    /// The error for a zone without a pool of `market`: as on AWS, a type the zone offers (a
    /// pool in the other market) is only out of capacity there (spot and on-demand draw on the
    /// same hardware); a type the zone does not offer at all is `Unsupported`.
    pub(super) fn no_pool(
        &self,
        ask: Ask<'_>,
        (zone_id, zone_name): (&str, &str),
        count: u32,
    ) -> ApiError {
        let other = match ask.market {
            PoolMarket::OnDemand => PoolMarket::Spot,
            PoolMarket::Spot => PoolMarket::OnDemand,
        };
        if self.has_pool(zone_id, ask.itype, other) {
            self.capacity_error(ask, Some(zone_name), count)
        } else {
            self.not_offered(ask, Some(zone_name))
        }
    }

    pub(super) fn not_offered(&self, ask: Ask<'_>, zone_name: Option<&str>) -> ApiError {
        let itype = ask.itype;
        let offered: Vec<String> = self.zones_with_pool(ask).map(|(n, _)| n).collect();
        let mut message = match zone_name {
            Some(z) => format!(
                "Your requested instance type ({itype}) is not supported in your requested Availability Zone ({z})."
            ),
            None => {
                format!("Your requested instance type ({itype}) is not supported in this region.")
            }
        };
        if !offered.is_empty() {
            message.push_str(&format!(
                " Please retry your request by not specifying an Availability Zone or choosing {}.",
                offered.join(", ")
            ));
        }
        ApiError::bad_request("Unsupported", message)
    }

    pub(super) fn check_quota(&self, ask: Ask<'_>, count: u32) -> Result<(), ApiError> {
        let itype = ask.itype;
        let info = self
            .types
            .get(itype)
            .ok_or_else(|| Self::unknown_type(itype))?;
        let code = match ask.market {
            PoolMarket::OnDemand => info.quota_on_demand.clone(),
            PoolMarket::Spot => info
                .quota_spot
                .clone()
                .unwrap_or_else(|| info.quota_on_demand.clone()),
        };
        let limit = self.quota(ask.account, &code);
        let used = self.quota_usage(ask.account, ask.region, &code);
        if used + f64::from(info.vcpus) * f64::from(count) > limit {
            return Err(match ask.market {
                PoolMarket::OnDemand => ApiError::bad_request(
                    "VcpuLimitExceeded",
                    format!(
                        "You have requested more vCPU capacity than your current vCPU limit of {limit} allows for the instance bucket that the specified instance type belongs to. Please visit http://aws.amazon.com/contact-us/ec2-request to request an adjustment to this limit."
                    ),
                ),
                PoolMarket::Spot => ApiError::bad_request(
                    "MaxSpotInstanceCountExceeded",
                    format!(
                        "Max spot instance count exceeded: your current Spot vCPU limit of {limit} for the instance bucket of {itype} would be exceeded."
                    ),
                ),
            });
        }
        Ok(())
    }

    /// RunInstances.
    pub fn run_instances(
        &mut self,
        who: &Identity,
        region: &str,
        spec: LaunchSpec,
        elapsed: Duration,
    ) -> Result<Vec<String>, ApiError> {
        if let Some(token) = &spec.client_token
            && let Some(ids) = self.tokens.get(&(who.account.clone(), token.clone()))
        {
            return Ok(ids.clone());
        }
        let itype = spec.instance_type.clone();
        if !self.types.contains_key(&itype) {
            return Err(Self::unknown_type(&itype));
        }
        if spec.min_count == 0 || spec.max_count < spec.min_count {
            return Err(ApiError::bad_request(
                "InvalidParameterValue",
                "MinCount must be at least 1 and at most MaxCount",
            ));
        }
        let market = spec.market;
        let ask = Ask {
            account: &who.account,
            region,
            itype: &itype,
            market,
        };
        let (zone_id, zone_name) = self.resolve_zone(
            ask,
            spec.zone_name.as_deref(),
            spec.zone_id.as_deref(),
            spec.min_count,
        )?;
        let key = PoolKey {
            zone_id: zone_id.clone(),
            instance_type: itype.clone(),
            market,
        };
        let Some(pool) = self.pools.get(&key).cloned() else {
            return Err(self.no_pool(ask, (&zone_id, &zone_name), spec.min_count));
        };
        if market == PoolMarket::Spot
            && let (Some(max), Some(price)) = (spec.max_price, self.spot_price(&zone_id, &itype))
            && max < price
        {
            return Err(ApiError::bad_request(
                "SpotMaxPriceTooLow",
                format!(
                    "Your Spot request price of {max} is lower than the minimum required Spot request fulfillment price of {price}."
                ),
            ));
        }
        if pool.stock < spec.min_count {
            return Err(self.capacity_error(ask, Some(&zone_name), spec.min_count));
        }
        let count = spec.max_count.min(pool.stock);
        self.check_quota(ask, spec.min_count)?;
        // Launch as many as quota allows between MinCount and the stock.
        let mut count = count;
        while count > spec.min_count && self.check_quota(ask, count).is_err() {
            count -= 1;
        }
        let reservation_id = self.next_id("r", 17);
        let now = self.time_at(elapsed);
        let mut ids = Vec::new();
        for _ in 0..count {
            let id = self.next_id("i", 17);
            let spot_request_id = (market == PoolMarket::Spot).then(|| self.next_id("sir", 12));
            self.instances.insert(
                id.clone(),
                Instance {
                    id: id.clone(),
                    account: who.account.clone(),
                    region: region.to_owned(),
                    reservation_id: reservation_id.clone(),
                    instance_type: itype.clone(),
                    zone_id: zone_id.clone(),
                    market,
                    image_id: spec.image_id.clone(),
                    state: State::Pending,
                    transition_at: Some(elapsed + pool.provisioning),
                    launch_time: now,
                    tags: spec.tags.clone(),
                    client_token: spec.client_token.clone(),
                    spot_request_id,
                    state_reason: None,
                },
            );
            ids.push(id);
        }
        if let Some(p) = self.pools.get_mut(&key) {
            p.stock -= count;
        }
        if market == PoolMarket::Spot {
            for id in &ids {
                if let Some(i) = self.instances.get(id).cloned() {
                    let detail = serde_json::json!({
                        "instance-id": i.id,
                        "spot-instance-request-id": i.spot_request_id,
                    });
                    self.emit(&i, "EC2 Spot Instance Request Fulfillment", detail, elapsed);
                }
            }
        }
        if let Some(token) = spec.client_token {
            self.tokens
                .insert((who.account.clone(), token), ids.clone());
        }
        Ok(ids)
    }

    /// Terminate/stop/start: returns (id, previous, current) per instance.
    pub fn change_state(
        &mut self,
        who: &Identity,
        ids: &[String],
        action: StateAction,
        elapsed: Duration,
    ) -> Result<Vec<(String, State, State)>, ApiError> {
        for id in ids {
            if self.instance(&who.account, id).is_none() {
                return Err(ApiError::bad_request(
                    "InvalidInstanceID.NotFound",
                    format!("The instance ID '{id}' does not exist"),
                ));
            }
        }
        // Validate every instance before changing any, as EC2 does.
        for id in ids {
            let Some(i) = self.instances.get(id) else {
                continue;
            };
            match action {
                StateAction::Stop if i.market == PoolMarket::Spot => {
                    return Err(ApiError::bad_request(
                        "UnsupportedOperation",
                        format!(
                            "The instance '{id}' is a Spot Instance launched as one-time request and cannot be stopped."
                        ),
                    ));
                }
                StateAction::Stop if matches!(i.state, State::ShuttingDown | State::Terminated) => {
                    return Err(incorrect_state(id, "stopped"));
                }
                StateAction::Start
                    if matches!(
                        i.state,
                        State::ShuttingDown | State::Terminated | State::Stopping
                    ) =>
                {
                    return Err(incorrect_state(id, "started"));
                }
                _ => {}
            }
        }
        let mut out = Vec::new();
        for id in ids {
            let Some(i) = self.instances.get(id).cloned() else {
                continue;
            };
            let prev = i.state;
            match action {
                StateAction::Terminate => {
                    if !matches!(prev, State::Terminated | State::ShuttingDown) {
                        self.set_state(
                            id,
                            State::ShuttingDown,
                            Some(elapsed + Duration::from_secs(15)),
                        );
                    }
                }
                StateAction::Stop => match prev {
                    State::Pending | State::Running => {
                        if i.market == PoolMarket::Spot {
                            return Err(ApiError::bad_request(
                                "UnsupportedOperation",
                                format!(
                                    "The instance '{id}' is a Spot Instance launched as one-time request and cannot be stopped."
                                ),
                            ));
                        }
                        self.set_state(
                            id,
                            State::Stopping,
                            Some(elapsed + Duration::from_secs(20)),
                        );
                    }
                    State::Stopping | State::Stopped => {}
                    _ => {
                        return Err(incorrect_state(id, "stopped"));
                    }
                },
                StateAction::Start => match prev {
                    State::Stopped => {
                        let ask = Ask {
                            account: &who.account,
                            region: &i.region,
                            itype: &i.instance_type,
                            market: i.market,
                        };
                        let key = PoolKey {
                            zone_id: i.zone_id.clone(),
                            instance_type: i.instance_type.clone(),
                            market: i.market,
                        };
                        let stock = self.pools.get(&key).map_or(0, |p| p.stock);
                        if stock == 0 {
                            let zone = self.zone_name(&who.account, &i.zone_id);
                            return Err(self.capacity_error(ask, zone.as_deref(), 1));
                        }
                        self.check_quota(ask, 1)?;
                        if let Some(p) = self.pools.get_mut(&key) {
                            p.stock -= 1;
                        }
                        let provisioning = self
                            .pools
                            .get(&key)
                            .map_or(Duration::from_secs(30), |p| p.provisioning);
                        let now = self.time_at(elapsed);
                        if let Some(inst) = self.instances.get_mut(id) {
                            inst.state = State::Pending;
                            inst.transition_at = Some(elapsed + provisioning);
                            inst.launch_time = now;
                        }
                    }
                    State::Pending | State::Running => {}
                    _ => {
                        return Err(incorrect_state(id, "started"));
                    }
                },
            }
            let cur = self.instances.get(id).map_or(prev, |i| i.state);
            out.push((id.clone(), prev, cur));
        }
        Ok(out)
    }

    /// CreateCapacityReservation.
    pub fn create_reservation(
        &mut self,
        who: &Identity,
        region: &str,
        spec: ReservationSpec,
        elapsed: Duration,
    ) -> Result<String, ApiError> {
        let ReservationSpec {
            instance_type,
            zone_name,
            zone_id,
            count,
            tags,
            client_token: token,
            end_date,
        } = spec;
        let itype = instance_type.as_str();
        let (zone_name, zone_id) = (zone_name.as_deref(), zone_id.as_deref());
        let now = self.time_at(elapsed);
        let ends = match end_date {
            Some(end) if end <= now => {
                return Err(ApiError::bad_request(
                    "InvalidParameterValue",
                    "The end date must be in the future.",
                ));
            }
            Some(end) => {
                Some(elapsed + self.simulated_span((end - now).to_std().unwrap_or_default()))
            }
            None => None,
        };
        if let Some(t) = &token
            && let Some(id) = self
                .reservation_tokens
                .get(&(who.account.clone(), t.clone()))
        {
            return Ok(id.clone());
        }
        if !self.types.contains_key(itype) {
            return Err(Self::unknown_type(itype));
        }
        if zone_name.is_none() && zone_id.is_none() {
            return Err(ApiError::bad_request(
                "MissingParameter",
                "The request must contain the parameter AvailabilityZone or AvailabilityZoneId",
            ));
        }
        let market = PoolMarket::OnDemand;
        let ask = Ask {
            account: &who.account,
            region,
            itype,
            market,
        };
        let (zid, zname) = self.resolve_zone(ask, zone_name, zone_id, count)?;
        let key = PoolKey {
            zone_id: zid.clone(),
            instance_type: itype.to_owned(),
            market,
        };
        let Some(stock) = self.pools.get(&key).map(|p| p.stock) else {
            return Err(self.no_pool(ask, (&zid, &zname), count));
        };
        if stock < count {
            return Err(self.capacity_error(ask, Some(&zname), count));
        }
        self.check_quota(ask, count)?;
        if let Some(p) = self.pools.get_mut(&key) {
            p.stock -= count;
        }
        let id = self.next_id("cr", 17);
        self.reservations.insert(
            id.clone(),
            Reservation {
                id: id.clone(),
                account: who.account.clone(),
                region: region.to_owned(),
                instance_type: itype.to_owned(),
                zone_id: zid,
                count,
                state: "active",
                created: self.time_at(elapsed),
                ends,
                tags,
            },
        );
        if let Some(t) = token {
            self.reservation_tokens
                .insert((who.account.clone(), t), id.clone());
        }
        Ok(id)
    }

    /// CancelCapacityReservation.
    pub fn cancel_reservation(&mut self, who: &Identity, id: &str) -> Result<(), ApiError> {
        if self.reservation(&who.account, id).is_none() {
            return Err(ApiError::bad_request(
                "InvalidCapacityReservationId.NotFound",
                format!("The capacity reservation ID '{id}' does not exist"),
            ));
        }
        self.release_reservation(id, "cancelled");
        Ok(())
    }

    /// Ends an active reservation (`cancelled` or `expired`) and returns its stock.
    pub(super) fn release_reservation(&mut self, id: &str, state: &'static str) {
        let Some(r) = self.reservations.get_mut(id) else {
            return;
        };
        if r.state != "active" {
            return;
        }
        r.state = state;
        let key = PoolKey {
            zone_id: r.zone_id.clone(),
            instance_type: r.instance_type.clone(),
            market: PoolMarket::OnDemand,
        };
        let count = r.count;
        if let Some(p) = self.pools.get_mut(&key)
            && !p.stocked_out
        {
            p.stock = p.stock.saturating_add(count).min(p.capacity);
        }
    }

    /// AssumeRole: returns the session's (access key, secret, token).
    pub fn assume_role(
        &mut self,
        who: &Identity,
        role_arn: &str,
        session_name: &str,
        external_id: Option<&str>,
    ) -> Result<(String, String, String, Identity), ApiError> {
        let denied = || {
            ApiError::new(
                403,
                "AccessDenied",
                format!(
                    "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
                    who.arn
                ),
            )
        };
        if !who.may("sts:AssumeRole") {
            return Err(denied());
        }
        let role = self
            .scenario
            .roles
            .iter()
            .find(|r| r.arn == role_arn)
            .cloned()
            .ok_or_else(denied)?;
        let external_id_ok = match role.external_id.as_deref() {
            None => true,
            Some(required) => external_id == Some(required),
        };
        if !role.trusted_accounts.contains(&who.account) || !external_id_ok {
            return Err(denied());
        }
        let account = role.account().unwrap_or_default().to_owned();
        let key = self.next_id("ASIA", 16).replace('-', "").to_uppercase();
        let secret = format!("{:040x}", self.counter.wrapping_mul(0x2545_F491_4F6C_DD1D));
        let token = format!("FQoGZXIvYXdzE{}", key);
        let identity = Identity {
            account: account.clone(),
            arn: format!(
                "arn:aws:sts::{account}:assumed-role/{}/{session_name}",
                role.name()
            ),
            user_id: format!("AROA{}:{session_name}", key.get(4..).unwrap_or("")),
            allow: role.allow.clone(),
        };
        self.sessions.insert(key.clone(), identity.clone());
        Ok((key, secret, token, identity))
    }
}
