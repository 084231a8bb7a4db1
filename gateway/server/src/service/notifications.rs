//! `NotificationService`: a tenant's webhook subscriptions and dead letters, over the
//! notification core's use cases (`capsight_notify::manage`). Every call acts on the caller's
//! tenant only.

use capsight_proto::v1::{self, notification_service_server::NotificationService};
use tonic::{Request, Response};

use super::{Answer, Api, Result, Rpc, rpcs};
use crate::{Core, auth::Caller};

rpcs!(NotificationService {
    create_subscription(v1::CreateSubscriptionRequest) -> v1::CreateSubscriptionResponse;
    list_subscriptions(v1::ListSubscriptionsRequest) -> v1::ListSubscriptionsResponse;
    delete_subscription(v1::DeleteSubscriptionRequest) -> v1::DeleteSubscriptionResponse;
    list_dead_letters(v1::ListDeadLettersRequest) -> v1::ListDeadLettersResponse;
});

impl Rpc for v1::CreateSubscriptionRequest {
    type Reply = v1::CreateSubscriptionResponse;

    async fn answer(self, core: &Core, caller: Caller) -> Answer<Self::Reply> {
        let (sub, secret) = core.notify.create(caller.id(), &self).await?;
        Ok(v1::CreateSubscriptionResponse {
            subscription: Some(sub.to_wire()),
            secret,
        })
    }
}

impl Rpc for v1::ListSubscriptionsRequest {
    type Reply = v1::ListSubscriptionsResponse;

    async fn answer(self, core: &Core, caller: Caller) -> Answer<Self::Reply> {
        let subs = core.notify.list(caller.id()).await?;
        Ok(v1::ListSubscriptionsResponse {
            subscriptions: subs.iter().map(|s| s.to_wire()).collect(),
        })
    }
}

impl Rpc for v1::DeleteSubscriptionRequest {
    type Reply = v1::DeleteSubscriptionResponse;

    async fn answer(self, core: &Core, caller: Caller) -> Answer<Self::Reply> {
        core.notify.delete(caller.id(), &self.id).await?;
        Ok(v1::DeleteSubscriptionResponse {})
    }
}

impl Rpc for v1::ListDeadLettersRequest {
    type Reply = v1::ListDeadLettersResponse;

    async fn answer(self, core: &Core, caller: Caller) -> Answer<Self::Reply> {
        let dead_letters = core.notify.dead_letters(caller.id(), self.limit).await?;
        Ok(v1::ListDeadLettersResponse { dead_letters })
    }
}
