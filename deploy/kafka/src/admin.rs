//! Topic administration: create what is missing, verify what exists.

use std::{sync::Arc, time::Duration};

use rdkafka::{
    admin::{AdminClient, AdminOptions, NewTopic, TopicReplication},
    client::DefaultClientContext,
    metadata::Metadata,
    types::RDKafkaErrorCode,
};

use crate::{KafkaError, KafkaSettings, TopicSpec};

/// What [`ensure_topics`] did for one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TopicOutcome {
    /// It did not exist and was created.
    Created(String),
    /// It existed with the expected partition count.
    Existed(String),
}

/// Creates each topic in `specs` that does not exist, then checks every topic's partition count
/// against its spec. Idempotent: a second call creates nothing.
pub async fn ensure_topics(
    settings: &KafkaSettings,
    specs: &[TopicSpec],
) -> Result<Vec<TopicOutcome>, KafkaError> {
    let admin = admin_client(settings)?;
    let timeout = settings.request_timeout;
    let existing = fetch_metadata(&admin, timeout).await?;
    let partitions_of = |meta: &Metadata, name: &str| {
        meta.topics()
            .iter()
            .find(|t| t.name() == name && t.error().is_none())
            .map(|t| t.partitions().len())
    };

    let missing: Vec<&TopicSpec> = specs
        .iter()
        .filter(|s| partitions_of(&existing, &s.name).is_none())
        .collect();
    let new_topics: Vec<NewTopic<'_>> = missing
        .iter()
        .map(|s| {
            s.configs.iter().fold(
                NewTopic::new(
                    &s.name,
                    s.partitions,
                    TopicReplication::Fixed(s.replication),
                ),
                |t, (k, v)| t.set(k, v),
            )
        })
        .collect();
    let mut outcomes = Vec::new();
    if !new_topics.is_empty() {
        let opts = AdminOptions::new().operation_timeout(Some(timeout));
        let results = admin
            .create_topics(new_topics.iter(), &opts)
            .await
            .map_err(|source| KafkaError::Client {
                op: "create topics",
                source,
            })?;
        for result in results {
            match result {
                Ok(name) => outcomes.push(TopicOutcome::Created(name)),
                // a concurrent creator won the race: fine
                Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                    outcomes.push(TopicOutcome::Existed(name));
                }
                Err((topic, code)) => return Err(KafkaError::CreateTopic { topic, code }),
            }
        }
    }

    let after = fetch_metadata(&admin, timeout).await?;
    for spec in specs {
        let actual = partitions_of(&after, &spec.name).unwrap_or(0);
        if actual != usize::try_from(spec.partitions).unwrap_or(0) {
            return Err(KafkaError::PartitionMismatch {
                topic: spec.name.clone(),
                actual,
                expected: spec.partitions,
            });
        }
        if !missing.iter().any(|m| m.name == spec.name) {
            outcomes.push(TopicOutcome::Existed(spec.name.clone()));
        }
    }
    Ok(outcomes)
}

fn admin_client(
    settings: &KafkaSettings,
) -> Result<Arc<AdminClient<DefaultClientContext>>, KafkaError> {
    settings
        .admin_config()
        .create()
        .map(Arc::new)
        .map_err(|source| KafkaError::Client {
            op: "create admin client",
            source,
        })
}

/// Fetches cluster metadata on a blocking thread (librdkafka's call blocks).
async fn fetch_metadata(
    admin: &Arc<AdminClient<DefaultClientContext>>,
    timeout: Duration,
) -> Result<Metadata, KafkaError> {
    let admin = Arc::clone(admin);
    tokio::task::spawn_blocking(move || admin.inner().fetch_metadata(None, timeout))
        .await?
        .map_err(|source| KafkaError::Client {
            op: "fetch metadata",
            source,
        })
}

/// The number of brokers in the cluster: a cheap liveness check that speaks the protocol.
pub async fn cluster_brokers(settings: &KafkaSettings) -> Result<usize, KafkaError> {
    let meta = fetch_metadata(&admin_client(settings)?, settings.request_timeout).await?;
    Ok(meta.brokers().len())
}
