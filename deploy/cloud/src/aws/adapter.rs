//! [`CloudAdapter`] for [`AwsAdapter`]: each operation as EC2, Service Quotas and STS calls,
//! retried and classified by the plumbing in the parent module.

use super::*;

#[async_trait]
impl CloudAdapter for AwsAdapter {
    fn provider(&self) -> Provider {
        Provider::Aws
    }

    fn region(&self) -> &Region {
        &self.region
    }

    async fn zones(&self) -> Result<ZoneMap, CloudError> {
        self.zones
            .get_or_try_init(|| async {
                let out = self
                    .sdk_call("DescribeAvailabilityZones", || {
                        self.ec2.describe_availability_zones().send()
                    })
                    .await?;
                let pairs = out.availability_zones().iter().filter_map(|z| {
                    let name = z.zone_name()?.to_owned();
                    let id = ZoneId::parse_optional(
                        "zone_id",
                        Provider::Aws,
                        &self.region,
                        z.zone_id()?,
                    )
                    .ok()
                    .flatten()?;
                    Some((name, id))
                });
                Ok(ZoneMap::new(pairs))
            })
            .await
            .cloned()
    }

    async fn check_launch_permission(
        &self,
        request: &LaunchRequest,
    ) -> Result<Permission, CloudError> {
        match self.run_instances(request, true).await {
            Ok(_) => Err(CloudError::Response {
                operation: "RunInstances",
                message: "a DryRun request launched instances".into(),
            }),
            Err(e) if e.code() == Some("DryRunOperation") => Ok(Permission::Allowed),
            Err(e) => Permission::refused(e),
        }
    }

    async fn launch(&self, request: &LaunchRequest) -> Result<Vec<Instance>, CloudError> {
        match self.run_instances(request, false).await {
            Ok(out) => {
                let zones = self.zones().await.ok();
                Ok(out
                    .instances()
                    .iter()
                    .filter_map(|i| self.instance_from(i, zones.as_ref()))
                    .collect())
            }
            Err(e) => Err(self.with_zone_ids(e).await),
        }
    }

    async fn describe(&self, ids: &[InstanceId]) -> Result<Vec<Instance>, CloudError> {
        self.describe_filtered(ids, Vec::new()).await
    }

    async fn terminate(&self, ids: &[InstanceId]) -> Result<Vec<StateChange>, CloudError> {
        self.change_state(StateOp::Terminate, ids).await
    }

    async fn start(&self, ids: &[InstanceId]) -> Result<Vec<StateChange>, CloudError> {
        self.change_state(StateOp::Start, ids).await
    }

    async fn stop(&self, ids: &[InstanceId]) -> Result<Vec<StateChange>, CloudError> {
        self.change_state(StateOp::Stop, ids).await
    }

    async fn create_capacity_reservation(
        &self,
        request: &ReservationRequest,
    ) -> Result<CapacityReservation, CloudError> {
        let zone_name = self.zone_name(&request.zone).await?;
        let count = i32::try_from(request.count).unwrap_or(i32::MAX);
        let result = self
            .sdk_call("CreateCapacityReservation", || {
                self.ec2
                    .create_capacity_reservation()
                    .instance_type(request.instance_type.as_str())
                    .instance_platform(CapacityReservationInstancePlatform::LinuxUnix)
                    .availability_zone(&zone_name)
                    .instance_count(count)
                    .client_token(&request.client_token)
                    .end_date_type(if request.expires_at.is_some() {
                        EndDateType::Limited
                    } else {
                        EndDateType::Unlimited
                    })
                    .set_end_date(request.expires_at.map(to_aws))
                    .set_tag_specifications(
                        tag_spec(ResourceType::CapacityReservation, &request.tags).map(|t| vec![t]),
                    )
                    .send()
            })
            .await;
        let out = match result {
            Ok(out) => out,
            Err(e) => return Err(self.with_zone_ids(e).await),
        };
        let r = out
            .capacity_reservation()
            .ok_or_else(|| CloudError::Response {
                operation: "CreateCapacityReservation",
                message: "no capacityReservation in the response".into(),
            })?;
        let mut out = self.reservation_from(r);
        if out.zone.is_none() {
            out.zone = Some(request.zone.clone());
        }
        if out.count == 0 {
            out.count = request.count;
        }
        Ok(out)
    }

    async fn describe_tagged(&self, tag_key: &str) -> Result<Vec<Instance>, CloudError> {
        self.describe_filtered(
            &[],
            vec![Filter::builder().name("tag-key").values(tag_key).build()],
        )
        .await
    }

    async fn describe_tagged_reservations(
        &self,
        tag_key: &str,
    ) -> Result<Vec<CapacityReservation>, CloudError> {
        let filter = Filter::builder().name("tag-key").values(tag_key).build();
        self.paged(
            "DescribeCapacityReservations",
            |token| {
                self.ec2
                    .describe_capacity_reservations()
                    .filters(filter.clone())
                    .set_next_token(token)
                    .send()
            },
            |page, out| {
                out.extend(
                    page.capacity_reservations()
                        .iter()
                        .map(|r| self.reservation_from(r)),
                );
            },
        )
        .await
    }

    async fn cancel_capacity_reservation(&self, id: &str) -> Result<(), CloudError> {
        self.sdk_call("CancelCapacityReservation", || {
            self.ec2
                .cancel_capacity_reservation()
                .capacity_reservation_id(id)
                .send()
        })
        .await?;
        Ok(())
    }

    async fn list_quotas(&self) -> Result<Vec<QuotaValue>, CloudError> {
        self.paged(
            "ListServiceQuotas",
            |token| {
                self.quotas
                    .list_service_quotas()
                    .service_code("ec2")
                    .set_next_token(token)
                    .send()
            },
            |page, out| {
                out.extend(page.quotas().iter().filter_map(|q| {
                    Some(QuotaValue {
                        code: q.quota_code()?.to_owned(),
                        name: q.quota_name().unwrap_or_default().to_owned(),
                        value: q.value()?,
                    })
                }));
            },
        )
        .await
    }

    async fn quota_headroom(
        &self,
        instance_type: &InstanceType,
        market: Market,
    ) -> Result<QuotaHeadroom, CloudError> {
        let gpu = self
            .catalog
            .get(Provider::Aws, instance_type)
            .ok_or_else(|| {
                CloudError::Invalid(format!("{instance_type} is not in the GPU catalog"))
            })?;
        let code = gpu
            .quota_code(market)
            .ok_or_else(|| {
                CloudError::Invalid(format!("{instance_type} has no {market} quota family"))
            })?
            .to_owned();
        let quota = self
            .sdk_call("GetServiceQuota", || {
                self.quotas
                    .get_service_quota()
                    .service_code("ec2")
                    .quota_code(&code)
                    .send()
            })
            .await?;
        let limit = quota
            .quota()
            .and_then(|q| q.value())
            .ok_or_else(|| CloudError::Response {
                operation: "GetServiceQuota",
                message: format!("quota {code} has no value"),
            })?;
        let running = self
            .describe_filtered(
                &[],
                vec![
                    Filter::builder()
                        .name("instance-state-name")
                        .values("pending")
                        .values("running")
                        .build(),
                ],
            )
            .await?;
        let used: f64 = running
            .iter()
            .filter_map(|i| {
                let t =
                    InstanceType::parse("instance_type", Provider::Aws, &i.instance_type).ok()?;
                let g = self.catalog.get(Provider::Aws, &t)?;
                let m = if i.market == Market::Spot {
                    Market::Spot
                } else {
                    Market::OnDemand
                };
                (g.quota_code(m) == Some(code.as_str())).then_some(f64::from(g.vcpus))
            })
            .sum();
        Ok(QuotaHeadroom {
            headroom_instances: gpu.headroom_instances(limit, used),
            quota_code: code,
            limit_vcpus: limit,
            used_vcpus: used,
            vcpus_per_instance: gpu.vcpus,
        })
    }

    async fn spot_price_history(
        &self,
        instance_types: &[InstanceType],
        since: DateTime<Utc>,
    ) -> Result<Vec<SpotPricePoint>, CloudError> {
        let types: Vec<Ec2InstanceType> = instance_types
            .iter()
            .map(|t| Ec2InstanceType::from(t.as_str()))
            .collect();
        let zones = self.zones().await.ok();
        self.paged(
            "DescribeSpotPriceHistory",
            |token| {
                self.ec2
                    .describe_spot_price_history()
                    .set_instance_types((!types.is_empty()).then(|| types.clone()))
                    .product_descriptions("Linux/UNIX")
                    .start_time(to_aws(since))
                    .set_next_token(token)
                    .send()
            },
            |page, out| {
                for p in page.spot_price_history() {
                    let (Some(price), Some(at)) = (
                        p.spot_price().and_then(|s| s.parse::<f64>().ok()),
                        p.timestamp().and_then(to_chrono),
                    ) else {
                        continue;
                    };
                    let zone_name = p.availability_zone().unwrap_or_default().to_owned();
                    out.push(SpotPricePoint {
                        instance_type: p
                            .instance_type()
                            .map(|t| t.as_str().to_owned())
                            .unwrap_or_default(),
                        zone: self
                            .zone_id(p.availability_zone_id())
                            .or_else(|| zones.as_ref().and_then(|m| m.id_of(&zone_name).cloned())),
                        zone_name,
                        usd_per_hour: price,
                        at,
                    });
                }
            },
        )
        .await
    }

    async fn spot_placement_scores(
        &self,
        query: &PlacementScoreQuery,
    ) -> Result<Vec<PlacementScoreEntry>, CloudError> {
        let regions: Vec<String> = if query.regions.is_empty() {
            vec![self.region.as_str().to_owned()]
        } else {
            query
                .regions
                .iter()
                .map(|r| r.as_str().to_owned())
                .collect()
        };
        let target = i32::try_from(query.target_capacity).unwrap_or(i32::MAX);
        let out = self
            .sdk_call("GetSpotPlacementScores", || {
                self.ec2
                    .get_spot_placement_scores()
                    .set_instance_types(Some(
                        query
                            .instance_types
                            .iter()
                            .map(|t| t.as_str().to_owned())
                            .collect(),
                    ))
                    .target_capacity(target)
                    .target_capacity_unit_type(TargetCapacityUnitType::Units)
                    .single_availability_zone(query.single_zone)
                    .set_region_names(Some(regions.clone()))
                    .send()
            })
            .await?;
        Ok(out
            .spot_placement_scores()
            .iter()
            .map(|s| {
                let region = s.region().unwrap_or_default();
                let zone = Region::parse("region", Provider::Aws, region)
                    .ok()
                    .and_then(|r| zone_id_in(&r, s.availability_zone_id()));
                PlacementScoreEntry {
                    region: region.to_owned(),
                    zone,
                    score: s.score().and_then(|v| u8::try_from(v).ok()).unwrap_or(0),
                }
            })
            .collect())
    }

    async fn capacity_block_offerings(
        &self,
        query: &CapacityBlockQuery,
    ) -> Result<Vec<CapacityBlockOffering>, CloudError> {
        let zones = self.zones().await.ok();
        let out = self
            .sdk_call("DescribeCapacityBlockOfferings", || {
                self.ec2
                    .describe_capacity_block_offerings()
                    .instance_type(query.instance_type.as_str())
                    .instance_count(i32::try_from(query.count).unwrap_or(i32::MAX))
                    .capacity_duration_hours(
                        i32::try_from(query.duration_hours).unwrap_or(i32::MAX),
                    )
                    .set_start_date_range(query.start_after.map(to_aws))
                    .set_end_date_range(query.end_before.map(to_aws))
                    .send()
            })
            .await?;
        Ok(out
            .capacity_block_offerings()
            .iter()
            .map(|o| {
                let zone_name = o.availability_zone().unwrap_or_default().to_owned();
                CapacityBlockOffering {
                    id: o
                        .capacity_block_offering_id()
                        .unwrap_or_default()
                        .to_owned(),
                    instance_type: o.instance_type().unwrap_or_default().to_owned(),
                    zone: zones.as_ref().and_then(|m| m.id_of(&zone_name).cloned()),
                    zone_name,
                    count: o
                        .instance_count()
                        .and_then(|c| u32::try_from(c).ok())
                        .unwrap_or(0),
                    start: o.start_date().and_then(to_chrono),
                    end: o.end_date().and_then(to_chrono),
                    duration_hours: o
                        .capacity_block_duration_hours()
                        .and_then(|c| u32::try_from(c).ok())
                        .unwrap_or(0),
                    upfront_fee: o.upfront_fee().and_then(|f| f.parse().ok()).unwrap_or(0.0),
                    currency: o.currency_code().unwrap_or("USD").to_owned(),
                }
            })
            .collect())
    }

    async fn instance_type_offerings(
        &self,
        instance_types: &[InstanceType],
    ) -> Result<Vec<Offering>, CloudError> {
        let filters: Option<Vec<Filter>> = (!instance_types.is_empty()).then(|| {
            vec![
                Filter::builder()
                    .name("instance-type")
                    .set_values(Some(
                        instance_types
                            .iter()
                            .map(|t| t.as_str().to_owned())
                            .collect(),
                    ))
                    .build(),
            ]
        });
        let mut out = self
            .paged(
                "DescribeInstanceTypeOfferings",
                |token| {
                    self.ec2
                        .describe_instance_type_offerings()
                        .location_type(LocationType::AvailabilityZoneId)
                        .set_filters(filters.clone())
                        .set_next_token(token)
                        .send()
                },
                |page, out| {
                    out.extend(page.instance_type_offerings().iter().filter_map(|o| {
                        Some(Offering {
                            instance_type: o.instance_type()?.as_str().to_owned(),
                            zone: self.zone_id(o.location())?,
                        })
                    }));
                },
            )
            .await?;
        out.sort();
        Ok(out)
    }
}
