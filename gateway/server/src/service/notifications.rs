//! `NotificationService`: a tenant's webhook subscriptions and dead letters, over the
//! notification core's use cases (`capsight_notify::manage`). Every call acts on the caller's
//! tenant only.

use capsight_proto::v1::{self, notification_service_server::NotificationService};
use tonic::{Request, Response};

use super::{Api, Result};
use crate::GatewayError;

#[tonic::async_trait]
impl NotificationService for Api {
    async fn create_subscription(
        &self,
        request: Request<v1::CreateSubscriptionRequest>,
    ) -> Result<Response<v1::CreateSubscriptionResponse>> {
        let (caller, req) = self.admit(request)?;
        let (sub, secret) = self
            .core
            .notify
            .create(caller.id(), &req)
            .await
            .map_err(GatewayError::from)?;
        Ok(Response::new(v1::CreateSubscriptionResponse {
            subscription: Some(sub.to_wire()),
            secret,
        }))
    }

    async fn list_subscriptions(
        &self,
        request: Request<v1::ListSubscriptionsRequest>,
    ) -> Result<Response<v1::ListSubscriptionsResponse>> {
        let (caller, _) = self.admit(request)?;
        let subs = self
            .core
            .notify
            .list(caller.id())
            .await
            .map_err(GatewayError::from)?;
        Ok(Response::new(v1::ListSubscriptionsResponse {
            subscriptions: subs.iter().map(|s| s.to_wire()).collect(),
        }))
    }

    async fn delete_subscription(
        &self,
        request: Request<v1::DeleteSubscriptionRequest>,
    ) -> Result<Response<v1::DeleteSubscriptionResponse>> {
        let (caller, req) = self.admit(request)?;
        self.core
            .notify
            .delete(caller.id(), &req.id)
            .await
            .map_err(GatewayError::from)?;
        Ok(Response::new(v1::DeleteSubscriptionResponse {}))
    }

    async fn list_dead_letters(
        &self,
        request: Request<v1::ListDeadLettersRequest>,
    ) -> Result<Response<v1::ListDeadLettersResponse>> {
        let (caller, req) = self.admit(request)?;
        let dead_letters = self
            .core
            .notify
            .dead_letters(caller.id(), req.limit)
            .await
            .map_err(GatewayError::from)?;
        Ok(Response::new(v1::ListDeadLettersResponse { dead_letters }))
    }
}
