//! `capsight-launcher`: consumes launch jobs from RabbitMQ and drives them to running.
//! Configuration: sections `telemetry`, `kafka`, `publisher`, `clickhouse`, `amqp`, `tenancy`,
//! `cloud`, `launcher` of `deploy/config/capsight.toml`; AWS endpoint and operator credentials
//! from the standard AWS chain (tenants' roles are assumed from there).

fn main() {}
