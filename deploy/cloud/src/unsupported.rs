//! The [`crate::CloudAdapter`] methods of AWS's capacity APIs (reservations, quotas, spot
//! history and placement scores, capacity blocks, zonal offerings) for adapters of clouds that
//! have none of them: every one is [`crate::CloudError::Unsupported`] for the provider, with
//! why.

/// `impl CloudAdapter for $ty` (through `async_trait`) with the methods in `{ ... }` and the
/// AWS-only capacity methods as `Unsupported` for `$provider`; `$why` follows each
/// operation's name in the error (e.g. `"(RunPod has no such API)"`). The methods are
/// generated inside the one `impl`, so `async_trait` rewrites them with the given ones.
macro_rules! adapter_without_aws_capacity_apis {
    ($ty:ty, $provider:expr, $why:literal, { $($body:tt)* }) => {
        #[async_trait::async_trait]
        impl $crate::CloudAdapter for $ty {
        $($body)*
        async fn create_capacity_reservation(
            &self,
            _request: &$crate::types::ReservationRequest,
        ) -> Result<$crate::types::CapacityReservation, $crate::CloudError> {
            Err($crate::CloudError::Unsupported {
                provider: $provider,
                operation: concat!("create_capacity_reservation ", $why),
            })
        }

        async fn cancel_capacity_reservation(&self, _id: &str) -> Result<(), $crate::CloudError> {
            Err($crate::CloudError::Unsupported {
                provider: $provider,
                operation: concat!("cancel_capacity_reservation ", $why),
            })
        }

        async fn describe_tagged_reservations(
            &self,
            _tag_key: &str,
        ) -> Result<Vec<$crate::types::CapacityReservation>, $crate::CloudError> {
            Err($crate::CloudError::Unsupported {
                provider: $provider,
                operation: concat!("describe_tagged_reservations ", $why),
            })
        }

        async fn list_quotas(&self) -> Result<Vec<$crate::types::QuotaValue>, $crate::CloudError> {
            Err($crate::CloudError::Unsupported {
                provider: $provider,
                operation: concat!("list_quotas ", $why),
            })
        }

        async fn quota_headroom(
            &self,
            _instance_type: &$crate::InstanceType,
            _market: $crate::Market,
        ) -> Result<$crate::types::QuotaHeadroom, $crate::CloudError> {
            Err($crate::CloudError::Unsupported {
                provider: $provider,
                operation: concat!("quota_headroom ", $why),
            })
        }

        async fn spot_price_history(
            &self,
            _instance_types: &[$crate::InstanceType],
            _since: chrono::DateTime<chrono::Utc>,
        ) -> Result<Vec<$crate::types::SpotPricePoint>, $crate::CloudError> {
            Err($crate::CloudError::Unsupported {
                provider: $provider,
                operation: concat!("spot_price_history ", $why),
            })
        }

        async fn spot_placement_scores(
            &self,
            _query: &$crate::types::PlacementScoreQuery,
        ) -> Result<Vec<$crate::types::PlacementScoreEntry>, $crate::CloudError> {
            Err($crate::CloudError::Unsupported {
                provider: $provider,
                operation: concat!("spot_placement_scores ", $why),
            })
        }

        async fn capacity_block_offerings(
            &self,
            _query: &$crate::types::CapacityBlockQuery,
        ) -> Result<Vec<$crate::types::CapacityBlockOffering>, $crate::CloudError> {
            Err($crate::CloudError::Unsupported {
                provider: $provider,
                operation: concat!("capacity_block_offerings ", $why),
            })
        }

        async fn instance_type_offerings(
            &self,
            _instance_types: &[$crate::InstanceType],
        ) -> Result<Vec<$crate::types::Offering>, $crate::CloudError> {
            Err($crate::CloudError::Unsupported {
                provider: $provider,
                operation: concat!("instance_type_offerings ", $why),
            })
        }
        }
    };
}

pub(crate) use adapter_without_aws_capacity_apis;
