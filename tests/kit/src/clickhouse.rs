//! ClickHouse for tests: databases of their own, inserting fixture rows, and counting what a
//! service stored.

use capsight_clickhouse::ClickHouseSettings;
use clickhouse::{RowOwned, RowWrite};

/// The stack's ClickHouse settings with a database named after the test (`test_<prefix>_<id>`),
/// not created yet.
pub fn named(prefix: &str) -> ClickHouseSettings {
    #[derive(serde::Deserialize)]
    struct Section {
        clickhouse: ClickHouseSettings,
    }
    let base = capsight_runtime::config::load::<Section>(None)
        .unwrap()
        .clickhouse;
    base.with_database(&format!("test_{prefix}_{}", uuid::Uuid::new_v4().simple()))
}

/// Drops the settings' database (what does not exist is fine). A failure (ClickHouse slow or
/// gone during cleanup) is reported, not raised: a leftover test database is harmless, and a
/// panic here would throw away what the test or the evaluation run already measured.
pub async fn drop_database(settings: &ClickHouseSettings) {
    let dropped = match settings.server_client() {
        Ok(client) => client
            .query(&format!("DROP DATABASE IF EXISTS {}", settings.database))
            .execute()
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    if let Err(e) = dropped {
        eprintln!("database {} not dropped: {e}", settings.database);
    }
}

/// Inserts `rows` into `table` in one insert.
pub async fn insert<R: RowOwned + RowWrite>(client: &clickhouse::Client, table: &str, rows: &[R]) {
    let mut insert = client.insert::<R>(table).await.unwrap();
    for row in rows {
        insert.write(row).await.unwrap();
    }
    insert.end().await.unwrap();
}

/// (distinct signal ids, rows) in `signals`, after de-duplication (`FINAL`) when `merged`.
pub async fn signal_counts(client: &clickhouse::Client, merged: bool) -> (u64, u64) {
    #[derive(clickhouse::Row, serde::Deserialize)]
    struct Counts {
        distinct: u64,
        rows: u64,
    }
    let sql = if merged {
        "SELECT uniqExact(id) AS distinct, count() AS rows FROM signals FINAL"
    } else {
        "SELECT uniqExact(id) AS distinct, count() AS rows FROM signals"
    };
    let c: Counts = client.query(sql).fetch_one().await.unwrap();
    (c.distinct, c.rows)
}

/// The TSV output of `sql` (for documented queries); panics with the query on an error.
pub async fn tsv(client: &clickhouse::Client, sql: &str) -> String {
    let bytes = client
        .query(sql)
        .fetch_bytes("TSV")
        .unwrap()
        .collect()
        .await
        .unwrap_or_else(|e| panic!("{e}\nin\n{sql}"));
    String::from_utf8(bytes.to_vec()).unwrap()
}
