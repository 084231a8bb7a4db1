#!/usr/bin/env python3
"""Storage of the same rows on a current ClickHouse, with and without the current-server schema.

    storage.py DATABASE

DATABASE is a database on the local ClickHouse 18.16 filled by
`capsight-scorer-bench storage --keep` (docs/benchmarks.md). On a current ClickHouse in process
(chdb-core), the schema is created twice from the migration runner's own plans
(`capsight-admin sql`): once as a server older than 23.8 gets it (no
0041_current_server_schema.sql: plain String columns) and once as 23.8+ gets it
(LowCardinality). The `signals`, `scores` and `alerts` rows of DATABASE are copied into both
(over HTTP with `url()`; the rollups fill through their materialized views),
every table is merged (OPTIMIZE FINAL) and `system.parts` is printed per table for both.
"""

import sys
import tempfile
import urllib.parse
import urllib.request

from chdb import session as chdb_session

import check

TABLES = ["signals", "scores", "alerts"]
ROLLUPS = ["signals_hourly", "scores_hourly"]


SERVER = "http://127.0.0.1:8123/"


def server_query(sql):
    with urllib.request.urlopen(SERVER + "?" + urllib.parse.urlencode({"query": sql})) as r:
        return r.read().decode()


def source_of(database, table, columns):
    """A url() table function reading `columns` of database.table from the local server."""
    types = dict(
        line.split("\t")[:2]
        for line in server_query(f"DESCRIBE TABLE {database}.{table}").splitlines()
    )
    structure = ", ".join(f"{c} {types[c]}" for c in columns)
    query = f"SELECT {', '.join(columns)} FROM {database}.{table} FORMAT TabSeparated"
    url = SERVER + "?" + urllib.parse.urlencode({"query": query})
    return f"url('{url}', TabSeparated, '{structure}')"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    source = sys.argv[1]
    with tempfile.TemporaryDirectory() as path:
        db = chdb_session.Session(path)
        results = {}
        for version, name in [("23.7", "plain"), ("26.9", "lowcard")]:
            database = f"storage_{name}"
            plan = check.catalog(version, database)
            for sql in plan["setup"]:
                db.query(sql)
            db.query(f"USE {database}")
            for m in plan["migrations"]:
                for sql in m["statements"] or []:
                    db.query(sql)
            inserts = {i["table"]: i["columns"] for i in plan["inserts"]}
            for table in TABLES:
                cols = ", ".join(inserts[table])
                db.query(
                    f"INSERT INTO {table} ({cols}) SELECT {cols} "
                    f"FROM {source_of(source, table, inserts[table])}"
                )
            for table in TABLES + ROLLUPS:
                db.query(f"OPTIMIZE TABLE {table} FINAL")
            out = db.query(
                "SELECT table, sum(rows), sum(bytes_on_disk), sum(data_compressed_bytes), "
                "sum(data_uncompressed_bytes) FROM system.parts "
                f"WHERE database = '{database}' AND active AND table IN "
                f"({', '.join(repr(t) for t in TABLES + ROLLUPS)}) GROUP BY table ORDER BY table",
                "TSV",
            )
            for line in str(out).splitlines():
                table, rows, disk, comp, raw = line.split("\t")
                results[(name, table)] = (int(rows), int(disk), int(comp), int(raw))
        version = str(db.query("SELECT version()", "TSV")).strip()
        mib = lambda b: b / 1048576
        print(f"ClickHouse {version} (chdb-core), rows of {source}")
        print("| table | rows | on disk, String | on disk, LowCardinality (0041) | change |")
        print("|---|---:|---:|---:|---:|")
        for table in TABLES + ROLLUPS:
            rows, plain = results[("plain", table)][0], results[("plain", table)][1]
            low = results[("lowcard", table)][1]
            print(
                f"| {table} | {rows} | {mib(plain):.2f} MiB | {mib(low):.2f} MiB | "
                f"{100 * (low - plain) / max(plain, 1):+.0f} % |"
            )


if __name__ == "__main__":
    main()
