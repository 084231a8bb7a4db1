//! TLS to Kafka, ClickHouse and RabbitMQ, on the real stack: each of capsight's clients
//! (configured as an operator would: `kafka.properties` `security.protocol` / `ssl.ca.location`,
//! `clickhouse.tls_ca`, `amqp.tls_ca`) reaches the real service through a TLS-terminating
//! forwarder whose certificate a CA made for this test signed, moves data (produce + consume,
//! insert + select, publish + get), and is refused when it trusts another CA. The
//! `capsight-admin` binary does the same, which shows that a binary's start installs the rustls
//! crypto provider its clients need. Why a forwarder: see `capsight_testkit::tls`.

#![allow(clippy::unwrap_used, reason = "tests: a panic is a failed assertion")]

use std::{net::SocketAddr, path::Path, process::Output, time::Duration};

use capsight_amqp::AmqpSettings;
use capsight_clickhouse::ClickHouseSettings;
use capsight_e2e::admin_bin;
use capsight_kafka::KafkaSettings;
use capsight_testkit::{
    Sandbox,
    broker::PrivateBroker,
    process::{free_port, unique},
    tls::{PrivateCa, TlsForwarder},
};
use lapin::{
    BasicProperties,
    options::{BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions},
    types::FieldTable,
};
use rdkafka::{
    Message, Offset, TopicPartitionList,
    consumer::{BaseConsumer, Consumer},
    producer::{FutureProducer, FutureRecord},
};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
struct Sections {
    kafka: KafkaSettings,
    clickhouse: ClickHouseSettings,
    amqp: AmqpSettings,
}

/// `host:port` of a `scheme://[user@]host:port/...` url.
fn upstream(url: &str) -> SocketAddr {
    let rest = url.split("://").nth(1).unwrap();
    let authority = rest.split('/').next().unwrap();
    let host_port = authority.rsplit('@').next().unwrap();
    host_port.replace("localhost", "127.0.0.1").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn kafka_clickhouse_and_rabbitmq_clients_speak_tls_and_refuse_another_ca() {
    let ca = PrivateCa::generate();
    let wrong = PrivateCa::generate();
    let sandbox = Sandbox::builder("tls").database().amqp().start().await;
    let plain: Sections = sandbox.config();

    // ClickHouse: https to the forwarder, plain http from it to the stack's server
    let ch_tls = ca.forward(upstream(&plain.clickhouse.url)).await;
    let clickhouse = ClickHouseSettings {
        url: format!("https://localhost:{}", ch_tls.addr().port()),
        tls_ca: ca.ca_pem(),
        ..plain.clickhouse.clone()
    };
    let client = clickhouse.client().unwrap();
    client
        .query("CREATE TABLE tls_probe (n UInt32, note String) ENGINE = Memory")
        .execute()
        .await
        .unwrap();
    client
        .query("INSERT INTO tls_probe VALUES (1, 'over tls')")
        .execute()
        .await
        .unwrap();
    let notes: Vec<String> = client
        .query("SELECT note FROM tls_probe")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(notes, vec!["over tls".to_owned()]);
    // the row is really there, read without TLS
    let direct: Vec<String> = plain
        .clickhouse
        .client()
        .unwrap()
        .query("SELECT note FROM tls_probe")
        .fetch_all()
        .await
        .unwrap();
    assert_eq!(direct, notes);
    assert_flowed("clickhouse", &ch_tls);
    let refused = ch_tls.stats().refused;
    let untrusting = ClickHouseSettings {
        tls_ca: wrong.ca_pem(),
        ..clickhouse.clone()
    };
    let err = untrusting
        .client()
        .unwrap()
        .query("SELECT 1")
        .execute()
        .await
        .unwrap_err();
    assert!(refused_since(&ch_tls, refused).await, "{err}");

    // Kafka: a private tansu advertising the forwarder, so every connection (bootstrap and
    // broker) goes through TLS
    let port = free_port();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let advertised = listener.local_addr().unwrap();
    let kafka_tls = ca.forward_on(listener, ([127, 0, 0, 1], port).into());
    let broker = PrivateBroker::start_advertising(port, advertised).await;
    let mut kafka = plain.kafka.clone();
    kafka.brokers = broker.brokers();
    kafka.request_timeout = Duration::from_secs(10);
    kafka
        .properties
        .insert("security.protocol".into(), "ssl".into());
    kafka
        .properties
        .insert("ssl.ca.location".into(), ca.ca_pem().display().to_string());
    let topic = unique("tls");
    kafka.topics.signals = topic.clone();
    kafka.topics.scores = format!("{topic}.scores");
    kafka.topics.signals_dlq = format!("{topic}.dlq");
    capsight_kafka::admin::ensure_topics(&kafka, &kafka.topics.specs())
        .await
        .unwrap();
    let producer: FutureProducer = kafka.producer_config("tls-test").create().unwrap();
    producer
        .send(
            FutureRecord::to(&topic)
                .partition(0)
                .key("k")
                .payload("over tls"),
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    let got = consume_one(&kafka, &topic).await;
    assert_eq!(got, b"over tls");
    assert_flowed("kafka", &kafka_tls);
    let refused = kafka_tls.stats().refused;
    let mut untrusting = kafka.clone();
    untrusting.properties.insert(
        "ssl.ca.location".into(),
        wrong.ca_pem().display().to_string(),
    );
    untrusting.request_timeout = Duration::from_secs(3);
    assert!(
        capsight_kafka::admin::cluster_brokers(&untrusting)
            .await
            .is_err()
    );
    assert!(refused_since(&kafka_tls, refused).await);

    // RabbitMQ: amqps to the forwarder, plain AMQP from it to the stack's broker
    let mq_tls = ca.forward(upstream(plain.amqp_url())).await;
    let amqp = AmqpSettings {
        url: format!("amqps://guest:guest@localhost:{}/%2f", mq_tls.addr().port()).into(),
        tls_ca: ca.ca_pem(),
        ..plain.amqp.clone()
    };
    let connection = amqp.connect().await.unwrap();
    let channel = connection.create_channel().await.unwrap();
    let queue = unique("capsight.tls");
    channel
        .queue_declare(
            queue.as_str().into(),
            QueueDeclareOptions {
                exclusive: true,
                auto_delete: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .unwrap();
    let confirm = channel
        .basic_publish(
            "".into(),
            queue.as_str().into(),
            BasicPublishOptions::default(),
            b"over tls",
            BasicProperties::default(),
        )
        .await
        .unwrap()
        .await
        .unwrap();
    assert!(confirm.is_ack(), "{confirm:?}");
    let got = channel
        .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(got.data, b"over tls");
    assert_flowed("rabbitmq", &mq_tls);
    connection.close(200, "done".into()).await.unwrap();
    let refused = mq_tls.stats().refused;
    let untrusting = AmqpSettings {
        tls_ca: wrong.ca_pem(),
        ..amqp.clone()
    };
    assert!(untrusting.connect().await.is_err());
    assert!(refused_since(&mq_tls, refused).await);

    // the binary: `capsight-admin check` over TLS to all three, then trusting another CA
    let ok = admin_check(&sandbox, &kafka, &clickhouse, &amqp, &ca.ca_pem());
    let text = String::from_utf8_lossy(&ok.stdout);
    assert!(
        ok.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    for service in ["kafka", "clickhouse", "amqp"] {
        assert!(
            text.lines()
                .any(|l| l.starts_with(service) && l.contains(" ok ")),
            "{text}"
        );
    }
    let down = admin_check(&sandbox, &kafka, &clickhouse, &amqp, &wrong.ca_pem());
    let text = String::from_utf8_lossy(&down.stdout);
    assert!(!down.status.success(), "{text}");
    assert_eq!(text.matches("DOWN").count(), 3, "{text}");

    drop(broker);
    sandbox.cleanup().await;
}

impl Sections {
    fn amqp_url(&self) -> &str {
        secrecy::ExposeSecret::expose_secret(&self.amqp.url)
    }
}

/// Whether the forwarder refused a handshake after `before` (its side of a failed handshake
/// may end a moment after the client's).
async fn refused_since(tls: &TlsForwarder, before: u64) -> bool {
    for _ in 0..50 {
        if tls.stats().refused > before {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// The forwarder completed a handshake and moved bytes both ways.
fn assert_flowed(service: &str, tls: &TlsForwarder) {
    let s = tls.stats();
    assert!(
        s.handshakes > 0 && s.to_service > 0 && s.to_client > 0,
        "{service}: {s:?}"
    );
}

/// The first message of partition 0 of `topic`, read over the configured (TLS) connection.
async fn consume_one(kafka: &KafkaSettings, topic: &str) -> Vec<u8> {
    let consumer: BaseConsumer = kafka
        .consumer_config("tls-test", &unique("tls-test"))
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    for p in 0..kafka.topics.specs()[0].partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).unwrap();
    tokio::task::spawn_blocking(move || {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            assert!(std::time::Instant::now() < deadline, "nothing consumed");
            if let Some(m) = consumer.poll(Duration::from_millis(500)) {
                return m.unwrap().payload().unwrap().to_vec();
            }
        }
    })
    .await
    .unwrap()
}

/// `capsight-admin check` against the TLS endpoints, trusting `ca`.
fn admin_check(
    sandbox: &Sandbox,
    kafka: &KafkaSettings,
    clickhouse: &ClickHouseSettings,
    amqp: &AmqpSettings,
    ca: &Path,
) -> Output {
    sandbox
        .command(admin_bin())
        .arg("check")
        .env("CAPSIGHT_KAFKA__BROKERS", &kafka.brokers)
        .env("CAPSIGHT_KAFKA__REQUEST_TIMEOUT", "5s")
        .env("CAPSIGHT_KAFKA__PROPERTIES__SECURITY_PROTOCOL", "ssl")
        .env("CAPSIGHT_KAFKA__PROPERTIES__SSL_CA_LOCATION", ca)
        .env("CAPSIGHT_CLICKHOUSE__URL", &clickhouse.url)
        .env("CAPSIGHT_CLICKHOUSE__TLS_CA", ca)
        .env(
            "CAPSIGHT_AMQP__URL",
            secrecy::ExposeSecret::expose_secret(&amqp.url),
        )
        .env("CAPSIGHT_AMQP__TLS_CA", ca)
        .env("CAPSIGHT_AMQP__CONNECT_TIMEOUT", "5s")
        .output()
        .unwrap()
}
