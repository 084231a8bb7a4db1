#!/usr/bin/env python3
"""Runs capsight's schema and SQL on ClickHouse 18.16 (the local server) and on a current
ClickHouse (chdb-core, in-process) and compares the results.

What runs comes from `capsight-admin sql` (the migration runner's own plan per server version,
the statements of capsight_clickhouse::sql bound to sample values, the insert column lists) and
from every ```sql block of docs/analytics.md. Steps, on each engine, in a scratch database:
  1. the runner's set-up and every migration statement the plan has for that server version;
  2. the recorded schema_migrations rows and the fixture rows of deploy/clickhouse/fixtures/
     (times shifted so the newest rows are a few minutes old), with the columns capsight sends;
  3. every documented analyst query and every statement capsight sends;
then the results of each query are compared between the engines (rows as multisets, numbers
and times within what the seconds between the two runs can change), and every statement of the
cluster variant of the plan is parsed by the current engine (formatQuery).
Any statement failing on either engine, or any difference, fails the check, naming it.
"""

import datetime as dt
import json
import math
import os
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from pathlib import Path

import chdb
from chdb import session as chdb_session

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "deploy/clickhouse/fixtures"
DOCS = ROOT / "docs/analytics.md"
# fixture times are written relative to this instant; the check moves it to one minute ago
ANCHOR = dt.datetime(2026, 1, 15, 12, 0, 0)
CLUSTER = "capsight_check"
DATETIME = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
DATE = re.compile(r"^\d{4}-\d\d-\d\d$")


class Failure(Exception):
    pass


def admin_binary():
    if os.environ.get("CAPSIGHT_ADMIN"):
        return os.environ["CAPSIGHT_ADMIN"]
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return os.path.join(target, "debug", "capsight-admin")


def catalog(version, database, cluster=""):
    env = dict(os.environ, CAPSIGHT_CLICKHOUSE__DATABASE=database)
    if not os.access(admin_binary(), os.X_OK):
        raise Failure(f"{admin_binary()} not built (cargo build -p capsight-admin; or set CAPSIGHT_ADMIN)")
    args = [admin_binary(), "sql", "--server-version", version, "--cluster", cluster]
    out = subprocess.run(args, env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise Failure(f"{' '.join(args)}: {out.stderr.strip()}")
    return json.loads(out.stdout)


class Server:
    """ClickHouse over HTTP (the local 18.16)."""

    def __init__(self, url, user, password):
        self.url, self.user, self.password = url.rstrip("/"), user, password
        self.database = None

    def run(self, sql, fmt=None):
        params = {"user": self.user}
        if self.password:
            params["password"] = self.password
        if self.database:
            params["database"] = self.database
        if fmt:
            params["default_format"] = fmt
        req = urllib.request.Request(
            self.url + "/?" + urllib.parse.urlencode(params), data=sql.encode(), method="POST"
        )
        try:
            with urllib.request.urlopen(req, timeout=60) as resp:
                return resp.read().decode()
        except urllib.error.HTTPError as e:
            raise Failure(e.read().decode().strip()) from None
        except urllib.error.URLError as e:
            raise Failure(f"{self.url} unreachable: {e.reason}") from None

    def use(self, database):
        self.database = database


class Embedded:
    """The current ClickHouse in-process (chdb-core)."""

    def __init__(self):
        self.session = chdb_session.Session()

    def run(self, sql, fmt=None):
        try:
            return str(self.session.query(sql, fmt or "TSV"))
        except Exception as e:  # chdb raises its own error type with the server's message
            raise Failure(str(e).strip()) from None

    def use(self, database):
        self.session.query(f"USE {database}")


def major_minor(text):
    a, b = text.split(".")[:2]
    return f"{int(a)}.{int(b)}"


def shift_value(value, delta):
    if isinstance(value, str) and DATETIME.match(value):
        t = dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S") + delta
        return t.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, str) and DATE.match(value):
        t = dt.datetime.combine(dt.date.fromisoformat(value), ANCHOR.time()) + delta
        return t.date().isoformat()
    return value


def fixture_rows(table, columns, delta):
    path = FIXTURES / f"{table}.jsonl"
    if not path.exists():
        raise Failure(f"no fixture {path.relative_to(ROOT)} for table {table}")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        row = json.loads(line)
        if set(row) != set(columns):
            raise Failure(
                f"{path.name}:{n}: columns {sorted(row)} differ from what capsight sends "
                f"{sorted(columns)}"
            )
        rows.append({c: shift_value(row[c], delta) for c in columns})
    return rows


def documented_queries():
    """Every ```sql block of docs/analytics.md, named after its section."""
    out, heading, n = [], "top", 0
    lines = DOCS.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("## "):
            heading, n = line[3:].strip(), 0
        elif line.strip() == "```sql":
            block = []
            i += 1
            while lines[i].strip() != "```":
                block.append(lines[i])
                i += 1
            n += 1
            out.append((f"docs: {heading}" + (f" ({n})" if n > 1 else ""), "\n".join(block)))
        i += 1
    return out


def parse_tsv(text):
    lines = text.rstrip("\n").split("\n") if text.strip() else []
    header = lines[0].split("\t") if lines else []
    return header, [tuple(line.split("\t")) for line in lines[1:]]


def close(a, b):
    if a == b:
        return True
    try:
        x, y = float(a), float(b)
        return math.isclose(x, y, rel_tol=1e-3, abs_tol=0.02)
    except ValueError:
        pass
    if DATETIME.match(a) and DATETIME.match(b):
        ta = dt.datetime.strptime(a, "%Y-%m-%d %H:%M:%S")
        tb = dt.datetime.strptime(b, "%Y-%m-%d %H:%M:%S")
        return abs((ta - tb).total_seconds()) <= 5
    return False


def same_rows(a, b):
    if len(a) != len(b):
        return False
    return all(
        len(x) == len(y) and all(close(p, q) for p, q in zip(x, y))
        for x, y in zip(sorted(a), sorted(b))
    )


def load(engine, name, plan, now, log):
    """Schema and data on one engine; returns (statements run, errors)."""
    errors, ran = [], 0
    create_db, *setup = plan["setup"]
    try:
        engine.run(create_db)
        engine.use(plan["database"])
        for sql in setup:
            engine.run(sql)
            ran += 1
    except Failure as e:
        errors.append(f"{name}: set-up: {e}")
        return ran, errors
    applied = []
    for m in plan["migrations"]:
        if m["statements"] is None:
            log.append(f"  {name}: {m['name']} skipped (requires {m['requires']})")
            continue
        for i, sql in enumerate(m["statements"], 1):
            try:
                engine.run(sql)
                ran += 1
            except Failure as e:
                errors.append(f"{name}: migration {m['name']} statement {i}: {e}")
        applied.append(m)
    inserts = {i["table"]: i["columns"] for i in plan["inserts"]}
    tables = {}
    for table, columns in inserts.items():
        if table == "schema_migrations":
            stamp = now.strftime("%Y-%m-%d %H:%M:%S")
            tables[table] = [
                {"version": m["version"], "name": m["name"], "checksum": m["checksum"],
                 "applied_at": stamp}
                for m in applied
            ]
        else:
            tables[table] = fixture_rows(table, columns, now - ANCHOR)
    for table, rows in tables.items():
        # a row repeating an earlier one is a replay: it goes in a second insert, as a replayed
        # batch does (current servers collapse duplicates within one insert)
        first, replays, seen = [], [], set()
        for r in rows:
            key = json.dumps(r, sort_keys=True)
            (replays if key in seen else first).append(r)
            seen.add(key)
        cols = inserts[table]
        for batch in (first, replays):
            if not batch:
                continue
            body = "\n".join(json.dumps(r) for r in batch)
            sql = f"INSERT INTO {table} ({', '.join(cols)}) FORMAT JSONEachRow\n{body}"
            try:
                engine.run(sql)
                ran += 1
            except Failure as e:
                errors.append(f"{name}: insert into {table}: {e}")
    # both engines in the merged state (replays collapsed), whenever their merges would run
    for table in list(tables) + ["signals_hourly", "scores_hourly"]:
        try:
            engine.run(f"OPTIMIZE TABLE {table} FINAL")
        except Failure as e:
            errors.append(f"{name}: OPTIMIZE TABLE {table} FINAL: {e}")
    return ran, errors


def compare_schemas(old, new, db, log):
    """The column types of both engines: the same, except what the gated migrations improve
    (LowCardinality); the current engine's TTLs are listed."""
    sql = (f"SELECT table, name, type FROM system.columns WHERE database = '{db}' "
           "ORDER BY table, name")
    try:
        a = {(t, c): ty for t, c, ty in parse_tsv(old.run(sql, "TSVWithNames"))[1]}
        b = {(t, c): ty for t, c, ty in parse_tsv(new.run(sql, "TSVWithNames"))[1]}
        ttl = new.run(f"SELECT name FROM system.tables WHERE database = '{db}' "
                      "AND create_table_query LIKE '% TTL %' ORDER BY name").split()
    except Failure as e:
        return [f"reading the schemas: {e}"]
    errors, better = [], []
    zone = re.compile(r"DateTime\([^)]*\)")  # 18.16 spells out the (same) server time zone
    for key in sorted(set(a) | set(b)):
        x, y = (zone.sub("DateTime", t) if t else t for t in (a.get(key), b.get(key)))
        if x == y:
            continue
        if x is not None and y == f"LowCardinality({x})":
            better.append(".".join(key))
        else:
            errors.append(f"column {'.'.join(key)}: {x} on 18.16, {y} on the current engine")
    log.append(f"  schemas: {len(a)} columns alike; current engine only: LowCardinality "
               f"{', '.join(better) or 'none'}; TTL on {', '.join(ttl) or 'none'}")
    return errors


def main():
    url = os.environ.get("CAPSIGHT_CLICKHOUSE__URL", "http://127.0.0.1:8123")
    old = Server(url, os.environ.get("CAPSIGHT_CLICKHOUSE__USER", "default"),
                 os.environ.get("CAPSIGHT_CLICKHOUSE__PASSWORD", ""))
    new = Embedded()
    old_version = major_minor(old.run("SELECT version()").strip())
    new_version = major_minor(chdb.engine_version)
    names = {"old": f"ClickHouse {old_version}", "new": f"ClickHouse {new_version} (chdb-core)"}
    zones = (old.run("SELECT timezone()").strip(), new.run("SELECT timezone()").strip())
    if zones[0] != zones[1]:
        raise Failure(f"time zones differ ({zones[0]} vs {zones[1]}): results cannot be compared")

    db = f"compat_check_{uuid.uuid4().hex[:12]}"
    # one shift for both engines: the newest fixture rows a minute old
    now = dt.datetime.utcnow().replace(second=0, microsecond=0) - dt.timedelta(minutes=1)
    plans = {"old": catalog(old_version, db), "new": catalog(new_version, db)}
    log, errors = [], []
    try:
        for key, engine in (("old", old), ("new", new)):
            ran, errs = load(engine, names[key], plans[key], now, log)
            errors += errs
            log.append(f"  {names[key]}: {ran} set-up, migration and insert statements ran")
        gated = [m["name"] for m in plans["old"]["migrations"] if m["statements"] is None]
        log.append(f"  migrations only a current server gets: {', '.join(gated) or 'none'}")
        errors += compare_schemas(old, new, db, log)

        queries = documented_queries() + [(f"sql: {q['name']}", q["sql"]) for q in plans["new"]["queries"]]
        old_sql = {f"sql: {q['name']}": q["sql"] for q in plans["old"]["queries"]}
        compared = 0
        for qname, sql in queries:
            results = {}
            for key, engine in (("old", old), ("new", new)):
                text = old_sql.get(qname, sql) if key == "old" else sql
                try:
                    results[key] = parse_tsv(engine.run(text, "TSVWithNames"))
                except Failure as e:
                    errors.append(f"{names[key]}: {qname}: {e}\n    in: {' '.join(text.split())[:300]}")
            if len(results) < 2:
                continue
            (h1, r1), (h2, r2) = results["old"], results["new"]
            if qname == "sql: migrate.applied":
                # the files gated to current servers are recorded there only
                extra = [r for r in r2 if r[1] in gated]
                if sorted(m for _, m, *_ in extra) != sorted(gated):
                    errors.append(f"{qname}: {names['new']} did not record {gated}")
                r2 = [r for r in r2 if r[1] not in gated]
            if qname == "sql: server.version":
                log.append(f"  {qname}: {r1[0][0]} and {r2[0][0]} (not compared)")
                continue
            if len(h1) != len(h2) or not same_rows(r1, r2):
                errors.append(
                    f"{qname}: results differ\n    {names['old']}: {h1} {sorted(r1)}\n"
                    f"    {names['new']}: {h2} {sorted(r2)}"
                )
                continue
            compared += 1
            log.append(f"  {qname}: {len(r1)} rows, equal on both")
        log.append(f"  {compared} of {len(queries)} queries ran on both engines with equal results")

        cluster = catalog(new_version, "capsight", CLUSTER)
        parsed = 0
        for m in [{"name": "set-up", "statements": cluster["setup"]}] + cluster["migrations"]:
            for i, sql in enumerate(m["statements"] or [], 1):
                quoted = sql.replace("\\", "\\\\").replace("'", "\\'")
                try:
                    new.run(f"SELECT formatQuery('{quoted}')")
                    parsed += 1
                except Failure as e:
                    errors.append(f"cluster DDL {m['name']} statement {i} does not parse: {e}")
        log.append(f"  cluster {CLUSTER}: {parsed} DDL statements parse on {names['new']}")
    finally:
        try:
            old.use(None)
            old.run(f"DROP DATABASE IF EXISTS {db}")
        except Failure as e:
            errors.append(f"dropping {db} on {names['old']}: {e}")
    print("\n".join(log))
    if errors:
        print(f"FAILED: {len(errors)} problem(s):", file=sys.stderr)
        for e in errors:
            print(f"  - {e}", file=sys.stderr)
        return 1
    print(f"ok: schema and SQL agree on {names['old']} and {names['new']}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Failure as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
