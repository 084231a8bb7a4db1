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
//!   A statement that must change (e.g. one a newer server rejects) is replaced by a later file
//!   that says `-- capsight:replaces NNNN_name.sql 5 6` (statements 5 and 6 of that file,
//!   counted from 1) and recreates what they created: wherever the replacing file runs (its own
//!   `requires` holds), the replaced statements are not run, on a fresh database or after an
//!   upgrade alike;
//! * with `clickhouse.cluster` set, each statement is rewritten for the cluster
//!   ([`crate::cluster`]).
//!
//! [`plan`] decides what runs on a server of a given version (`capsight-admin sql` prints it);
//! [`apply`] runs that plan.
//!
//! Applied versions are recorded in `schema_migrations` in the target database. Two migrators
//! running at once may both apply a file; idempotent statements make that harmless.

use std::collections::BTreeMap;

use include_dir::{Dir, include_dir};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cluster::{self, Target};
use crate::{ClickHouseError, ClickHouseSettings, server_version};

static MIGRATIONS: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/migrations");

const REQUIRES: &str = "-- capsight:requires ";
const REPLACES: &str = "-- capsight:replaces ";

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
    /// Statements of earlier files this one replaces: (file name, statement number from 1),
    /// from `-- capsight:replaces` lines.
    pub replaces: Vec<(String, usize)>,
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

/// One row of `schema_migrations`.
#[derive(Debug, clickhouse::Row, Serialize, Deserialize)]
pub(crate) struct Applied {
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
    let mut replaces = Vec::new();
    let mut sql = String::new();
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(v) = trimmed.strip_prefix(REPLACES) {
            let mut parts = v.split_whitespace();
            let file = parts
                .next()
                .ok_or_else(|| bad(format!("bad replaces line {line:?}")))?;
            let numbers = parts
                .map(|n| n.parse::<usize>().ok().filter(|n| *n > 0))
                .collect::<Option<Vec<_>>>()
                .filter(|n| !n.is_empty())
                .ok_or_else(|| bad(format!("bad replaces line {line:?}")))?;
            replaces.extend(numbers.into_iter().map(|n| (file.to_owned(), n)));
        } else if let Some(v) = trimmed.strip_prefix(REQUIRES) {
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
        replaces,
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

/// What one migration does on a given server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step<'a> {
    /// The migration.
    pub migration: &'a Migration,
    /// The statements to run, in order (gated, replaced and cluster-rewritten); `None` when the
    /// server is too old for the file (skipped, not recorded).
    pub statements: Option<Vec<String>>,
}

/// What each of `migrations` runs on a server of version `server` at `target`: the one
/// decision [`apply`] executes and `capsight-admin sql` prints.
pub fn plan<'a>(
    migrations: &'a [Migration],
    server: (u32, u32),
    target: &Target,
) -> Result<Vec<Step<'a>>, ClickHouseError> {
    let runs = |m: &Migration| m.requires.is_none_or(|req| server >= req);
    let mut replaced: BTreeMap<(&str, usize), &str> = BTreeMap::new();
    for (i, m) in migrations.iter().enumerate() {
        for (file, n) in &m.replaces {
            let earlier = migrations[..i].iter().find(|e| &e.name == file);
            let ok = earlier.is_some_and(|e| *n <= e.statements.len());
            if !ok {
                return Err(ClickHouseError::Migration {
                    name: m.name.clone(),
                    reason: format!("replaces statement {n} of {file}, which no earlier file has"),
                });
            }
            if runs(m) {
                replaced.insert((file.as_str(), *n), m.name.as_str());
            }
        }
    }
    let sharded = cluster::merge_tree_tables(
        migrations
            .iter()
            .flat_map(|m| m.statements.iter().map(String::as_str)),
    );
    migrations
        .iter()
        .map(|m| {
            if !runs(m) {
                return Ok(Step {
                    migration: m,
                    statements: None,
                });
            }
            let mut out = Vec::new();
            for (i, stmt) in m.statements.iter().enumerate() {
                if replaced.contains_key(&(m.name.as_str(), i + 1)) {
                    continue;
                }
                match &target.cluster {
                    None => out.push(stmt.clone()),
                    Some(c) => out.extend(
                        cluster::rewrite(stmt, c, &target.database, &sharded).map_err(
                            |reason| ClickHouseError::Migration {
                                name: m.name.clone(),
                                reason: format!("statement {}: {reason}", i + 1),
                            },
                        )?,
                    ),
                }
            }
            Ok(Step {
                migration: m,
                statements: Some(out),
            })
        })
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
    let target = settings.target()?;
    let server = settings.server_client()?;
    let create_db = target.create_database();
    server
        .query(&create_db)
        .execute()
        .await
        .map_err(ClickHouseError::query(create_db))?;
    let client = settings.client()?;
    client
        .query(&target.create_schema_migrations())
        .execute()
        .await
        .map_err(ClickHouseError::query("create schema_migrations"))?;
    let recorded: BTreeMap<u32, Applied> = client
        .query(crate::sql::APPLIED_MIGRATIONS.sql)
        .fetch_all::<Applied>()
        .await
        .map_err(ClickHouseError::query("read schema_migrations"))?
        .into_iter()
        .map(|a| (a.version, a))
        .collect();
    let version = server_version(&client).await?;

    let mut report = MigrationReport::default();
    for step in plan(migrations, version, &target)? {
        let m = step.migration;
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
        let Some(statements) = step.statements else {
            tracing::info!(migration = %m.name, ?version, "skipped: server too old");
            report.skipped.push(m.name.clone());
            continue;
        };
        for (i, stmt) in statements.iter().enumerate() {
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

    fn target(cluster: Option<&str>) -> Target {
        Target {
            database: "capsight".into(),
            cluster: cluster.map(String::from),
        }
    }

    #[test]
    fn replaced_statements_run_only_where_the_replacing_file_does_not() {
        let old = parse("0001_a.sql", "SELECT 1;\nSELECT 2;\nSELECT 3;\n").unwrap();
        let new = parse(
            "0002_b.sql",
            "-- capsight:requires 20.1\n-- capsight:replaces 0001_a.sql 2\nSELECT 22;\n",
        )
        .unwrap();
        assert_eq!(new.replaces, vec![("0001_a.sql".to_owned(), 2)]);
        let all = [old, new];
        let current = plan(&all, (26, 9), &target(None)).unwrap();
        assert_eq!(
            current[0].statements.as_deref(),
            Some(&["SELECT 1".to_owned(), "SELECT 3".to_owned()][..])
        );
        assert_eq!(
            current[1].statements.as_deref(),
            Some(&["SELECT 22".to_owned()][..])
        );
        // the replacing file does not run on 18.16, so the replaced statement does
        let old_server = plan(&all, (18, 16), &target(None)).unwrap();
        assert_eq!(old_server[0].statements.as_ref().map(Vec::len), Some(3));
        assert_eq!(old_server[1].statements, None);
        // a replaces line must name a statement of an earlier file
        for bad in ["0001_a.sql 4", "0009_z.sql 1", "0002_b.sql 1"] {
            let m = parse(
                "0002_b.sql",
                &format!("-- capsight:replaces {bad}\nSELECT 1"),
            )
            .unwrap();
            let list = [all[0].clone(), m];
            assert!(plan(&list, (26, 9), &target(None)).is_err(), "{bad}");
        }
        assert!(parse("0002_b.sql", "-- capsight:replaces 0001_a.sql\nSELECT 1").is_err());
        assert!(parse("0002_b.sql", "-- capsight:replaces 0001_a.sql 0\nSELECT 1").is_err());
    }

    #[test]
    fn every_embedded_migration_plans_on_both_servers_and_on_a_cluster() {
        let all = embedded().unwrap();
        for version in [(18, 16), (26, 9)] {
            let one = plan(&all, version, &target(None)).unwrap();
            let many = plan(&all, version, &target(Some("main"))).unwrap();
            for (a, b) in one.iter().zip(&many) {
                let (a, b) = (a.statements.as_ref(), b.statements.as_ref());
                assert_eq!(a.is_some(), b.is_some());
                if let (Some(a), Some(b)) = (a, b) {
                    assert!(b.len() >= a.len());
                    assert!(b.iter().all(|s| s.contains("ON CLUSTER main")), "{b:?}");
                }
            }
        }
        // the views 18.16 accepted without aliases are recreated by a later file everywhere
        let current = plan(&all, (26, 9), &target(None)).unwrap();
        let analytics = current.iter().find(|s| s.migration.version == 5).unwrap();
        assert_eq!(analytics.statements.as_ref().map(Vec::len), Some(4));
    }

    #[test]
    fn bad_files_are_rejected() {
        assert!(parse("x.sql", "SELECT 1").is_err());
        assert!(parse("0001_x.sql", "-- only a comment\n").is_err());
        assert!(parse("0001_x.sql", "-- capsight:requires soon\nSELECT 1").is_err());
    }
}
