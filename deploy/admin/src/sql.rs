//! `capsight-admin sql`: prints, as JSON, every statement capsight would send to a ClickHouse
//! server of a given version, without connecting to one: the migration plan (the runner's own
//! decision: `requires` gating, `replaces`, the cluster rewrite) and the statements of
//! `capsight_clickhouse::sql` bound to sample values. Operators review it before a migration;
//! `deploy/local/checks/20-current-clickhouse` runs every statement on two engines.

use anyhow::Context;
use capsight_clickhouse::{ClickHouseSettings, migrate, parse_version, sql};
use serde::Serialize;

#[derive(Debug, Serialize)]
struct Catalog<'a> {
    server_version: (u32, u32),
    database: &'a str,
    cluster: Option<&'a str>,
    setup: Vec<String>,
    migrations: Vec<Planned<'a>>,
    queries: Vec<Query>,
    inserts: Vec<Insert>,
}

#[derive(Debug, Serialize)]
struct Planned<'a> {
    name: &'a str,
    version: u32,
    requires: Option<(u32, u32)>,
    checksum: &'a str,
    /// `null` when the server is too old for the file.
    statements: Option<Vec<String>>,
}

#[derive(Debug, Serialize)]
struct Query {
    name: &'static str,
    sql: String,
}

#[derive(Debug, Serialize)]
struct Insert {
    table: &'static str,
    columns: &'static [&'static str],
}

/// Prints the catalog for `server_version` (`MAJOR.MINOR`) with `settings`' database and
/// cluster, the cluster replaced by `cluster` when given (`""` for one server).
pub fn print(
    settings: &ClickHouseSettings,
    server_version: &str,
    cluster: Option<&str>,
) -> anyhow::Result<()> {
    let version = parse_version(server_version)
        .with_context(|| format!("--server-version {server_version:?}: expected MAJOR.MINOR"))?;
    let mut settings = settings.clone();
    if let Some(c) = cluster {
        c.clone_into(&mut settings.cluster);
    }
    let target = settings.target()?;
    let migrations = migrate::embedded()?;
    let plan = migrate::plan(&migrations, version, &target)?;
    let catalog = Catalog {
        server_version: version,
        database: &target.database,
        cluster: target.cluster.as_deref(),
        setup: vec![target.create_database(), target.create_schema_migrations()],
        migrations: plan
            .into_iter()
            .map(|step| Planned {
                name: &step.migration.name,
                version: step.migration.version,
                requires: step.migration.requires,
                checksum: &step.migration.checksum,
                statements: step.statements,
            })
            .collect(),
        queries: sql::ALL
            .iter()
            .map(|s| Query {
                name: s.name,
                sql: s.bound(),
            })
            .collect(),
        inserts: sql::INSERTS
            .iter()
            .map(|&(table, columns)| Insert { table, columns })
            .collect(),
    };
    println!("{}", serde_json::to_string_pretty(&catalog)?);
    Ok(())
}
