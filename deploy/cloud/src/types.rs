//! Provider-neutral request and result types of [`crate::CloudAdapter`]. Zones are AZ *IDs*
//! ([`ZoneId`]); AZ names appear only next to them, as the account calls them.

use std::{collections::BTreeMap, fmt};

use capsight_proto::domain::{InstanceType, Market, Region, ZoneId};
use chrono::{DateTime, Utc};

/// A cloud instance id (`i-0123456789abcdef0`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct InstanceId(String);

impl InstanceId {
    /// Wraps a provider instance id; rejects empty or whitespace-containing text.
    pub fn new(id: impl Into<String>) -> Option<Self> {
        let id = id.into();
        (!id.is_empty() && !id.contains(char::is_whitespace)).then_some(Self(id))
    }

    /// The id.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for InstanceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The account's zones: AZ name <-> AZ ID for one region.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ZoneMap {
    by_name: BTreeMap<String, ZoneId>,
}

impl ZoneMap {
    /// From (name, id) pairs.
    pub fn new(pairs: impl IntoIterator<Item = (String, ZoneId)>) -> Self {
        Self {
            by_name: pairs.into_iter().collect(),
        }
    }

    /// The AZ ID of an AZ name.
    pub fn id_of(&self, name: &str) -> Option<&ZoneId> {
        self.by_name.get(name)
    }

    /// The AZ name of an AZ ID.
    pub fn name_of(&self, id: &ZoneId) -> Option<&str> {
        self.by_name
            .iter()
            .find(|(_, z)| *z == id)
            .map(|(n, _)| n.as_str())
    }

    /// (name, id) pairs in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &ZoneId)> {
        self.by_name.iter().map(|(n, z)| (n.as_str(), z))
    }

    /// Number of zones.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// No zones.
    pub fn is_empty(&self) -> bool {
        self.by_name.is_empty()
    }
}

/// What to launch.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchRequest {
    /// Instance type.
    pub instance_type: InstanceType,
    /// AZ ID; `None` lets the cloud choose.
    pub zone: Option<ZoneId>,
    /// On-demand or spot (capacity blocks are launched into a reservation, not supported here).
    pub market: Market,
    /// Spot: the most to pay per hour; `None` = the on-demand price.
    pub spot_max_price: Option<f64>,
    /// Machine image.
    pub image_id: String,
    /// Subnet, if any.
    pub subnet_id: Option<String>,
    /// How many (all or nothing: MinCount = MaxCount = count).
    pub count: u32,
    /// Idempotency token: the same token returns the same instances.
    pub client_token: String,
    /// Tags for the instances.
    pub tags: BTreeMap<String, String>,
}

impl LaunchRequest {
    /// One on-demand instance of `instance_type` in `zone` from `image_id`.
    pub fn new(
        instance_type: InstanceType,
        zone: Option<ZoneId>,
        image_id: impl Into<String>,
        client_token: impl Into<String>,
    ) -> Self {
        Self {
            instance_type,
            zone,
            market: Market::OnDemand,
            spot_max_price: None,
            image_id: image_id.into(),
            subnet_id: None,
            count: 1,
            client_token: client_token.into(),
            tags: BTreeMap::new(),
        }
    }

    /// Sets the market.
    pub fn market(mut self, market: Market) -> Self {
        self.market = market;
        self
    }

    /// Sets a spot max price.
    pub fn spot_max_price(mut self, usd_per_hour: f64) -> Self {
        self.spot_max_price = Some(usd_per_hour);
        self
    }

    /// Adds a tag.
    pub fn tag(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.tags.insert(key.into(), value.into());
        self
    }

    /// Sets the count.
    pub fn count(mut self, count: u32) -> Self {
        self.count = count;
        self
    }
}

/// Instance lifecycle state.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum InstanceState {
    /// Booting.
    Pending,
    /// Running.
    Running,
    /// Terminating.
    ShuttingDown,
    /// Gone.
    Terminated,
    /// Stopping.
    Stopping,
    /// Stopped (a warm standby).
    Stopped,
    /// A state this adapter does not know, verbatim.
    Other(String),
}

impl InstanceState {
    /// Whether an instance in this state still runs or can run again (not terminated or
    /// terminating).
    pub fn is_live(&self) -> bool {
        !matches!(self, Self::Terminated | Self::ShuttingDown)
    }

    /// From the EC2 state name.
    pub fn from_name(name: &str) -> Self {
        match name {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "shutting-down" => Self::ShuttingDown,
            "terminated" => Self::Terminated,
            "stopping" => Self::Stopping,
            "stopped" => Self::Stopped,
            other => Self::Other(other.to_owned()),
        }
    }
}

/// An instance as described by the cloud.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// Id.
    pub id: InstanceId,
    /// Instance type, verbatim.
    pub instance_type: String,
    /// AZ name as the account calls it.
    pub zone_name: String,
    /// AZ ID, when known.
    pub zone: Option<ZoneId>,
    /// State.
    pub state: InstanceState,
    /// On-demand or spot.
    pub market: Market,
    /// Launch (or last start) time.
    pub launch_time: Option<DateTime<Utc>>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// The idempotency token it was launched with.
    pub client_token: Option<String>,
    /// Why the cloud changed its state (e.g. a spot interruption), verbatim.
    pub state_reason: Option<String>,
}

/// A state transition reported by terminate/start/stop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateChange {
    /// Instance.
    pub id: InstanceId,
    /// Before.
    pub previous: InstanceState,
    /// After.
    pub current: InstanceState,
}

/// Result of a DryRun permission check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permission {
    /// `DryRunOperation`: the caller may do it (capacity and quota are not checked).
    Allowed,
    /// `UnauthorizedOperation`: the caller may not; the provider's message says why.
    Denied {
        /// The raw code.
        code: String,
        /// The raw message.
        message: String,
    },
}

impl Permission {
    /// The answer a refused call gives a permission check: `Denied` with the provider's code
    /// and message for a permission error; any other failure stays an error.
    pub(crate) fn refused(err: crate::CloudError) -> Result<Self, crate::CloudError> {
        if err.class() != capsight_proto::domain::ErrorClass::Permission {
            return Err(err);
        }
        let (code, message) = err
            .classified()
            .map(|c| (c.code.clone(), c.message.clone()))
            .unwrap_or_default();
        Ok(Self::Denied { code, message })
    }

    /// The permission a read call's outcome shows for a cloud without DryRun: allowed when it
    /// succeeded, else [`Self::refused`].
    pub(crate) fn of_read<T>(
        read: Result<T, crate::CloudError>,
    ) -> Result<Self, crate::CloudError> {
        read.map_or_else(Self::refused, |_| Ok(Self::Allowed))
    }
}

/// What to reserve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservationRequest {
    /// Instance type.
    pub instance_type: InstanceType,
    /// AZ ID.
    pub zone: ZoneId,
    /// Instances.
    pub count: u32,
    /// Idempotency token.
    pub client_token: String,
    /// Tags.
    pub tags: BTreeMap<String, String>,
    /// When the cloud ends the reservation by itself (`EndDateType=limited`): a safety net for
    /// probes that are cancelled at once anyway. `None` = until cancelled.
    pub expires_at: Option<DateTime<Utc>>,
}

/// A capacity reservation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityReservation {
    /// `cr-...`
    pub id: String,
    /// Instance type.
    pub instance_type: String,
    /// AZ ID.
    pub zone: Option<ZoneId>,
    /// Instances reserved.
    pub count: u32,
    /// `active`, `cancelled`, `expired`, ...
    pub state: String,
    /// When it was created, as the cloud says.
    pub created_at: Option<DateTime<Utc>>,
    /// Tags.
    pub tags: BTreeMap<String, String>,
}

/// One Service Quotas value.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaValue {
    /// Quota code, e.g. `L-417A185B`.
    pub code: String,
    /// Quota name.
    pub name: String,
    /// Value (vCPUs for EC2 instance families).
    pub value: f64,
}

/// Quota headroom of one instance type and market in the adapter's region.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaHeadroom {
    /// The family's quota code.
    pub quota_code: String,
    /// The limit, vCPUs.
    pub limit_vcpus: f64,
    /// vCPUs in use by pending/running instances of the family (catalog types only).
    pub used_vcpus: f64,
    /// vCPUs per instance of the type.
    pub vcpus_per_instance: u32,
    /// floor((limit - used) / vCPUs per instance), never negative.
    pub headroom_instances: u32,
}

/// One spot price observation.
#[derive(Debug, Clone, PartialEq)]
pub struct SpotPricePoint {
    /// Instance type.
    pub instance_type: String,
    /// AZ name.
    pub zone_name: String,
    /// AZ ID, when known.
    pub zone: Option<ZoneId>,
    /// USD per hour.
    pub usd_per_hour: f64,
    /// Since when the price holds.
    pub at: DateTime<Utc>,
}

/// A spot placement score request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementScoreQuery {
    /// Instance types (AWS scores fewer than 3 low).
    pub instance_types: Vec<InstanceType>,
    /// Instances wanted.
    pub target_capacity: u32,
    /// Score per AZ (true) or per region (false).
    pub single_zone: bool,
    /// Regions; empty = the adapter's region.
    pub regions: Vec<Region>,
}

/// A spot placement score.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementScoreEntry {
    /// Region.
    pub region: String,
    /// AZ ID for single-zone requests.
    pub zone: Option<ZoneId>,
    /// 1..=10.
    pub score: u8,
}

/// A capacity-block offering search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CapacityBlockQuery {
    /// Instance type.
    pub instance_type: InstanceType,
    /// Instances.
    pub count: u32,
    /// Duration in hours (multiples of 24).
    pub duration_hours: u32,
    /// Earliest start.
    pub start_after: Option<DateTime<Utc>>,
    /// Latest end.
    pub end_before: Option<DateTime<Utc>>,
}

/// A bookable capacity block.
#[derive(Debug, Clone, PartialEq)]
pub struct CapacityBlockOffering {
    /// Offering id.
    pub id: String,
    /// Instance type.
    pub instance_type: String,
    /// AZ name.
    pub zone_name: String,
    /// AZ ID, when known.
    pub zone: Option<ZoneId>,
    /// Instances.
    pub count: u32,
    /// Start.
    pub start: Option<DateTime<Utc>>,
    /// End.
    pub end: Option<DateTime<Utc>>,
    /// Hours.
    pub duration_hours: u32,
    /// Upfront fee.
    pub upfront_fee: f64,
    /// Currency of the fee.
    pub currency: String,
}

/// An instance type offered in a zone.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Offering {
    /// Instance type.
    pub instance_type: String,
    /// AZ ID.
    pub zone: ZoneId,
}
