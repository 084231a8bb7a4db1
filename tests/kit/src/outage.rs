//! Outages of the private services ([`PrivateBroker`], [`PrivateClickHouse`], [`PrivateRabbit`])
//! the fault tests inject: one trait to take a service down and bring it back, and
//! [`outages`] to do it repeatedly.

use std::{future::Future, time::Duration};

use crate::{broker::PrivateBroker, private_clickhouse::PrivateClickHouse, rabbit::PrivateRabbit};

/// A private service a test can take down and bring back.
pub trait Outage {
    /// Takes it down (see each implementation: killed or stopped).
    fn down(&mut self) -> impl Future<Output = ()> + Send;
    /// Brings it back and waits until it serves.
    fn up(&mut self) -> impl Future<Output = ()> + Send;
}

/// The broker `kill -9`ed; back on the same ports and data.
impl Outage for PrivateBroker {
    async fn down(&mut self) {
        self.kill9();
    }
    async fn up(&mut self) {
        self.restart().await;
    }
}

/// The server killed (`SIGKILL`); started again on its data.
impl Outage for PrivateClickHouse {
    async fn down(&mut self) {
        self.stop().await;
    }
    async fn up(&mut self) {
        self.start().await;
    }
}

/// The node stopped (`rabbitmqctl stop`); started again.
impl Outage for PrivateRabbit {
    async fn down(&mut self) {
        self.stop().await;
    }
    async fn up(&mut self) {
        self.start().await;
    }
}

/// `times` outages of `service`, each `down_for` long, `between` apart.
pub async fn outages<S: Outage>(
    service: &mut S,
    times: usize,
    down_for: Duration,
    between: Duration,
) {
    for n in 0..times {
        if n > 0 {
            tokio::time::sleep(between).await;
        }
        service.down().await;
        tokio::time::sleep(down_for).await;
        service.up().await;
    }
}
