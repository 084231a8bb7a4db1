//! RabbitMQ for tests: the depth of a queue and deleting a test's launch topology.

use capsight_amqp::AmqpSettings;

/// Messages ready in `queue` (a passive declare).
pub async fn queue_depth(amqp: &AmqpSettings, queue: &str) -> u32 {
    let conn = amqp.connect().await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    let q = ch
        .queue_declare(
            queue.into(),
            lapin::options::QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    let _ = conn.close(200, "bye".into()).await;
    q.message_count()
}

/// Deletes the launch topology of `amqp` (best effort: a broker that is gone is no error).
pub async fn delete_topology(amqp: &AmqpSettings) {
    if let Ok(conn) = amqp.connect().await {
        let ch = conn.create_channel().await.unwrap();
        let _ = amqp.launch.delete(&ch).await;
        let _ = conn.close(200, "bye".into()).await;
    }
}
