//! AWS implementation of [`CloudAdapter`] over `aws-sdk-ec2`, `aws-sdk-servicequotas` and
//! `aws-sdk-sts`.
//!
//! Construction: [`AwsAdapter::from_env`] loads the standard AWS configuration chain
//! (`aws_config::defaults(BehaviorVersion::latest())`: `AWS_ENDPOINT_URL*`, `AWS_REGION`,
//! profiles, `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`, instance roles);
//! [`AwsAdapter::from_sdk_config`] takes an already-built [`SdkConfig`] (tests build one per test
//! instead of mutating the process environment). [`AwsAdapter::for_tenant`] assumes a role in a
//! tenant's account with an external id and returns an adapter acting as that account.
//!
//! Retries: the SDK's retry layer is disabled; [`AwsAdapter`] retries throttled/transient errors
//! itself with `backon`'s exponential backoff so the classification decides, not the HTTP status
//! (EC2 sends `InsufficientInstanceCapacity` as HTTP 500, which the SDK would retry). Every
//! attempt is a `cloud.call` span (named by the API action) in the caller's trace.

use std::{collections::BTreeMap, future::Future, sync::Arc};

use async_trait::async_trait;
use aws_config::{BehaviorVersion, SdkConfig, retry::RetryConfig, timeout::TimeoutConfig};
use aws_sdk_ec2::{
    error::{ProvideErrorMetadata, SdkError},
    primitives::DateTime as AwsDateTime,
    types::{
        CapacityReservationInstancePlatform, EndDateType, Filter, InstanceMarketOptionsRequest,
        InstanceType as Ec2InstanceType, LocationType, MarketType, Placement, ResourceType,
        SpotMarketOptions, Tag, TagSpecification, TargetCapacityUnitType,
    },
};
use capsight_catalog::Catalog;
use capsight_classify::classify;
use capsight_proto::domain::{InstanceType, Market, Provider, Region, ZoneId};
use chrono::{DateTime, Utc};
use tokio::sync::OnceCell;

use crate::{
    CloudAdapter, CloudError, CloudSettings,
    types::{
        CapacityBlockOffering, CapacityBlockQuery, CapacityReservation, Instance, InstanceId,
        InstanceState, LaunchRequest, Offering, Permission, PlacementScoreEntry,
        PlacementScoreQuery, QuotaHeadroom, QuotaValue, ReservationRequest, SpotPricePoint,
        StateChange, ZoneMap,
    },
};

mod adapter;

/// Instance state changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StateOp {
    Terminate,
    Start,
    Stop,
}

impl StateOp {
    fn operation(self) -> &'static str {
        match self {
            Self::Terminate => "TerminateInstances",
            Self::Start => "StartInstances",
            Self::Stop => "StopInstances",
        }
    }
}

/// The EC2 adapter for one account and region.
#[derive(Debug, Clone)]
pub struct AwsAdapter {
    sdk: SdkConfig,
    settings: CloudSettings,
    region: Region,
    catalog: Arc<Catalog>,
    ec2: aws_sdk_ec2::Client,
    quotas: aws_sdk_servicequotas::Client,
    sts: aws_sdk_sts::Client,
    zones: Arc<OnceCell<ZoneMap>>,
}

/// A page of a listing, continued by its `next_token`.
trait Page {
    fn next_token(&self) -> Option<&str>;
}

macro_rules! pages {
    ($($output:ty),+ $(,)?) => {
        $(impl Page for $output {
            fn next_token(&self) -> Option<&str> {
                <$output>::next_token(self)
            }
        })+
    };
}

pages!(
    aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput,
    aws_sdk_ec2::operation::describe_capacity_reservations::DescribeCapacityReservationsOutput,
    aws_sdk_ec2::operation::describe_spot_price_history::DescribeSpotPriceHistoryOutput,
    aws_sdk_ec2::operation::describe_instance_type_offerings::DescribeInstanceTypeOfferingsOutput,
    aws_sdk_servicequotas::operation::list_service_quotas::ListServiceQuotasOutput,
);

/// Builds a [`CloudError`] from any SDK error.
fn sdk_error<E, R>(operation: &'static str, err: SdkError<E, R>) -> CloudError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    match &err {
        SdkError::ServiceError(service) => {
            let meta = service.err();
            let code = meta.code().unwrap_or("Unknown");
            let message = meta.message().unwrap_or("");
            let request_id = meta.meta().extra("aws_request_id").map(str::to_owned);
            CloudError::Api {
                operation,
                classified: Box::new(classify(Provider::Aws, code, message)),
                zone_id_hints: Vec::new(),
                request_id,
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => CloudError::Transport {
            operation,
            message: aws_sdk_ec2::error::DisplayErrorContext(&err).to_string(),
        },
        SdkError::ConstructionFailure(_) => CloudError::Invalid(format!(
            "{operation}: {}",
            aws_sdk_ec2::error::DisplayErrorContext(&err)
        )),
        _ => CloudError::Response {
            operation,
            message: aws_sdk_ec2::error::DisplayErrorContext(&err).to_string(),
        },
    }
}

fn to_chrono(t: &AwsDateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(t.secs(), t.subsec_nanos())
}

fn to_aws(t: DateTime<Utc>) -> AwsDateTime {
    AwsDateTime::from_secs(t.timestamp())
}

/// A well-formed AZ ID of `region`, if `text` is one.
fn zone_id_in(region: &Region, text: Option<&str>) -> Option<ZoneId> {
    ZoneId::parse_optional("zone", Provider::Aws, region, text?)
        .ok()
        .flatten()
}

/// The key/value pairs of EC2 tags (a tag without a key is dropped).
fn tag_map(tags: &[Tag]) -> BTreeMap<String, String> {
    tags.iter()
        .filter_map(|t| Some((t.key()?.to_owned(), t.value().unwrap_or("").to_owned())))
        .collect()
}

fn tag_spec(resource: ResourceType, tags: &BTreeMap<String, String>) -> Option<TagSpecification> {
    (!tags.is_empty()).then(|| {
        TagSpecification::builder()
            .resource_type(resource)
            .set_tags(Some(
                tags.iter()
                    .map(|(k, v)| Tag::builder().key(k).value(v).build())
                    .collect(),
            ))
            .build()
    })
}

impl AwsAdapter {
    /// An adapter over the standard AWS configuration chain.
    pub async fn from_env(
        settings: CloudSettings,
        catalog: Arc<Catalog>,
    ) -> Result<Self, CloudError> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if !settings.region.is_empty() {
            loader = loader.region(aws_config::Region::new(settings.region.clone()));
        }
        let sdk = loader.load().await;
        Self::from_sdk_config(sdk, settings, catalog)
    }

    /// An adapter over an already-loaded SDK configuration (`settings.region`, when set,
    /// overrides its region).
    pub fn from_sdk_config(
        sdk: SdkConfig,
        settings: CloudSettings,
        catalog: Arc<Catalog>,
    ) -> Result<Self, CloudError> {
        let region_name = if settings.region.is_empty() {
            sdk.region().map(|r| r.to_string()).ok_or_else(|| {
                CloudError::Invalid(
                    "no AWS region: set AWS_REGION, a profile region or cloud.region".into(),
                )
            })?
        } else {
            settings.region.clone()
        };
        let region = Region::parse("cloud.region", Provider::Aws, &region_name)
            .map_err(|e| CloudError::Invalid(e.to_string()))?;
        let aws_region = aws_config::Region::new(region_name);
        let timeouts = TimeoutConfig::builder()
            .operation_attempt_timeout(settings.operation_timeout)
            .build();
        // Every client: the region, the per-attempt timeout, and no SDK retries (`retrying`
        // retries, with the class of the error known).
        macro_rules! client {
            ($service:ident) => {
                $service::Client::from_conf(
                    $service::config::Builder::from(&sdk)
                        .region(aws_region.clone())
                        .retry_config(RetryConfig::disabled())
                        .timeout_config(timeouts.clone())
                        .build(),
                )
            };
        }
        let (ec2, quotas, sts) = (
            client!(aws_sdk_ec2),
            client!(aws_sdk_servicequotas),
            client!(aws_sdk_sts),
        );
        Ok(Self {
            sdk,
            settings,
            region,
            catalog,
            ec2,
            quotas,
            sts,
            zones: Arc::new(OnceCell::new()),
        })
    }

    /// An adapter acting in a tenant's account: assumes `role_arn` with `external_id` (checked
    /// now, so a wrong role or external id fails here with a `permission` error) and refreshes
    /// the session credentials before they expire.
    pub async fn for_tenant(&self, role_arn: &str, external_id: &str) -> Result<Self, CloudError> {
        let session = self.settings.role_session_name.clone();
        self.sdk_call("AssumeRole", || {
            self.sts
                .assume_role()
                .role_arn(role_arn)
                .role_session_name(&session)
                .external_id(external_id)
                .send()
        })
        .await?;
        let provider = aws_config::sts::AssumeRoleProvider::builder(role_arn)
            .external_id(external_id)
            .session_name(session)
            .configure(&self.sdk)
            .build()
            .await;
        let sdk = self
            .sdk
            .to_builder()
            .credentials_provider(aws_sdk_ec2::config::SharedCredentialsProvider::new(
                provider,
            ))
            .build();
        Self::from_sdk_config(sdk, self.settings.clone(), self.catalog.clone())
    }

    /// The caller's account id and ARN (STS GetCallerIdentity).
    pub async fn caller_identity(&self) -> Result<(String, String), CloudError> {
        let out = self
            .sdk_call("GetCallerIdentity", || {
                self.sts.get_caller_identity().send()
            })
            .await?;
        Ok((
            out.account().unwrap_or_default().to_owned(),
            out.arn().unwrap_or_default().to_owned(),
        ))
    }

    /// Runs `call` in the adapters' retry loop ([`crate::retry::retrying`]).
    async fn retrying<T, F, Fut>(&self, operation: &'static str, call: F) -> Result<T, CloudError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CloudError>>,
    {
        crate::retry::retrying(&self.settings, "aws-api", operation, call).await
    }

    /// Sends the SDK request `send` builds (afresh for every attempt), retried like
    /// [`Self::retrying`], its failure classified by [`sdk_error`].
    async fn sdk_call<T, E, R, F, Fut>(
        &self,
        operation: &'static str,
        mut send: F,
    ) -> Result<T, CloudError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        self.retrying(operation, || {
            let sent = send();
            async move { sent.await.map_err(|e| sdk_error(operation, e)) }
        })
        .await
    }

    /// Walks a paged listing: `send` requests the page after a continuation token (each
    /// page sent like [`Self::sdk_call`]), `take` adds what the page holds to the result,
    /// and the walk stops at the first page whose `next` token is missing or empty.
    async fn paged<T, P, E, R, F, Fut>(
        &self,
        operation: &'static str,
        mut send: F,
        mut take: impl FnMut(P, &mut Vec<T>),
    ) -> Result<Vec<T>, CloudError>
    where
        P: Page,
        F: FnMut(Option<String>) -> Fut,
        Fut: Future<Output = Result<P, SdkError<E, R>>>,
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
        R: std::fmt::Debug,
    {
        let mut token: Option<String> = None;
        let mut out = Vec::new();
        loop {
            let page = self.sdk_call(operation, || send(token.clone())).await?;
            token = page
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            take(page, &mut out);
            if token.is_none() {
                return Ok(out);
            }
        }
    }

    /// Adds AZ ID hints to a capacity error, using the account's zone map.
    async fn with_zone_ids(&self, err: CloudError) -> CloudError {
        match err {
            CloudError::Api {
                operation,
                classified,
                request_id,
                ..
            } if !classified.zone_hints.is_empty() => {
                let zone_id_hints = match self.zones().await {
                    Ok(map) => classified
                        .zone_hints
                        .iter()
                        .filter_map(|name| map.id_of(name).cloned())
                        .collect(),
                    Err(_) => Vec::new(),
                };
                CloudError::Api {
                    operation,
                    classified,
                    zone_id_hints,
                    request_id,
                }
            }
            other => other,
        }
    }

    async fn zone_name(&self, zone: &ZoneId) -> Result<String, CloudError> {
        let map = self.zones().await?;
        map.name_of(zone).map(str::to_owned).ok_or_else(|| {
            CloudError::Invalid(format!(
                "zone {zone} is not a zone of this account in {}",
                self.region
            ))
        })
    }

    fn instance_from(
        &self,
        i: &aws_sdk_ec2::types::Instance,
        zones: Option<&ZoneMap>,
    ) -> Option<Instance> {
        let id = InstanceId::new(i.instance_id()?)?;
        let placement = i.placement();
        let zone_name = placement
            .and_then(|p| p.availability_zone())
            .unwrap_or_default()
            .to_owned();
        let zone = placement
            .and_then(|p| p.availability_zone_id())
            .and_then(|z| {
                ZoneId::parse_optional("zone", Provider::Aws, &self.region, z)
                    .ok()
                    .flatten()
            })
            .or_else(|| zones.and_then(|m| m.id_of(&zone_name).cloned()));
        let market = match i.instance_lifecycle() {
            Some(l) if l.as_str() == "spot" => Market::Spot,
            _ => Market::OnDemand,
        };
        Some(Instance {
            id,
            instance_type: i
                .instance_type()
                .map(|t| t.as_str().to_owned())
                .unwrap_or_default(),
            zone_name,
            zone,
            state: InstanceState::from_name(
                i.state()
                    .and_then(|s| s.name())
                    .map(|n| n.as_str())
                    .unwrap_or(""),
            ),
            market,
            launch_time: i.launch_time().and_then(to_chrono),
            tags: tag_map(i.tags()),
            client_token: i
                .client_token()
                .filter(|t| !t.is_empty())
                .map(str::to_owned),
            state_reason: i
                .state_reason()
                .and_then(|r| r.message())
                .map(str::to_owned),
        })
    }

    fn state_changes(changes: &[aws_sdk_ec2::types::InstanceStateChange]) -> Vec<StateChange> {
        let state = |s: Option<&aws_sdk_ec2::types::InstanceState>| {
            InstanceState::from_name(s.and_then(|s| s.name()).map(|n| n.as_str()).unwrap_or(""))
        };
        changes
            .iter()
            .filter_map(|c| {
                Some(StateChange {
                    id: InstanceId::new(c.instance_id()?)?,
                    previous: state(c.previous_state()),
                    current: state(c.current_state()),
                })
            })
            .collect()
    }

    fn run_instances_request(
        &self,
        request: &LaunchRequest,
        zone_name: Option<String>,
        dry_run: bool,
    ) -> aws_sdk_ec2::operation::run_instances::builders::RunInstancesFluentBuilder {
        let count = i32::try_from(request.count).unwrap_or(i32::MAX);
        let mut call = self
            .ec2
            .run_instances()
            .instance_type(Ec2InstanceType::from(request.instance_type.as_str()))
            .image_id(&request.image_id)
            .min_count(count)
            .max_count(count)
            .client_token(&request.client_token)
            .set_subnet_id(request.subnet_id.clone())
            .set_tag_specifications(
                tag_spec(ResourceType::Instance, &request.tags).map(|t| vec![t]),
            )
            .dry_run(dry_run);
        if let Some(zone) = zone_name {
            call = call.placement(Placement::builder().availability_zone(zone).build());
        }
        if request.market == Market::Spot {
            let mut spot = SpotMarketOptions::builder();
            if let Some(max) = request.spot_max_price {
                spot = spot.max_price(format!("{max}"));
            }
            call = call.instance_market_options(
                InstanceMarketOptionsRequest::builder()
                    .market_type(MarketType::Spot)
                    .spot_options(spot.build())
                    .build(),
            );
        }
        call
    }

    /// Validates `request`, resolves its zone and sends RunInstances (a `dry_run` checks the
    /// permission only); a failure is returned as is, without zone id hints.
    async fn run_instances(
        &self,
        request: &LaunchRequest,
        dry_run: bool,
    ) -> Result<aws_sdk_ec2::operation::run_instances::RunInstancesOutput, CloudError> {
        let zone = self.launch_zone(request).await?;
        self.sdk_call("RunInstances", || {
            self.run_instances_request(request, zone.clone(), dry_run)
                .send()
        })
        .await
    }

    async fn launch_zone(&self, request: &LaunchRequest) -> Result<Option<String>, CloudError> {
        if request.market == Market::CapacityBlock {
            return Err(CloudError::Invalid(
                "capacity-block launches go through a capacity reservation; not supported by launch".into(),
            ));
        }
        if request.count == 0 {
            return Err(CloudError::Invalid("count must be at least 1".into()));
        }
        match &request.zone {
            Some(z) => Ok(Some(self.zone_name(z).await?)),
            None => Ok(None),
        }
    }

    async fn change_state(
        &self,
        op: StateOp,
        ids: &[InstanceId],
    ) -> Result<Vec<StateChange>, CloudError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let operation = op.operation();
        let ids: Vec<String> = ids.iter().map(|i| i.as_str().to_owned()).collect();
        let ids = || Some(ids.clone());
        let ec2 = &self.ec2;
        let changes = match op {
            StateOp::Terminate => self
                .sdk_call(operation, || {
                    ec2.terminate_instances().set_instance_ids(ids()).send()
                })
                .await
                .map(|o| Self::state_changes(o.terminating_instances())),
            StateOp::Start => self
                .sdk_call(operation, || {
                    ec2.start_instances().set_instance_ids(ids()).send()
                })
                .await
                .map(|o| Self::state_changes(o.starting_instances())),
            StateOp::Stop => self
                .sdk_call(operation, || {
                    ec2.stop_instances().set_instance_ids(ids()).send()
                })
                .await
                .map(|o| Self::state_changes(o.stopping_instances())),
        };
        match changes {
            Ok(c) => Ok(c),
            Err(e) => Err(self.with_zone_ids(e).await),
        }
    }

    async fn describe_filtered(
        &self,
        ids: &[InstanceId],
        filters: Vec<Filter>,
    ) -> Result<Vec<Instance>, CloudError> {
        let zones = self.zones().await.ok();
        self.paged(
            "DescribeInstances",
            |token| {
                self.ec2
                    .describe_instances()
                    .set_instance_ids(
                        (!ids.is_empty())
                            .then(|| ids.iter().map(|i| i.as_str().to_owned()).collect()),
                    )
                    .set_filters((!filters.is_empty()).then(|| filters.clone()))
                    .set_next_token(token)
                    .send()
            },
            |page, out| {
                for r in page.reservations() {
                    out.extend(
                        r.instances()
                            .iter()
                            .filter_map(|i| self.instance_from(i, zones.as_ref())),
                    );
                }
            },
        )
        .await
    }

    fn reservation_from(&self, r: &aws_sdk_ec2::types::CapacityReservation) -> CapacityReservation {
        CapacityReservation {
            id: r.capacity_reservation_id().unwrap_or_default().to_owned(),
            instance_type: r.instance_type().unwrap_or_default().to_owned(),
            zone: self.zone_id(r.availability_zone_id()),
            count: r
                .total_instance_count()
                .and_then(|c| u32::try_from(c).ok())
                .unwrap_or(0),
            state: r.state().map(|s| s.as_str().to_owned()).unwrap_or_default(),
            created_at: r.create_date().and_then(to_chrono),
            tags: tag_map(r.tags()),
        }
    }

    fn zone_id(&self, text: Option<&str>) -> Option<ZoneId> {
        zone_id_in(&self.region, text)
    }
}
