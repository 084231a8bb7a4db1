//! Migration DDL for a ClickHouse cluster (`clickhouse.cluster` set).
//!
//! The migration files are written for one server. On a cluster each statement is rewritten:
//! * a `CREATE TABLE` with a `*MergeTree` engine becomes `<name>_local ON CLUSTER` with the
//!   `Replicated*` engine (path `/clickhouse/tables/{shard}/<database>/<name>_local`, replica
//!   `{replica}`, both server macros) plus `<name>`, a `Distributed` table over it sharded by a
//!   hash of the sort key, so rows that collapse in merges live on the same shard and every
//!   reader and writer keeps using `<name>`;
//! * a materialized view is created on every node and reads from and writes to the local tables
//!   (each shard aggregates its own rows; the read views merge the states across shards);
//! * plain views, `DROP`s and `ALTER`s run `ON CLUSTER`; a column change goes to both tables of
//!   a sharded pair, a TTL change to the local one only.
//!
//! Anything else is refused, so a new kind of statement gets a rule here before it can run on a
//! cluster.

use std::collections::BTreeSet;

/// Suffix of the replicated table behind a sharded table's `Distributed` table.
pub const LOCAL_SUFFIX: &str = "_local";

/// Where migrations run: one server, or every node of a cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The database holding capsight's tables.
    pub database: String,
    /// The cluster name (`remote_servers` in the server config); `None` for one server.
    pub cluster: Option<String>,
}

impl Target {
    /// `CREATE DATABASE` for this target.
    pub fn create_database(&self) -> String {
        format!(
            "CREATE DATABASE IF NOT EXISTS {}{}",
            self.database,
            self.on_cluster()
        )
    }

    /// `CREATE TABLE schema_migrations` for this target: on a cluster one replicated table that
    /// every node of every shard shares, so any node's migrator sees what was applied.
    pub fn create_schema_migrations(&self) -> String {
        let columns = "(version UInt32, name String, checksum String, applied_at DateTime)";
        match &self.cluster {
            None => format!(
                "CREATE TABLE IF NOT EXISTS schema_migrations {columns} \
                 ENGINE = MergeTree() ORDER BY version"
            ),
            Some(c) => format!(
                "CREATE TABLE IF NOT EXISTS schema_migrations ON CLUSTER {c} {columns} \
                 ENGINE = ReplicatedMergeTree('/clickhouse/tables/{}/schema_migrations', \
                 '{{replica}}') ORDER BY version",
                self.database
            ),
        }
    }

    fn on_cluster(&self) -> String {
        self.cluster
            .as_ref()
            .map_or_else(String::new, |c| format!(" ON CLUSTER {c}"))
    }
}

/// Names of the tables created with a `*MergeTree` engine by `statements` (sharded on a
/// cluster).
pub fn merge_tree_tables<'a>(statements: impl IntoIterator<Item = &'a str>) -> BTreeSet<String> {
    statements
        .into_iter()
        .filter_map(|s| {
            let t = Tokens::new(s);
            let name = t.create_table_name()?;
            t.engine().filter(|e| e.ends_with("MergeTree"))?;
            Some(name.to_owned())
        })
        .collect()
}

/// The statements that run `stmt` on `cluster`; `sharded` are the tables with a local and a
/// `Distributed` part (see [`merge_tree_tables`]).
pub fn rewrite(
    stmt: &str,
    cluster: &str,
    database: &str,
    sharded: &BTreeSet<String>,
) -> Result<Vec<String>, String> {
    let t = Tokens::new(stmt);
    let on = format!("ON CLUSTER {cluster}");
    let words = t.upper_words(6);
    let head: Vec<&str> = words.iter().map(String::as_str).collect();
    match head.as_slice() {
        ["CREATE", "TABLE", "IF", "NOT", "EXISTS", ..] => {
            let name = t.word(5).ok_or("CREATE TABLE without a name")?;
            create_table(&t, name, &on, cluster, database)
        }
        ["CREATE", "MATERIALIZED", "VIEW", "IF", "NOT", "EXISTS"] => {
            let name = t.word(6).ok_or("CREATE MATERIALIZED VIEW without a name")?;
            let mut out = t.insert_after_word(6, &on);
            for table in sharded {
                out = replace_table_refs(&out, table, &format!("{table}{LOCAL_SUFFIX}"));
            }
            if !t.upper_words(9).iter().any(|w| w == "TO") {
                return Err(format!(
                    "materialized view {name} needs a TO table on a cluster"
                ));
            }
            Ok(vec![out])
        }
        ["CREATE", "VIEW", "IF", "NOT", "EXISTS", ..] => Ok(vec![t.insert_after_word(5, &on)]),
        ["CREATE", "VIEW", ..] => Ok(vec![t.insert_after_word(2, &on)]),
        ["DROP", "VIEW", "IF", "EXISTS", ..] => Ok(vec![t.insert_after_word(4, &on)]),
        ["DROP", "TABLE", "IF", "EXISTS", ..] => {
            let name = t.word(4).ok_or("DROP TABLE without a name")?;
            let mut out = vec![t.insert_after_word(4, &on)];
            if sharded.contains(name) {
                out.push(format!(
                    "DROP TABLE IF EXISTS {name}{LOCAL_SUFFIX} {on} SYNC"
                ));
            }
            Ok(out)
        }
        ["ALTER", "TABLE", ..] => {
            let name = t.word(2).ok_or("ALTER TABLE without a name")?;
            if !sharded.contains(name) {
                return Ok(vec![t.insert_after_word(2, &on)]);
            }
            let rest = t.after_word(2);
            let local = format!("ALTER TABLE {name}{LOCAL_SUFFIX} {on} {rest}");
            let ttl_only = words.get(3).is_some_and(|w| w == "MODIFY")
                && t.upper_words(5).get(4).is_some_and(|w| w == "TTL");
            if ttl_only {
                Ok(vec![local])
            } else {
                Ok(vec![local, format!("ALTER TABLE {name} {on} {rest}")])
            }
        }
        _ => Err(format!(
            "no cluster rule for a statement starting {:?}",
            head.join(" ")
        )),
    }
}

fn create_table(
    t: &Tokens<'_>,
    name: &str,
    on: &str,
    cluster: &str,
    database: &str,
) -> Result<Vec<String>, String> {
    let Some(engine) = t.engine() else {
        return Err(format!("table {name}: no ENGINE clause"));
    };
    if !engine.ends_with("MergeTree") {
        return Ok(vec![t.insert_after_word(5, on)]);
    }
    let local = format!("{name}{LOCAL_SUFFIX}");
    let order_by = t
        .order_by()
        .ok_or_else(|| format!("table {name}: no ORDER BY"))?;
    let path = format!("'/clickhouse/tables/{{shard}}/{database}/{local}', '{{replica}}'");
    let (before, args, after) = t
        .engine_call()
        .ok_or_else(|| format!("table {name}: cannot read the engine's arguments"))?;
    let args = if args.trim().is_empty() {
        path
    } else {
        format!("{path}, {}", args.trim())
    };
    let head = format!("CREATE TABLE IF NOT EXISTS {local} {on}");
    let body = before[t.word_end(5)..].trim_start();
    let local_sql = format!("{head} {body}Replicated{engine}({args}){after}");
    let distributed = format!(
        "CREATE TABLE IF NOT EXISTS {name} {on} AS {local} \
         ENGINE = Distributed({cluster}, {database}, {local}, cityHash64({order_by}))"
    );
    Ok(vec![local_sql, distributed])
}

/// Replaces `table` after `FROM`/`JOIN`/`TO` (whole identifiers only).
fn replace_table_refs(sql: &str, table: &str, with: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut previous = String::new();
    for (token, is_word) in split_words(sql) {
        if is_word
            && token == table
            && matches!(
                previous.to_ascii_uppercase().as_str(),
                "FROM" | "JOIN" | "TO"
            )
        {
            out.push_str(with);
        } else {
            out.push_str(token);
        }
        if is_word {
            previous = token.to_owned();
        }
    }
    out
}

/// `sql` as runs of identifier characters (true) and everything else (false); quoted strings
/// are never words.
fn split_words(sql: &str) -> Vec<(&str, bool)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut in_string = false;
    let mut word = false;
    let bytes = sql.as_bytes();
    for (i, &b) in bytes.iter().enumerate() {
        let is_word = !in_string && (b.is_ascii_alphanumeric() || b == b'_');
        if b == b'\'' && (i == 0 || bytes[i - 1] != b'\\') {
            in_string = !in_string;
        }
        if i > start && is_word != word {
            out.push((&sql[start..i], word));
            start = i;
        }
        word = is_word;
    }
    if start < sql.len() {
        out.push((&sql[start..], word));
    }
    out
}

/// The words of one statement, with their byte ranges.
struct Tokens<'a> {
    sql: &'a str,
    words: Vec<(usize, usize)>,
}

impl<'a> Tokens<'a> {
    fn new(sql: &'a str) -> Self {
        let mut words = Vec::new();
        let mut at = 0;
        for (token, is_word) in split_words(sql) {
            if is_word {
                words.push((at, at + token.len()));
            }
            at += token.len();
        }
        Self { sql, words }
    }

    fn word(&self, i: usize) -> Option<&'a str> {
        self.words.get(i).map(|&(a, b)| &self.sql[a..b])
    }

    fn word_end(&self, i: usize) -> usize {
        self.words.get(i).map_or(self.sql.len(), |&(_, b)| b)
    }

    fn upper_words(&self, n: usize) -> Vec<String> {
        (0..n)
            .filter_map(|i| self.word(i))
            .map(str::to_ascii_uppercase)
            .collect()
    }

    /// The statement with ` text` inserted after word `i`.
    fn insert_after_word(&self, i: usize, text: &str) -> String {
        let end = self.word_end(i);
        format!("{} {text}{}", &self.sql[..end], &self.sql[end..])
    }

    /// The statement after word `i`, trimmed.
    fn after_word(&self, i: usize) -> &'a str {
        self.sql[self.word_end(i)..].trim()
    }

    fn create_table_name(&self) -> Option<&'a str> {
        let head = self.upper_words(5);
        (head == ["CREATE", "TABLE", "IF", "NOT", "EXISTS"])
            .then(|| self.word(5))
            .flatten()
    }

    fn index_of(&self, upper: &str) -> Option<usize> {
        (0..self.words.len()).find(|&i| self.word(i).is_some_and(|w| w.eq_ignore_ascii_case(upper)))
    }

    /// The engine name (the word after `ENGINE`).
    fn engine(&self) -> Option<&'a str> {
        self.word(self.index_of("ENGINE")? + 1)
    }

    /// (text before the engine name, the engine's arguments, text after its `)`).
    fn engine_call(&self) -> Option<(&'a str, &'a str, &'a str)> {
        let i = self.index_of("ENGINE")? + 1;
        let (start, end) = *self.words.get(i)?;
        let rest = &self.sql[end..];
        let open = rest.find('(')?;
        if !rest[..open].trim().is_empty() {
            return None;
        }
        let close = open + rest[open..].find(')')?;
        Some((
            &self.sql[..start],
            &rest[open + 1..close],
            &rest[close + 1..],
        ))
    }

    /// The sort key's columns, comma-separated (`ORDER BY (a, b)` or `ORDER BY a`).
    fn order_by(&self) -> Option<String> {
        let i = (0..self.words.len()).find(|&i| {
            self.word(i)
                .is_some_and(|w| w.eq_ignore_ascii_case("ORDER"))
                && self
                    .word(i + 1)
                    .is_some_and(|w| w.eq_ignore_ascii_case("BY"))
        })?;
        let rest = self.sql[self.word_end(i + 1)..].trim_start();
        let key = if let Some(inner) = rest.strip_prefix('(') {
            &inner[..inner.find(')')?]
        } else {
            rest.split_whitespace().next()?
        };
        Some(key.trim().to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sharded() -> BTreeSet<String> {
        ["signals", "signals_hourly", "probe_audit"]
            .into_iter()
            .map(String::from)
            .collect()
    }

    #[test]
    fn a_merge_tree_becomes_a_replicated_local_table_and_a_distributed_one() {
        let sql = "CREATE TABLE IF NOT EXISTS signals\n(\n    id String,\n    at DateTime\n)\n\
                   ENGINE = ReplacingMergeTree()\nPARTITION BY toYYYYMMDD(at)\nORDER BY (at, id)";
        let out = rewrite(sql, "main", "capsight", &sharded()).unwrap();
        assert_eq!(out.len(), 2);
        assert!(
            out[0].starts_with("CREATE TABLE IF NOT EXISTS signals_local ON CLUSTER main (\n"),
            "{}",
            out[0]
        );
        assert!(out[0].contains(
            "ENGINE = ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/capsight/signals_local', '{replica}')\nPARTITION BY"
        ), "{}", out[0]);
        assert_eq!(
            out[1],
            "CREATE TABLE IF NOT EXISTS signals ON CLUSTER main AS signals_local ENGINE = \
             Distributed(main, capsight, signals_local, cityHash64(at, id))"
        );
        // engine arguments are kept after the replication path
        let sql = "CREATE TABLE IF NOT EXISTS g (a String, t DateTime) \
                   ENGINE = ReplacingMergeTree(t) ORDER BY a";
        let out = rewrite(sql, "c", "db", &sharded()).unwrap();
        assert!(
            out[0].contains("ReplicatedReplacingMergeTree('/clickhouse/tables/{shard}/db/g_local', '{replica}', t) ORDER BY a"),
            "{}",
            out[0]
        );
        assert!(out[1].ends_with("cityHash64(a))"), "{}", out[1]);
    }

    #[test]
    fn views_drops_and_alters_run_on_the_cluster() {
        let mv = "CREATE MATERIALIZED VIEW IF NOT EXISTS signals_hourly_mv TO signals_hourly AS \
                  SELECT id FROM signals WHERE kind = 'signals'";
        assert_eq!(
            rewrite(mv, "c", "db", &sharded()).unwrap(),
            vec![
                "CREATE MATERIALIZED VIEW IF NOT EXISTS signals_hourly_mv ON CLUSTER c TO \
                 signals_hourly_local AS SELECT id FROM signals_local WHERE kind = 'signals'"
            ]
        );
        let view = "CREATE VIEW IF NOT EXISTS v AS SELECT * FROM signals";
        assert_eq!(
            rewrite(view, "c", "db", &sharded()).unwrap(),
            vec!["CREATE VIEW IF NOT EXISTS v ON CLUSTER c AS SELECT * FROM signals"]
        );
        assert_eq!(
            rewrite("CREATE VIEW v AS SELECT 1", "c", "db", &sharded()).unwrap(),
            vec!["CREATE VIEW v ON CLUSTER c AS SELECT 1"]
        );
        assert_eq!(
            rewrite("DROP VIEW IF EXISTS v", "c", "db", &sharded()).unwrap(),
            vec!["DROP VIEW IF EXISTS v ON CLUSTER c"]
        );
        let add = "ALTER TABLE probe_audit ADD COLUMN signal String DEFAULT ''";
        assert_eq!(
            rewrite(add, "c", "db", &sharded()).unwrap(),
            vec![
                "ALTER TABLE probe_audit_local ON CLUSTER c ADD COLUMN signal String DEFAULT ''",
                "ALTER TABLE probe_audit ON CLUSTER c ADD COLUMN signal String DEFAULT ''",
            ]
        );
        let ttl = "ALTER TABLE signals MODIFY TTL at + INTERVAL 1 DAY";
        assert_eq!(
            rewrite(ttl, "c", "db", &sharded()).unwrap(),
            vec!["ALTER TABLE signals_local ON CLUSTER c MODIFY TTL at + INTERVAL 1 DAY"]
        );
        assert!(rewrite("INSERT INTO t VALUES (1)", "c", "db", &sharded()).is_err());
        let no_to = "CREATE MATERIALIZED VIEW IF NOT EXISTS m ENGINE = Log AS SELECT 1";
        assert!(rewrite(no_to, "c", "db", &sharded()).is_err());
    }

    #[test]
    fn words_in_strings_are_not_table_names() {
        assert_eq!(
            replace_table_refs("SELECT 'FROM signals' FROM signals", "signals", "x"),
            "SELECT 'FROM signals' FROM x"
        );
        assert_eq!(
            merge_tree_tables([
                "CREATE TABLE IF NOT EXISTS a (x UInt8) ENGINE = MergeTree() ORDER BY x",
                "CREATE TABLE IF NOT EXISTS b (x UInt8) ENGINE = Log",
                "CREATE VIEW IF NOT EXISTS c AS SELECT 1",
            ]),
            BTreeSet::from(["a".to_owned()])
        );
    }

    #[test]
    fn targets_create_their_database_and_record_table() {
        let one = Target {
            database: "capsight".into(),
            cluster: None,
        };
        assert_eq!(
            one.create_database(),
            "CREATE DATABASE IF NOT EXISTS capsight"
        );
        assert!(
            one.create_schema_migrations()
                .contains("ENGINE = MergeTree()")
        );
        let many = Target {
            cluster: Some("main".into()),
            ..one
        };
        assert_eq!(
            many.create_database(),
            "CREATE DATABASE IF NOT EXISTS capsight ON CLUSTER main"
        );
        assert!(many.create_schema_migrations().contains(
            "ON CLUSTER main (version UInt32, name String, checksum String, applied_at DateTime) \
             ENGINE = ReplicatedMergeTree('/clickhouse/tables/capsight/schema_migrations', '{replica}')"
        ));
    }
}
