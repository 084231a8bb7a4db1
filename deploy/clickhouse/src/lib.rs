//! ClickHouse for capsight: connection settings, schema migrations and the row types written to
//! the `capsight` database.
//!
//! * [`ClickHouseSettings`] is the `[clickhouse]` config section; [`ClickHouseSettings::client`]
//!   builds a client bound to the configured database (over TLS with a private CA when
//!   `tls_ca` is set).
//! * [`migrate`] applies the versioned SQL files under `deploy/clickhouse/migrations/`
//!   (embedded at build time) and records them in `schema_migrations`, so re-running is a no-op.
//! * [`rows`] holds the `Row` types and their conversions from domain values.
//! * [`sql`] holds every statement capsight sends outside migrations, so a check can run each
//!   one on every supported server; [`cluster`] rewrites migrations for a cluster.
//! * [`observed`] times a call as the `clickhouse` dependency (latency, errors by class).
//!
//! Compatibility: everything here works on ClickHouse 18.16 (the Debian package used locally
//! and in CI) and on current releases. 18.16 lacks `RowBinaryWithNamesAndTypes`, so schema
//! validation of rows is off by default (`validate_rows = false`); enable it on 24.x and later.

pub mod cluster;
pub mod migrate;
pub mod rows;
pub mod sql;
mod tls;

use std::{future::Future, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

/// Runs one ClickHouse call, recording its latency and failure (by error class) as the
/// `clickhouse` dependency under `operation`: the table for an insert (`signals`), the
/// statement's name for a query (`scores.history`, [`sql::Statement::name`]). The call is a
/// `clickhouse` span named by `operation` in the caller's trace.
pub async fn observed<T>(
    operation: &'static str,
    call: impl Future<Output = Result<T, clickhouse::error::Error>>,
) -> Result<T, clickhouse::error::Error> {
    use tracing::Instrument;
    let span = tracing::info_span!(
        "clickhouse",
        otel.name = operation,
        otel.kind = "client",
        otel.status_code = tracing::field::Empty,
        db.system = "clickhouse",
        db.operation.name = operation,
        error.type = tracing::field::Empty,
    );
    let start = std::time::Instant::now();
    let result = call.instrument(span.clone()).await;
    let class = result.as_ref().err().map(error_class);
    if let Some(class) = class {
        span.record("otel.status_code", "ERROR");
        span.record("error.type", class);
    }
    capsight_runtime::metrics::dependency_call("clickhouse", operation, start, class);
    result
}

/// Inserts `rows` into `table` as one INSERT, [`observed`] under the table's name; sends nothing
/// when `rows` is empty.
pub async fn insert_rows<R>(
    client: &clickhouse::Client,
    table: &'static str,
    rows: &[R],
) -> Result<(), clickhouse::error::Error>
where
    R: clickhouse::RowOwned + clickhouse::RowWrite,
{
    if rows.is_empty() {
        return Ok(());
    }
    observed(table, async {
        let mut insert = client.insert::<R>(table).await?;
        for row in rows {
            insert.write(row).await?;
        }
        insert.end().await
    })
    .await
}

/// A bounded name for a client error (its kind, never its message).
pub fn error_class(e: &clickhouse::error::Error) -> &'static str {
    use clickhouse::error::Error as E;
    match e {
        E::Network(_) => "network",
        E::TimedOut => "timed_out",
        E::BadResponse(_) => "server",
        E::SchemaMismatch(_) | E::InvalidColumnsHeader(_) => "schema",
        E::RowNotFound => "not_found",
        _ => "client",
    }
}

/// Errors talking to ClickHouse.
#[derive(Debug, thiserror::Error)]
pub enum ClickHouseError {
    /// The server answered with an error or could not be reached.
    #[error("clickhouse {op}: {source}")]
    Query {
        /// What was being done.
        op: String,
        /// The client's error.
        source: clickhouse::error::Error,
    },
    /// A configured name is not a plain identifier.
    #[error("invalid clickhouse.{field} {value:?}: must match [A-Za-z_][A-Za-z0-9_]*")]
    Identifier {
        /// The config field.
        field: &'static str,
        /// Its value.
        value: String,
    },
    /// `clickhouse.tls_ca` cannot be read or holds no usable certificate.
    #[error("clickhouse.tls_ca {path}: {reason}")]
    TlsCa {
        /// The configured file.
        path: std::path::PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A migration file is malformed or was changed after being applied.
    #[error("migration {name}: {reason}")]
    Migration {
        /// The file name.
        name: String,
        /// What is wrong.
        reason: String,
    },
}

impl ClickHouseError {
    pub(crate) fn query(op: impl Into<String>) -> impl FnOnce(clickhouse::error::Error) -> Self {
        let op = op.into();
        move |source| Self::Query { op, source }
    }
}

/// The `[clickhouse]` config section.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClickHouseSettings {
    /// HTTP(S) endpoint, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    /// Database holding capsight's tables.
    pub database: String,
    /// User name.
    pub user: String,
    /// Password (never logged).
    #[serde(default = "empty_secret")]
    pub password: SecretString,
    /// Ask the server for column types and check rows against them. Needs ClickHouse >= 24.x;
    /// must be false on 18.16.
    #[serde(default)]
    pub validate_rows: bool,
    /// Per-request timeout (the server aborts queries that run longer).
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Client side: the longest wait to connect to the server.
    #[serde(with = "humantime_serde", default = "default_connect_timeout")]
    pub connect_timeout: Duration,
    /// Client side: the longest a call waits for the server to read or send a byte; then it
    /// fails (a hung or partitioned server never blocks a caller for longer).
    #[serde(with = "humantime_serde", default = "default_io_timeout")]
    pub io_timeout: Duration,
    /// Cluster name (`remote_servers` in the servers' config) for a clustered ClickHouse:
    /// migrations then run `ON CLUSTER` with `Replicated*` engines behind `Distributed` tables.
    /// Empty for one server.
    #[serde(default)]
    pub cluster: String,
    /// PEM file of the CA(s) that sign the server's certificate, for an `https://` url signed
    /// by a private CA; empty: the public web PKI roots (webpki-roots).
    #[serde(default)]
    pub tls_ca: std::path::PathBuf,
}

fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}

fn default_io_timeout() -> Duration {
    Duration::from_secs(40)
}

fn empty_secret() -> SecretString {
    SecretString::from(String::new())
}

impl Default for ClickHouseSettings {
    fn default() -> Self {
        Self {
            url: "http://127.0.0.1:8123".into(),
            database: "capsight".into(),
            user: "default".into(),
            password: empty_secret(),
            validate_rows: false,
            request_timeout: Duration::from_secs(30),
            connect_timeout: default_connect_timeout(),
            io_timeout: default_io_timeout(),
            cluster: String::new(),
            tls_ca: std::path::PathBuf::new(),
        }
    }
}

impl ClickHouseSettings {
    /// A client bound to the configured database.
    pub fn client(&self) -> Result<clickhouse::Client, ClickHouseError> {
        ident("database", &self.database)?;
        Ok(self.server_client()?.with_database(&self.database))
    }

    /// A client not bound to a database (for `CREATE DATABASE`), with the client-side
    /// timeouts. Fails only when `tls_ca` is set and unusable.
    pub fn server_client(&self) -> Result<clickhouse::Client, ClickHouseError> {
        let ca = (!self.tls_ca.as_os_str().is_empty()).then_some(self.tls_ca.as_path());
        let base = tls::client(ca, self.connect_timeout, self.io_timeout)?;
        let mut client = base
            .with_url(&self.url)
            .with_user(&self.user)
            .with_validation(self.validate_rows)
            // seconds; the server aborts queries that run longer
            .with_setting(
                "max_execution_time",
                self.request_timeout.as_secs().max(1).to_string(),
            );
        if !self.cluster.is_empty() {
            // an insert into a Distributed table returns once the shards have the rows, so
            // "written" still means durable
            client = client.with_setting("insert_distributed_sync", "1");
        }
        let password = self.password.expose_secret();
        if !password.is_empty() {
            client = client.with_password(password);
        }
        Ok(client)
    }

    /// Where migrations run: the database, on one server or on the configured cluster.
    pub fn target(&self) -> Result<cluster::Target, ClickHouseError> {
        ident("database", &self.database)?;
        if !self.cluster.is_empty() {
            ident("cluster", &self.cluster)?;
        }
        Ok(cluster::Target {
            database: self.database.clone(),
            cluster: (!self.cluster.is_empty()).then(|| self.cluster.clone()),
        })
    }

    /// The same settings pointing at another database (tests use one database each).
    #[must_use]
    pub fn with_database(&self, database: &str) -> Self {
        Self {
            database: database.to_owned(),
            ..self.clone()
        }
    }
}

/// Checks a name that is spliced into SQL.
pub(crate) fn ident(field: &'static str, value: &str) -> Result<(), ClickHouseError> {
    let mut chars = value.chars();
    let ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(())
    } else {
        Err(ClickHouseError::Identifier {
            field,
            value: value.to_owned(),
        })
    }
}

/// The server's version as `(major, minor)`, e.g. `(18, 16)` or `(24, 8)`.
pub async fn server_version(client: &clickhouse::Client) -> Result<(u32, u32), ClickHouseError> {
    let text: String = crate::observed(
        sql::SERVER_VERSION.name,
        client.query(sql::SERVER_VERSION.sql).fetch_one(),
    )
    .await
    .map_err(ClickHouseError::query("SELECT version()"))?;
    parse_version(&text).ok_or_else(|| ClickHouseError::Migration {
        name: "-".into(),
        reason: format!("cannot parse server version {text:?}"),
    })
}

/// Parses `MAJOR.MINOR[.…]`, e.g. `18.16.1` or `24.8`.
pub fn parse_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split('.');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_and_versions() {
        assert!(ident("database", "capsight_test_1").is_ok());
        assert!(ident("database", "x; DROP TABLE y").is_err());
        assert!(ident("database", "").is_err());
        assert_eq!(parse_version("18.16.1"), Some((18, 16)));
        assert_eq!(parse_version("24.8.4.13"), Some((24, 8)));
        assert_eq!(parse_version("garbage"), None);
    }
}
