//! Versioned schema migrations.
//!
//! Files live in `deploy/clickhouse/migrations/` as `NNNN_name.sql` and are embedded in the
//! binary. Each holds one or more statements separated by `;`. Rules for authors:
//! * every statement is idempotent (`CREATE ... IF NOT EXISTS`, `ALTER ... ADD COLUMN IF NOT
//!   EXISTS`), so a migration interrupted half-way can simply run again;
//! * the SQL is the common subset of ClickHouse 18.16 and current releases; a file that needs a
//!   newer server starts with `-- capsight:requires MAJOR.MINOR` and is skipped (not recorded)
//!   on older servers, so it applies after an upgrade;
//! * an applied file is never edited: its checksum is recorded, and a changed file is an error.
//!
//! Applied versions are recorded in `schema_migrations` in the target database. Two migrators
//! running at once may both apply a file; idempotent statements make that harmless.

use std::collections::BTreeMap;

use include_dir::{Dir, include_dir};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{ClickHouseError, ClickHouseSettings, ident, server_version};

static MIGRATIONS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/migrations");

const REQUIRES: &str = "-- capsight:requires ";

/// One migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The number before the first `_`.
    pub version: u32,
    /// The file name.
    pub name: String,
    /// The statements, comments stripped.
    pub statements: Vec<String>,
    /// Minimum server version, from a `-- capsight:requires` line.
    pub requires: Option<(u32, u32)>,
    /// SHA-256 of the file, hex.
    pub checksum: String,
}

/// What [`apply`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MigrationReport {
    /// Files applied by this run.
    pub applied: Vec<String>,
    /// Files already recorded.
    pub already_applied: usize,
    /// Files skipped because the server is too old.
    pub skipped: Vec<String>,
}

#[derive(Debug, clickhouse::Row, Serialize, Deserialize)]
struct Applied {
    version: u32,
    name: String,
    checksum: String,
    applied_at: u32,
}

/// The embedded migrations, ordered by version.
pub fn embedded() -> Result<Vec<Migration>, ClickHouseError> {
    let mut all = MIGRATIONS
        .files()
        .filter(|f| f.path().extension().is_some_and(|e| e == "sql"))
        .map(|f| {
            let name = f.path().display().to_string();
            let text = f
                .contents_utf8()
                .ok_or_else(|| ClickHouseError::Migration {
                    name: name.clone(),
                    reason: "is not UTF-8".into(),
                })?;
            parse(&name, text)
        })
        .collect::<Result<Vec<_>, _>>()?;
    all.sort_by_key(|m| m.version);
    for pair in all.windows(2) {
        if pair[0].version == pair[1].version {
            return Err(ClickHouseError::Migration {
                name: pair[1].name.clone(),
                reason: format!("has the same version as {}", pair[0].name),
            });
        }
    }
    Ok(all)
}

/// Parses one migration file.
pub fn parse(name: &str, text: &str) -> Result<Migration, ClickHouseError> {
    let bad = |reason: String| ClickHouseError::Migration {
        name: name.to_owned(),
        reason,
    };
    let version = name
        .split_once('_')
        .and_then(|(v, _)| v.parse().ok())
        .ok_or_else(|| bad("file name must start with a number and '_'".into()))?;
    let mut requires = None;
    let mut sql = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(v) = trimmed.strip_prefix(REQUIRES) {
            let (major, minor) = v
                .trim()
                .split_once('.')
                .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
                .ok_or_else(|| bad(format!("bad requires line {line:?}")))?;
            requires = Some((major, minor));
        } else if !trimmed.starts_with("--") {
            sql.push_str(line);
            sql.push('\n');
        }
    }
    let statements = split_statements(&sql);
    if statements.is_empty() {
        return Err(bad("holds no statement".into()));
    }
    Ok(Migration {
        version,
        name: name.to_owned(),
        statements,
        requires,
        checksum: hex::encode(Sha256::digest(text.as_bytes())),
    })
}

/// Splits on `;` outside single-quoted strings.
fn split_statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut in_string = false;
    let mut escaped = false;
    for c in sql.chars() {
        match c {
            ';' if !in_string => {
                out.push(std::mem::take(&mut current));
                continue;
            }
            '\\' if in_string => escaped = !escaped,
            '\'' if !escaped => in_string = !in_string,
            _ => escaped = false,
        }
        if c != '\\' {
            escaped = false;
        }
        current.push(c);
    }
    out.push(current);
    out.into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Creates the database if needed and applies every embedded migration not yet recorded.
pub async fn apply(settings: &ClickHouseSettings) -> Result<MigrationReport, ClickHouseError> {
    apply_migrations(settings, &embedded()?).await
}

/// [`apply`] with an explicit migration list (tests use their own).
pub async fn apply_migrations(
    settings: &ClickHouseSettings,
    migrations: &[Migration],
) -> Result<MigrationReport, ClickHouseError> {
    ident("database", &settings.database)?;
    let server = settings.server_client();
    let create_db = format!("CREATE DATABASE IF NOT EXISTS {}", settings.database);
    server
        .query(&create_db)
        .execute()
        .await
        .map_err(ClickHouseError::query(create_db))?;
    let client = settings.client()?;
    let create = "CREATE TABLE IF NOT EXISTS schema_migrations \
                  (version UInt32, name String, checksum String, applied_at DateTime) \
                  ENGINE = MergeTree() ORDER BY version";
    client
        .query(create)
        .execute()
        .await
        .map_err(ClickHouseError::query("create schema_migrations"))?;
    let recorded: BTreeMap<u32, Applied> = client
        .query("SELECT version, name, checksum, toUInt32(applied_at) FROM schema_migrations")
        .fetch_all::<Applied>()
        .await
        .map_err(ClickHouseError::query("read schema_migrations"))?
        .into_iter()
        .map(|a| (a.version, a))
        .collect();
    let version = server_version(&client).await?;

    let mut report = MigrationReport::default();
    for m in migrations {
        if let Some(done) = recorded.get(&m.version) {
            if done.checksum != m.checksum {
                return Err(ClickHouseError::Migration {
                    name: m.name.clone(),
                    reason: format!(
                        "changed after it was applied as {} (checksum {} != {}); add a new \
                         migration instead of editing an applied one",
                        done.name, m.checksum, done.checksum
                    ),
                });
            }
            report.already_applied += 1;
            continue;
        }
        if m.requires.is_some_and(|req| version < req) {
            tracing::info!(migration = %m.name, ?version, "skipped: server too old");
            report.skipped.push(m.name.clone());
            continue;
        }
        for (i, stmt) in m.statements.iter().enumerate() {
            client
                .query(stmt)
                .execute()
                .await
                .map_err(ClickHouseError::query(format!(
                    "{} statement {}",
                    m.name,
                    i + 1
                )))?;
        }
        let mut insert = client
            .insert::<Applied>("schema_migrations")
            .await
            .map_err(ClickHouseError::query("record migration"))?;
        let now = u32::try_from(chrono::Utc::now().timestamp()).unwrap_or(u32::MAX);
        insert
            .write(&Applied {
                version: m.version,
                name: m.name.clone(),
                checksum: m.checksum.clone(),
                applied_at: now,
            })
            .await
            .map_err(ClickHouseError::query("record migration"))?;
        insert
            .end()
            .await
            .map_err(ClickHouseError::query("record migration"))?;
        tracing::info!(migration = %m.name, "applied");
        report.applied.push(m.name.clone());
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_migrations_parse_in_order() {
        let all = embedded().unwrap();
        assert!(all.len() >= 3);
        assert!(all.windows(2).all(|w| w[0].version < w[1].version));
        assert!(all[0].statements[0].starts_with("CREATE TABLE IF NOT EXISTS signals"));
    }

    #[test]
    fn splitting_respects_strings_and_comments() {
        let m = parse(
            "0007_x.sql",
            "-- capsight:requires 20.3\n-- a comment; with a semicolon\nSELECT 'a;b';\n\nSELECT 2;\n",
        )
        .unwrap();
        assert_eq!(m.version, 7);
        assert_eq!(m.requires, Some((20, 3)));
        assert_eq!(m.statements, vec!["SELECT 'a;b'", "SELECT 2"]);
    }

    #[test]
    fn bad_files_are_rejected() {
        assert!(parse("x.sql", "SELECT 1").is_err());
        assert!(parse("0001_x.sql", "-- only a comment\n").is_err());
        assert!(parse("0001_x.sql", "-- capsight:requires soon\nSELECT 1").is_err());
    }
}
