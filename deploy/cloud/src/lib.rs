//! The cloud adapter: the one interface through which collectors, gateway preflight and the
//! launcher talk to a cloud, and the only crate that depends on the AWS SDK.
//!
//! Contract of [`CloudAdapter`]:
//! * One adapter = one account (operator's, or a tenant's through [`aws::AwsAdapter::for_tenant`])
//!   in one region. It is `Send + Sync`; hold it as `Arc<dyn CloudAdapter>`.
//! * Zones in and out are AZ **IDs** ([`ZoneId`]); the adapter maps them to the account's AZ
//!   names with `DescribeAvailabilityZones` (cached per adapter).
//! * Every failure is a [`CloudError`] carrying the classified error class (capsight-classify),
//!   the raw code and message, and for capacity errors the hinted zones as AZ IDs.
//! * Throttled and transient failures are retried with exponential backoff and jitter, up to
//!   `cloud.max_attempts`; nothing else is ever retried (a capacity error is an answer, not a
//!   hiccup). The SDK's own retries are disabled so this is the only retry policy.
//! * Launches and reservations are idempotent by their client token.
//! * Endpoint and credentials come only from the standard AWS configuration chain, so
//!   `AWS_ENDPOINT_URL=http://127.0.0.1:5599` points the same code at `cloudsim`.
//! * [`lambda`]: Lambda Cloud over its REST API (`reqwest`), keyed by region (no zones), with
//!   its availability listing; operations Lambda lacks are [`CloudError::Unsupported`].
//! * [`gcp`]: Compute Engine over its REST APIs (`reqwest`), zones by their GCP names,
//!   service-account credentials (`GOOGLE_APPLICATION_CREDENTIALS`); operations it does not
//!   implement are [`CloudError::Unsupported`].
//! * [`azure`]: Azure Compute over Resource Manager's REST API (`reqwest`), keyed by the
//!   subscription's zones mapped to physical zones, Entra ID client credentials; operations it
//!   does not implement are [`CloudError::Unsupported`].
//! * [`runpod`]: RunPod over its GraphQL API (`reqwest`), keyed by cloud type (`secure`,
//!   `community`; no zones), with its stock listing; operations RunPod lacks are
//!   [`CloudError::Unsupported`].
//! * [`tenants`]: adapters acting in *tenants'* accounts (their registered role, assumed with
//!   its external id), for the gateway's account checks and the launcher.

pub mod aws;
pub mod azure;
mod error;
pub mod gcp;
mod http;
pub mod lambda;
pub mod regional;
mod retry;
pub mod runpod;
mod settings;
pub mod tenants;
mod types;

use async_trait::async_trait;
pub use capsight_proto::domain::{InstanceType, Market, Provider, Region, ZoneId};
pub use error::CloudError;
pub use settings::CloudSettings;
pub use types::{
    CapacityBlockOffering, CapacityBlockQuery, CapacityReservation, Instance, InstanceId,
    InstanceState, LaunchRequest, Offering, Permission, PlacementScoreEntry, PlacementScoreQuery,
    QuotaHeadroom, QuotaValue, ReservationRequest, SpotPricePoint, StateChange, ZoneMap,
};

/// One account in one region of one cloud. Only `check_launch_permission` through `terminate`
/// are required; an adapter whose cloud lacks one of the other operations keeps its default,
/// [`CloudError::Unsupported`] for the adapter's provider (no zones, no tagged reservations:
/// none).
#[async_trait]
pub trait CloudAdapter: Send + Sync + std::fmt::Debug {
    /// The cloud.
    fn provider(&self) -> Provider;

    /// The region.
    fn region(&self) -> &Region;

    /// The account's AZ name <-> AZ ID map for the region (cached after the first call); empty
    /// for a cloud without zones.
    async fn zones(&self) -> Result<ZoneMap, CloudError> {
        Ok(ZoneMap::default())
    }

    /// Whether the caller may launch `request` (DryRun): permission only, not capacity or quota.
    async fn check_launch_permission(
        &self,
        request: &LaunchRequest,
    ) -> Result<Permission, CloudError>;

    /// Launches `request.count` instances (all or nothing), idempotent by client token.
    async fn launch(&self, request: &LaunchRequest) -> Result<Vec<Instance>, CloudError>;

    /// Describes instances; an empty slice describes all of the account's in the region.
    async fn describe(&self, ids: &[InstanceId]) -> Result<Vec<Instance>, CloudError>;

    /// Describes the account's instances in the region carrying a tag named `tag_key` (any
    /// value, any state). The probe sweeper finds what probes left behind with it.
    async fn describe_tagged(&self, tag_key: &str) -> Result<Vec<Instance>, CloudError> {
        let _ = tag_key;
        Err(unsupported(self.provider(), "describe_tagged"))
    }

    /// Terminates instances.
    async fn terminate(&self, ids: &[InstanceId]) -> Result<Vec<StateChange>, CloudError>;

    /// Starts stopped instances (warm standbys); may fail with a capacity error.
    async fn start(&self, ids: &[InstanceId]) -> Result<Vec<StateChange>, CloudError> {
        let _ = ids;
        Err(unsupported(self.provider(), "start"))
    }

    /// Stops instances, keeping them as warm standbys.
    async fn stop(&self, ids: &[InstanceId]) -> Result<Vec<StateChange>, CloudError> {
        let _ = ids;
        Err(unsupported(self.provider(), "stop"))
    }

    /// Creates an on-demand capacity reservation (the cheapest capacity probe).
    async fn create_capacity_reservation(
        &self,
        request: &ReservationRequest,
    ) -> Result<CapacityReservation, CloudError> {
        let _ = request;
        Err(unsupported(self.provider(), "create_capacity_reservation"))
    }

    /// Cancels a capacity reservation.
    async fn cancel_capacity_reservation(&self, id: &str) -> Result<(), CloudError> {
        let _ = id;
        Err(unsupported(self.provider(), "cancel_capacity_reservation"))
    }

    /// Describes the account's capacity reservations in the region carrying a tag named
    /// `tag_key` (any value, any state); none on a cloud without capacity reservations.
    async fn describe_tagged_reservations(
        &self,
        tag_key: &str,
    ) -> Result<Vec<CapacityReservation>, CloudError> {
        let _ = tag_key;
        Ok(Vec::new())
    }

    /// Every quota of the account in the region.
    async fn list_quotas(&self) -> Result<Vec<QuotaValue>, CloudError> {
        Err(unsupported(self.provider(), "list_quotas"))
    }

    /// Quota headroom of `instance_type` in `market`, in instances.
    async fn quota_headroom(
        &self,
        instance_type: &InstanceType,
        market: Market,
    ) -> Result<QuotaHeadroom, CloudError> {
        let _ = (instance_type, market);
        Err(unsupported(self.provider(), "quota_headroom"))
    }

    /// Spot price history of `instance_types` (all when empty) since `since`, newest first.
    async fn spot_price_history(
        &self,
        instance_types: &[InstanceType],
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<SpotPricePoint>, CloudError> {
        let _ = (instance_types, since);
        Err(unsupported(self.provider(), "spot_price_history"))
    }

    /// Spot placement scores.
    async fn spot_placement_scores(
        &self,
        query: &PlacementScoreQuery,
    ) -> Result<Vec<PlacementScoreEntry>, CloudError> {
        let _ = query;
        Err(unsupported(self.provider(), "spot_placement_scores"))
    }

    /// Bookable capacity blocks.
    async fn capacity_block_offerings(
        &self,
        query: &CapacityBlockQuery,
    ) -> Result<Vec<CapacityBlockOffering>, CloudError> {
        let _ = query;
        Err(unsupported(self.provider(), "capacity_block_offerings"))
    }

    /// Zones offering each of `instance_types` (all types when empty).
    async fn instance_type_offerings(
        &self,
        instance_types: &[InstanceType],
    ) -> Result<Vec<Offering>, CloudError> {
        let _ = instance_types;
        Err(unsupported(self.provider(), "instance_type_offerings"))
    }
}

/// What an adapter answers for an operation its cloud's API does not have (the trait's default
/// for every AWS capacity API, stop and start, and tags).
pub(crate) fn unsupported(provider: Provider, operation: &'static str) -> CloudError {
    CloudError::Unsupported {
        provider,
        operation,
    }
}
