//! The EC2 Query API subset (version 2016-11-15): form-encoded `Action=...` in, XML out.
//!
//! Actions: RunInstances, DescribeInstances, TerminateInstances, StartInstances, StopInstances,
//! CreateCapacityReservation, CancelCapacityReservation, DescribeCapacityReservations,
//! DescribeAvailabilityZones,
//! DescribeSpotPriceHistory, GetSpotPlacementScores, DescribeCapacityBlockOfferings,
//! DescribeInstanceTypeOfferings. Each checks the caller's permission (`ec2:<Action>`) first;
//! with `DryRun=true` that check is all that happens, answered with `DryRunOperation` (HTTP 412)
//! or `UnauthorizedOperation` (403), as AWS does. Element names follow the EC2 API reference (the
//! real SDK's deserializers match on them). Unknown actions get `InvalidAction`.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::{
    error::ApiError,
    params::{Params, invalid},
    scenario::PoolMarket,
    world::{
        Identity, Instance, LaunchSpec, Reservation, ReservationSpec, State, StateAction, World,
    },
    xml::{EC2_NS, Xml},
};

/// Formats a timestamp the way EC2 does.
pub fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// A request in context.
#[derive(Debug)]
pub struct Call<'a> {
    /// The caller.
    pub who: &'a Identity,
    /// Signing region.
    pub region: &'a str,
    /// Parameters.
    pub params: &'a Params,
    /// Simulated time since start.
    pub elapsed: Duration,
    /// Request id.
    pub request_id: &'a str,
}

/// Handles one EC2 action; `Ok` is the XML body.
pub fn handle(world: &mut World, action: &str, call: &Call<'_>) -> Result<String, ApiError> {
    const ACTIONS: &[&str] = &[
        "RunInstances",
        "DescribeInstances",
        "TerminateInstances",
        "StartInstances",
        "StopInstances",
        "CreateCapacityReservation",
        "CancelCapacityReservation",
        "DescribeCapacityReservations",
        "DescribeAvailabilityZones",
        "DescribeSpotPriceHistory",
        "GetSpotPlacementScores",
        "DescribeCapacityBlockOfferings",
        "DescribeInstanceTypeOfferings",
    ];
    if !ACTIONS.contains(&action) {
        return Err(ApiError::bad_request(
            "InvalidAction",
            format!("The action {action} is not valid for this web service."),
        ));
    }
    if !call.who.may(&format!("ec2:{action}")) {
        return Err(ApiError::coded(
            "UnauthorizedOperation",
            format!(
                "You are not authorized to perform this operation. User: {} is not authorized to perform: ec2:{action} because no identity-based policy allows the ec2:{action} action.",
                call.who.arn
            ),
        ));
    }
    if call.params.flag("DryRun")? {
        return Err(ApiError::coded(
            "DryRunOperation",
            "Request would have succeeded, but DryRun flag is set.",
        ));
    }
    if let Some(fault) = world.take_fault(action) {
        return Err(fault);
    }
    let root = format!("{action}Response");
    let mut x = Xml::document(&root, EC2_NS);
    x.leaf("requestId", call.request_id);
    match action {
        "RunInstances" => run_instances(world, call, &mut x)?,
        "DescribeInstances" => describe_instances(world, call, &mut x)?,
        "TerminateInstances" => change_state(world, call, StateAction::Terminate, &mut x)?,
        "StartInstances" => change_state(world, call, StateAction::Start, &mut x)?,
        "StopInstances" => change_state(world, call, StateAction::Stop, &mut x)?,
        "CreateCapacityReservation" => create_reservation(world, call, &mut x)?,
        "CancelCapacityReservation" => {
            world.cancel_reservation(call.who, call.params.required("CapacityReservationId")?)?;
            x.leaf("return", "true");
        }
        "DescribeCapacityReservations" => describe_reservations(world, call, &mut x)?,
        "DescribeAvailabilityZones" => describe_zones(world, call, &mut x),
        "DescribeSpotPriceHistory" => spot_history(world, call, &mut x)?,
        "GetSpotPlacementScores" => placement_scores(world, call, &mut x)?,
        "DescribeCapacityBlockOfferings" => capacity_blocks(world, call, &mut x)?,
        _ => type_offerings(world, call, &mut x)?,
    }
    Ok(x.finish(&root))
}

fn market_of(params: &Params) -> Result<PoolMarket, ApiError> {
    match params.get("InstanceMarketOptions.MarketType") {
        None => Ok(PoolMarket::OnDemand),
        Some("spot") => Ok(PoolMarket::Spot),
        Some(other) => Err(invalid("InstanceMarketOptions.MarketType", other)),
    }
}

fn run_instances(world: &mut World, call: &Call<'_>, x: &mut Xml) -> Result<(), ApiError> {
    let p = call.params;
    let max_price = p
        .get("InstanceMarketOptions.SpotOptions.MaxPrice")
        .map(|v| {
            v.parse::<f64>()
                .map_err(|_| invalid("InstanceMarketOptions.SpotOptions.MaxPrice", v))
        })
        .transpose()?;
    let spec = LaunchSpec {
        instance_type: p.get("InstanceType").unwrap_or("m1.small").to_owned(),
        zone_name: p.get("Placement.AvailabilityZone").map(str::to_owned),
        zone_id: p.get("Placement.AvailabilityZoneId").map(str::to_owned),
        market: market_of(p)?,
        max_price,
        min_count: p.required_number("MinCount")?,
        max_count: p.required_number("MaxCount")?,
        image_id: p.required("ImageId")?.to_owned(),
        tags: p.tags(),
        client_token: p
            .get("ClientToken")
            .filter(|t| !t.is_empty())
            .map(str::to_owned),
    };
    let ids = world.run_instances(call.who, call.region, spec, call.elapsed)?;
    let first = ids
        .first()
        .and_then(|id| world.instance(&call.who.account, id));
    x.opt("reservationId", first.map(|i| i.reservation_id.clone()))
        .leaf("ownerId", &call.who.account)
        .open("groupSet")
        .close("groupSet")
        .open("instancesSet");
    for id in &ids {
        if let Some(i) = world.instance(&call.who.account, id) {
            instance_xml(world, i, x);
        }
    }
    x.close("instancesSet");
    Ok(())
}

fn instance_xml(world: &World, i: &Instance, x: &mut Xml) {
    let zone_name = world.zone_name(&i.account, &i.zone_id).unwrap_or_default();
    let vcpus = world.type_info(&i.instance_type).map_or(2, |t| t.vcpus);
    x.open("item")
        .leaf("instanceId", &i.id)
        .leaf("imageId", &i.image_id)
        .open("instanceState")
        .leaf("code", i.state.code())
        .leaf("name", i.state.name())
        .close("instanceState")
        .leaf("privateDnsName", "")
        .leaf("dnsName", "")
        .leaf("amiLaunchIndex", 0)
        .leaf("instanceType", &i.instance_type)
        .leaf("launchTime", ts(i.launch_time))
        .open("placement")
        .leaf("availabilityZone", &zone_name)
        .leaf("availabilityZoneId", &i.zone_id)
        .leaf("tenancy", "default")
        .close("placement")
        .open("monitoring")
        .leaf("state", "disabled")
        .close("monitoring")
        .leaf("architecture", "x86_64")
        .leaf("rootDeviceType", "ebs")
        .leaf("hypervisor", "xen")
        .leaf("virtualizationType", "hvm");
    if let Some(sir) = &i.spot_request_id {
        x.leaf("instanceLifecycle", "spot")
            .leaf("spotInstanceRequestId", sir);
    }
    x.opt("clientToken", i.client_token.as_deref());
    if let Some((code, message)) = &i.state_reason {
        x.open("stateReason")
            .leaf("code", code)
            .leaf("message", message)
            .close("stateReason");
    }
    x.open("tagSet");
    for (k, v) in &i.tags {
        x.open("item").leaf("key", k).leaf("value", v).close("item");
    }
    x.close("tagSet")
        .open("cpuOptions")
        .leaf("coreCount", vcpus / 2)
        .leaf("threadsPerCore", 2)
        .close("cpuOptions")
        .close("item");
}

/// AWS's answer to a describe call naming an id the account does not have: `code`, "The
/// `what` '<id>' does not exist".
fn all_known(
    ids: &[String],
    code: &'static str,
    what: &str,
    known: impl Fn(&str) -> bool,
) -> Result<(), ApiError> {
    match ids.iter().find(|id| !known(id)) {
        Some(id) => Err(ApiError::bad_request(
            code,
            format!("The {what} '{id}' does not exist"),
        )),
        None => Ok(()),
    }
}

fn describe_instances(world: &mut World, call: &Call<'_>, x: &mut Xml) -> Result<(), ApiError> {
    let ids = call.params.list("InstanceId");
    all_known(&ids, "InvalidInstanceID.NotFound", "instance ID", |id| {
        world.instance(&call.who.account, id).is_some()
    })?;
    let filters = call.params.filters();
    let matches = |i: &Instance| -> bool {
        (ids.is_empty() || ids.contains(&i.id))
            && i.region == call.region
            && filters.iter().all(|(name, values)| {
                let has = |v: &str| values.iter().any(|x| x == v);
                match name.as_str() {
                    "instance-state-name" => has(i.state.name()),
                    "instance-type" => has(&i.instance_type),
                    "availability-zone" => world
                        .zone_name(&i.account, &i.zone_id)
                        .is_some_and(|z| has(&z)),
                    "availability-zone-id" => has(&i.zone_id),
                    "instance-lifecycle" => i.spot_request_id.is_some() && has("spot"),
                    "client-token" => i.client_token.as_deref().is_some_and(has),
                    "instance-id" => has(&i.id),
                    other => match other.strip_prefix("tag:") {
                        Some(key) => i.tags.iter().any(|(k, v)| k == key && has(v)),
                        None => other == "tag-key" && i.tags.iter().any(|(k, _)| has(k)),
                    },
                }
            })
    };
    let mut by_reservation: std::collections::BTreeMap<&str, Vec<&Instance>> = Default::default();
    for i in world.instances(&call.who.account).filter(|i| matches(i)) {
        by_reservation
            .entry(i.reservation_id.as_str())
            .or_default()
            .push(i);
    }
    x.open("reservationSet");
    for (rid, instances) in by_reservation {
        x.open("item")
            .leaf("reservationId", rid)
            .leaf("ownerId", &call.who.account)
            .open("groupSet")
            .close("groupSet")
            .open("instancesSet");
        for i in instances {
            instance_xml(world, i, x);
        }
        x.close("instancesSet").close("item");
    }
    x.close("reservationSet");
    Ok(())
}

fn change_state(
    world: &mut World,
    call: &Call<'_>,
    action: StateAction,
    x: &mut Xml,
) -> Result<(), ApiError> {
    let ids = call.params.list("InstanceId");
    if ids.is_empty() {
        return Err(ApiError::bad_request(
            "MissingParameter",
            "The request must contain the parameter InstanceId",
        ));
    }
    let changes = world.change_state(call.who, &ids, action, call.elapsed)?;
    x.open("instancesSet");
    for (id, prev, cur) in changes {
        x.open("item").leaf("instanceId", id);
        state_xml(x, "currentState", cur);
        state_xml(x, "previousState", prev);
        x.close("item");
    }
    x.close("instancesSet");
    Ok(())
}

fn state_xml(x: &mut Xml, name: &str, s: State) {
    x.open(name)
        .leaf("code", s.code())
        .leaf("name", s.name())
        .close(name);
}

fn create_reservation(world: &mut World, call: &Call<'_>, x: &mut Xml) -> Result<(), ApiError> {
    let p = call.params;
    let itype = p.required("InstanceType")?;
    p.required("InstancePlatform")?;
    let count: u32 = p.required_number("InstanceCount")?;
    if count == 0 {
        return Err(invalid("InstanceCount", "0"));
    }
    let end_date = match p.get("EndDateType").unwrap_or("unlimited") {
        "unlimited" => None,
        "limited" => Some(p.time("EndDate")?.ok_or_else(|| {
            ApiError::bad_request(
                "MissingParameter",
                "EndDate is required when EndDateType is limited",
            )
        })?),
        other => return Err(invalid("EndDateType", other)),
    };
    let spec = ReservationSpec {
        instance_type: itype.to_owned(),
        zone_name: p.get("AvailabilityZone").map(str::to_owned),
        zone_id: p.get("AvailabilityZoneId").map(str::to_owned),
        count,
        tags: p.tags(),
        client_token: p
            .get("ClientToken")
            .filter(|t| !t.is_empty())
            .map(str::to_owned),
        end_date,
    };
    let id = world.create_reservation(call.who, call.region, spec, call.elapsed)?;
    let Some(r) = world.reservation(&call.who.account, &id) else {
        return Err(ApiError::coded("InternalError", "reservation vanished"));
    };
    x.open("capacityReservation");
    reservation_xml(world, r, x);
    x.close("capacityReservation");
    Ok(())
}

/// The fields of a reservation inside an already opened element.
fn reservation_xml(world: &World, r: &Reservation, x: &mut Xml) {
    let zone_name = world.zone_name(&r.account, &r.zone_id).unwrap_or_default();
    x.leaf("capacityReservationId", &r.id)
        .leaf("ownerId", &r.account)
        .leaf(
            "capacityReservationArn",
            format!(
                "arn:aws:ec2:{}:{}:capacity-reservation/{}",
                r.region, r.account, r.id
            ),
        )
        .leaf("availabilityZoneId", &r.zone_id)
        .leaf("instanceType", &r.instance_type)
        .leaf("instancePlatform", "Linux/UNIX")
        .leaf("availabilityZone", zone_name)
        .leaf("tenancy", "default")
        .leaf("totalInstanceCount", r.count)
        .leaf(
            "availableInstanceCount",
            if r.state == "active" { r.count } else { 0 },
        )
        .leaf("ebsOptimized", "false")
        .leaf("ephemeralStorage", "false")
        .leaf("state", r.state)
        .leaf("startDate", ts(r.created))
        .leaf(
            "endDateType",
            if r.ends.is_some() {
                "limited"
            } else {
                "unlimited"
            },
        )
        .opt("endDate", r.ends.map(|e| ts(world.time_at(e))))
        .leaf("instanceMatchCriteria", "open")
        .leaf("createDate", ts(r.created))
        .open("tagSet");
    for (k, v) in &r.tags {
        x.open("item").leaf("key", k).leaf("value", v).close("item");
    }
    x.close("tagSet");
}

/// DescribeCapacityReservations: `CapacityReservationId.N`; filters `state`, `instance-type`,
/// `availability-zone`, `availability-zone-id`, `tag:K`, `tag-key`. No pagination.
fn describe_reservations(world: &World, call: &Call<'_>, x: &mut Xml) -> Result<(), ApiError> {
    let ids = call.params.list("CapacityReservationId");
    all_known(
        &ids,
        "InvalidCapacityReservationId.NotFound",
        "capacity reservation ID",
        |id| world.reservation(&call.who.account, id).is_some(),
    )?;
    let filters = call.params.filters();
    x.open("capacityReservationSet");
    for r in world.reservations(&call.who.account) {
        let keep = (ids.is_empty() || ids.contains(&r.id))
            && r.region == call.region
            && filters.iter().all(|(name, values)| {
                let has = |v: &str| values.iter().any(|x| x == v);
                match name.as_str() {
                    "state" => has(r.state),
                    "instance-type" => has(&r.instance_type),
                    "availability-zone" => world
                        .zone_name(&r.account, &r.zone_id)
                        .is_some_and(|z| has(&z)),
                    "availability-zone-id" => has(&r.zone_id),
                    other => match other.strip_prefix("tag:") {
                        Some(key) => r.tags.iter().any(|(k, v)| k == key && has(v)),
                        None => other == "tag-key" && r.tags.iter().any(|(k, _)| has(k)),
                    },
                }
            });
        if keep {
            x.open("item");
            reservation_xml(world, r, x);
            x.close("item");
        }
    }
    x.close("capacityReservationSet");
    Ok(())
}

fn describe_zones(world: &World, call: &Call<'_>, x: &mut Xml) {
    let names = call.params.list("ZoneName");
    let ids = call.params.list("ZoneId");
    let filters = call.params.filters();
    x.open("availabilityZoneInfo");
    for (name, id) in world.zones(&call.who.account, call.region) {
        let keep = (names.is_empty() || names.contains(&name))
            && (ids.is_empty() || ids.contains(&id))
            && filters.iter().all(|(f, values)| match f.as_str() {
                "zone-name" => values.contains(&name),
                "zone-id" => values.contains(&id),
                "region-name" => values.iter().any(|v| v == call.region),
                "state" => values.iter().any(|v| v == "available"),
                _ => true,
            });
        if !keep {
            continue;
        }
        x.open("item")
            .leaf("zoneName", &name)
            .leaf("zoneState", "available")
            .leaf("regionName", call.region)
            .leaf("zoneId", &id)
            .leaf("zoneType", "availability-zone")
            .leaf("optInStatus", "opt-in-not-required")
            .leaf("groupName", call.region)
            .leaf("networkBorderGroup", call.region)
            .open("messageSet")
            .close("messageSet")
            .close("item");
    }
    x.close("availabilityZoneInfo");
}

fn spot_history(world: &World, call: &Call<'_>, x: &mut Xml) -> Result<(), ApiError> {
    let p = call.params;
    let types = p.list("InstanceType");
    let from = p.time("StartTime")?;
    let to = p.time("EndTime")?;
    let zone = p.get("AvailabilityZone");
    let zone_id = p.get("AvailabilityZoneId");
    let max: usize = p.number("MaxResults")?.unwrap_or(1000).clamp(1, 10_000);
    let offset: usize = p.get("NextToken").and_then(|t| t.parse().ok()).unwrap_or(0);
    let rows: Vec<_> = world
        .spot_history(call.region, &types, from, to)
        .into_iter()
        .filter_map(|(zid, itype, t, price)| {
            let name = world.zone_name(&call.who.account, &zid)?;
            let keep = zone.is_none_or(|z| z == name) && zone_id.is_none_or(|z| z == zid);
            keep.then_some((zid, name, itype, t, price))
        })
        .collect();
    x.open("spotPriceHistorySet");
    for (zid, name, itype, t, price) in rows.iter().skip(offset).take(max) {
        x.open("item")
            .leaf("availabilityZone", name)
            .leaf("availabilityZoneId", zid)
            .leaf("instanceType", itype)
            .leaf("productDescription", "Linux/UNIX")
            .leaf("spotPrice", format!("{price:.6}"))
            .leaf("timestamp", ts(*t))
            .close("item");
    }
    x.close("spotPriceHistorySet");
    let next = offset.saturating_add(max);
    x.leaf(
        "nextToken",
        if next < rows.len() {
            next.to_string()
        } else {
            String::new()
        },
    );
    Ok(())
}

fn placement_scores(world: &World, call: &Call<'_>, x: &mut Xml) -> Result<(), ApiError> {
    let p = call.params;
    let types = p.list("InstanceType");
    if types.is_empty() {
        return Err(ApiError::bad_request(
            "InvalidParameterValue",
            "InstanceTypes or InstanceRequirementsWithMetadata must be specified",
        ));
    }
    let target: u32 = p.required_number("TargetCapacity")?;
    let per_unit = match p.get("TargetCapacityUnitType") {
        Some("vcpu") => {
            let vcpus: Vec<u32> = types
                .iter()
                .filter_map(|t| world.type_info(t).map(|i| i.vcpus))
                .collect();
            let mean = vcpus
                .iter()
                .sum::<u32>()
                .checked_div(u32::try_from(vcpus.len()).unwrap_or(1))
                .unwrap_or(1);
            mean.max(1)
        }
        _ => 1,
    };
    let instances = target.div_ceil(per_unit).max(1);
    let single = p.flag("SingleAvailabilityZone")?;
    let regions: Vec<String> = {
        let asked = p.list("RegionName");
        world
            .regions()
            .into_iter()
            .filter(|r| asked.is_empty() || asked.contains(r))
            .collect()
    };
    let cap = if types.len() < world.scenario().defaults.placement_min_types {
        3
    } else {
        10
    };
    let score = |stock: u32| -> u32 {
        let ratio = f64::from(stock) / f64::from(instances.saturating_mul(2));
        let s = 1.0 + (9.0 * ratio.min(1.0)).round();
        (s as u32).clamp(1, cap)
    };
    let mut rows: Vec<(String, Option<String>, u32)> = Vec::new();
    for region in regions {
        let zones = world.zones(&call.who.account, &region);
        let stock_in = |zone_id: &str| -> u32 {
            types
                .iter()
                .map(|t| world.stock(zone_id, t, PoolMarket::Spot))
                .sum()
        };
        if single {
            for (_, id) in &zones {
                rows.push((region.clone(), Some(id.clone()), score(stock_in(id))));
            }
        } else {
            let total = zones.iter().map(|(_, id)| stock_in(id)).sum();
            rows.push((region.clone(), None, score(total)));
        }
    }
    rows.sort_by(|a, b| b.2.cmp(&a.2).then_with(|| a.1.cmp(&b.1)));
    x.open("spotPlacementScoreSet");
    for (region, zone_id, s) in rows {
        x.open("item")
            .leaf("region", region)
            .opt("availabilityZoneId", zone_id)
            .leaf("score", s)
            .close("item");
    }
    x.close("spotPlacementScoreSet");
    Ok(())
}

fn capacity_blocks(world: &World, call: &Call<'_>, x: &mut Xml) -> Result<(), ApiError> {
    let p = call.params;
    let itype = p.required("InstanceType")?;
    let count: u32 = p.required_number("InstanceCount")?;
    let hours: u32 = p.required_number("CapacityDurationHours")?;
    if hours == 0 || !hours.is_multiple_of(24) {
        return Err(ApiError::bad_request(
            "InvalidParameterValue",
            "The capacity duration must be a multiple of 24 hours.",
        ));
    }
    let from = p.time("StartDateRange")?;
    let to = p.time("EndDateRange")?;
    let now = world_now(world, call.elapsed);
    x.open("capacityBlockOfferingSet");
    for (n, b) in world.scenario().capacity_blocks.iter().enumerate() {
        if b.instance_type != itype || count > b.instance_count {
            continue;
        }
        let Some(zone_name) = world.zone_name(&call.who.account, &b.zone) else {
            continue;
        };
        if !world
            .zones(&call.who.account, call.region)
            .iter()
            .any(|(_, id)| *id == b.zone)
        {
            continue;
        }
        let earliest = now + chrono::Duration::from_std(b.start_in).unwrap_or_default();
        let mut start = earliest
            .date_naive()
            .and_hms_opt(11, 30, 0)
            .map(|d| d.and_utc())
            .unwrap_or(earliest);
        if start < earliest {
            start += chrono::Duration::days(1);
        }
        if let Some(f) = from
            && start < f
        {
            start = f;
        }
        let Some(end) = start.checked_add_signed(chrono::Duration::hours(i64::from(hours))) else {
            return Err(invalid("CapacityDurationHours", &hours.to_string()));
        };
        if to.is_some_and(|t| end > t) {
            continue;
        }
        let fee = b.usd_per_instance_hour * f64::from(count) * f64::from(hours);
        x.open("item")
            .leaf(
                "capacityBlockOfferingId",
                format!(
                    "cbo-{:017x}",
                    (n as u64 + 1) * 0x1f3d_5b79 + u64::from(hours)
                ),
            )
            .leaf("instanceType", itype)
            .leaf("availabilityZone", zone_name)
            .leaf("instanceCount", count)
            .leaf("startDate", ts(start))
            .leaf("endDate", ts(end))
            .leaf("capacityBlockDurationHours", hours)
            .leaf("upfrontFee", format!("{fee:.2}"))
            .leaf("currencyCode", "USD")
            .leaf("tenancy", "default")
            .close("item");
    }
    x.close("capacityBlockOfferingSet");
    Ok(())
}

fn world_now(world: &World, elapsed: Duration) -> DateTime<Utc> {
    world.time_at(elapsed)
}

fn type_offerings(world: &World, call: &Call<'_>, x: &mut Xml) -> Result<(), ApiError> {
    let location_type = call.params.get("LocationType").unwrap_or("region");
    if !["region", "availability-zone", "availability-zone-id"].contains(&location_type) {
        return Err(invalid("LocationType", location_type));
    }
    let filters = call.params.filters();
    let zones = world.zones(&call.who.account, call.region);
    let mut rows = std::collections::BTreeSet::new();
    for key in world.pools().keys() {
        let Some((name, id)) = zones.iter().find(|(_, id)| *id == key.zone_id) else {
            continue;
        };
        let location = match location_type {
            "region" => call.region.to_owned(),
            "availability-zone" => name.clone(),
            _ => id.clone(),
        };
        let keep = filters.iter().all(|(f, values)| match f.as_str() {
            "instance-type" => values.iter().any(|v| {
                v == &key.instance_type
                    || v.strip_suffix('*')
                        .is_some_and(|p| key.instance_type.starts_with(p))
            }),
            "location" => values.contains(&location),
            _ => true,
        });
        if keep {
            rows.insert((key.instance_type.clone(), location));
        }
    }
    x.open("instanceTypeOfferingSet");
    for (itype, location) in rows {
        x.open("item")
            .leaf("instanceType", itype)
            .leaf("locationType", location_type)
            .leaf("location", location)
            .close("item");
    }
    x.close("instanceTypeOfferingSet");
    Ok(())
}
