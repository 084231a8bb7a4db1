//! Every statement capsight sends to ClickHouse outside migrations, in one place.
//!
//! Call sites run a statement with [`Statement::query`] (its fetch observed under its name) or use
//! [`Statement::sql`] directly (with the `clickhouse` crate's `?` binding and `?fields`);
//! [`ALL`] lists them, each with sample values for its `?`s, so `capsight-admin sql` can print
//! each one bound and `deploy/local/checks/20-current-clickhouse` can run it on ClickHouse 18.16
//! and on a current release. Inserts are described by [`INSERTS`] (table and columns, as the
//! `clickhouse` crate sends them).

use clickhouse::Row;

use crate::migrate::Applied;

use crate::rows::{
    AlertRow, InstanceGpusRow, LaunchActivityRow, LaunchCancellationRow, LaunchEventRow,
    LaunchRequestRow, NotifyCursorRow, NotifyDeliveryRow, NotifyOutboxRow, NotifySubscriptionRow,
    PreflightLogRow, ProbeAuditRow, ScoreRow, SignalRow, TenantCheckRow,
};

/// A sample value bound to a `?` when the statement is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sample {
    /// A string.
    Str(&'static str),
    /// An array of strings.
    Strs(&'static [&'static str]),
    /// An unsigned number.
    UInt(u64),
    /// An array of unsigned numbers.
    UInts(&'static [u32]),
}

/// One statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Statement {
    /// `area.what`, stable (the check reports by it).
    pub name: &'static str,
    /// The SQL, with `?` for bound values and `?fields` for a row type's columns.
    pub sql: &'static str,
    /// The columns `?fields` stands for (empty when it has none).
    pub fields: &'static [&'static str],
    /// One sample value per `?`, in order.
    pub samples: &'static [Sample],
}

impl Statement {
    /// The statement as a query on `client`: bind its `?`s in order, then fetch; the fetch is
    /// [`crate::observed`] under [`Statement::name`].
    pub fn query(self, client: &clickhouse::Client) -> ObservedQuery {
        ObservedQuery {
            name: self.name,
            query: client.query(self.sql),
        }
    }

    /// The statement with `?fields` expanded and the samples bound, as the `clickhouse` crate
    /// would send it.
    pub fn bound(&self) -> String {
        let mut q = clickhouse::Client::default().query(self.sql);
        for s in self.samples {
            q = match *s {
                Sample::Str(v) => q.bind(v),
                Sample::Strs(v) => q.bind(v),
                Sample::UInt(v) => q.bind(v),
                Sample::UInts(v) => q.bind(v),
            };
        }
        let fields = self
            .fields
            .iter()
            .map(|f| format!("`{f}`"))
            .collect::<Vec<_>>()
            .join(",");
        q.sql_display().to_string().replace("?fields", &fields)
    }
}

/// A [`Statement`] on a client, its fetch observed (see [`Statement::query`]).
#[must_use]
pub struct ObservedQuery {
    name: &'static str,
    query: clickhouse::query::Query,
}

impl std::fmt::Debug for ObservedQuery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservedQuery")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl ObservedQuery {
    /// Binds the next `?`.
    pub fn bind(self, value: impl clickhouse::sql::Bind) -> Self {
        Self {
            query: self.query.bind(value),
            ..self
        }
    }

    /// Every row.
    pub async fn fetch_all<R>(self) -> Result<Vec<R>, clickhouse::error::Error>
    where
        R: clickhouse::RowOwned + clickhouse::RowRead,
    {
        crate::observed(self.name, self.query.fetch_all()).await
    }

    /// The one row (an error when there is none).
    pub async fn fetch_one<R>(self) -> Result<R, clickhouse::error::Error>
    where
        R: clickhouse::RowOwned + clickhouse::RowRead,
    {
        crate::observed(self.name, self.query.fetch_one()).await
    }

    /// The first row, if any.
    pub async fn fetch_optional<R>(self) -> Result<Option<R>, clickhouse::error::Error>
    where
        R: clickhouse::RowOwned + clickhouse::RowRead,
    {
        crate::observed(self.name, self.query.fetch_optional()).await
    }
}

const KEY: &str = "aws/us-east-1/use1-az4/p5.48xlarge/on_demand";
const TENANT: Sample = Sample::Str("acme");
const JOB: Sample = Sample::Str("job-1");
const JOBS: Sample = Sample::Strs(&["job-1", "job-2"]);
const KEYS: Sample = Sample::Strs(&["acme/job-1", "acme/job-2"]);

/// The scorer rebuilds windows from stored signals: since (unix seconds), key names. The keys
/// become a set of sorting-key tuples, so ClickHouse reads only their granules (not a scan of
/// every key's rows in the window per query; docs/benchmarks.md).
pub const SIGNAL_WINDOWS: Statement = Statement {
    name: "scorer.signal_windows",
    sql: "SELECT ?fields FROM signals \
          WHERE observed_at >= ? \
          AND (provider, region, instance_type, market, zone_id) IN \
          (SELECT p[1], p[2], p[4], p[5], p[3] FROM (SELECT splitByChar('/', arrayJoin(?)) AS p))",
    fields: SignalRow::COLUMN_NAMES,
    samples: &[Sample::UInt(0), Sample::Strs(&[KEY])],
};

/// The scorer resumes from the newest score row per key: key names.
pub const RESUME_SCORES: Statement = Statement {
    name: "scorer.resume_scores",
    sql: "SELECT key, argMax(score, t) AS score, argMax(label, t) AS label, \
          argMax(confidence, t) AS confidence, max(t) AS at_ms FROM \
          (SELECT concat(provider, '/', region, '/', zone_id, '/', instance_type, '/', market) AS key, \
           score, label, confidence, toUInt64(updated_at) * 1000 + updated_ms AS t \
           FROM scores WHERE (provider, region, instance_type, market, zone_id) IN \
           (SELECT p[1], p[2], p[4], p[5], p[3] FROM (SELECT splitByChar('/', arrayJoin(?)) AS p))) \
          GROUP BY key",
    fields: &[],
    samples: &[Sample::Strs(&[KEY])],
};

/// The scorer resumes from the newest alert per key: key names.
pub const RESUME_ALERTS: Statement = Statement {
    name: "scorer.resume_alerts",
    sql: "SELECT key, argMax(to_label, t) AS label, max(t) AS at_ms FROM \
          (SELECT concat(provider, '/', region, '/', zone_id, '/', instance_type, '/', market) AS key, \
           to_label, toUInt64(at) * 1000 + at_ms AS t \
           FROM alerts WHERE (provider, region, instance_type, market, zone_id) IN \
           (SELECT p[1], p[2], p[4], p[5], p[3] FROM (SELECT splitByChar('/', arrayJoin(?)) AS p))) \
          GROUP BY key",
    fields: &[],
    samples: &[Sample::Strs(&[KEY])],
};

/// Every tenant's agreements and contradictions with first-party verdicts, one per checked
/// report (the newest check of a report wins), over reports since (unix seconds).
pub const TENANT_TRUST: Statement = Statement {
    name: "scorer.tenant_trust",
    sql: "SELECT tenant, toUInt64(countIf(a = 1)) AS agreements, \
          toUInt64(countIf(a = 0)) AS contradictions, toUInt32(max(t)) AS last_at FROM \
          (SELECT tenant, report_id, argMax(agrees, checked_at) AS a, max(at) AS t \
           FROM tenant_checks WHERE at >= toDateTime(?) GROUP BY tenant, report_id) \
          GROUP BY tenant ORDER BY tenant",
    fields: &[],
    samples: &[Sample::UInt(0)],
};

/// Sample binds of a per-key bucketed read: step, step, the key's five columns, from, to.
const KEY_BUCKETS_SAMPLES: &[Sample] = &[
    Sample::UInt(3600),
    Sample::UInt(3600),
    Sample::Str("aws"),
    Sample::Str("us-east-1"),
    Sample::Str("use1-az4"),
    Sample::Str("p5.48xlarge"),
    Sample::Str("on_demand"),
    Sample::UInt(0),
    Sample::UInt(4_000_000_000),
];

/// The gateway's score history of one key: step, step, provider, region, zone, type, market,
/// from, to (unix seconds).
pub const SCORE_HISTORY: Statement = Statement {
    name: "gateway.score_history",
    sql: "SELECT toUInt32(intDiv(toUInt32(updated_at), ?) * ?) AS t, max(score), \
          avg(confidence), max(signal_count) FROM scores \
          WHERE provider = ? AND region = ? AND zone_id = ? AND instance_type = ? \
          AND market = ? AND updated_at >= toDateTime(?) AND updated_at < toDateTime(?) \
          GROUP BY t ORDER BY t",
    fields: &[],
    samples: KEY_BUCKETS_SAMPLES,
};

/// The signals that moved a key's score, per history bucket: step, step, provider, region,
/// zone (the key's own; region-wide signals match too), type, market, from, to (unix seconds).
/// Counts are of distinct signal ids (replays collapse only on merges).
pub const SIGNAL_MARKS: Statement = Statement {
    name: "gateway.signal_marks",
    sql: "SELECT toUInt32(intDiv(toUInt32(observed_at), ?) * ?) AS t, source, kind, outcome, \
          error_class, toUInt64(uniqExact(id)) AS n, toUInt64(uniqExactIf(id, value > 0)) AS valued, \
          max(value) AS max_value FROM signals \
          WHERE provider = ? AND region = ? AND zone_id IN (?, '') AND instance_type = ? \
          AND market = ? AND observed_at >= toDateTime(?) AND observed_at < toDateTime(?) \
          AND kind IN ('launch_attempt', 'spot_price', 'status', 'crowd_report') \
          GROUP BY t, source, kind, outcome, error_class ORDER BY t",
    fields: &[],
    samples: KEY_BUCKETS_SAMPLES,
};

/// The operator view's collector freshness: the newest signal per source observed since
/// (unix seconds), and how many arrived since then.
pub const COLLECTOR_FRESHNESS: Statement = Statement {
    name: "gateway.collector_freshness",
    sql: "SELECT source, toUInt32(max(observed_at)) AS last_observed, \
          toUInt32(max(ingested_at)) AS last_ingested, toUInt64(count()) AS signals \
          FROM signals WHERE observed_at >= toDateTime(?) GROUP BY source ORDER BY source",
    fields: &[],
    samples: &[Sample::UInt(0)],
};

/// The operator view's scorer output: the newest score row written since (unix seconds), 0
/// when none.
pub const SCORES_LAST_WRITTEN: Statement = Statement {
    name: "gateway.scores_last_written",
    sql: "SELECT toUInt32(max(updated_at)) FROM scores WHERE updated_at >= toDateTime(?)",
    fields: &[],
    samples: &[Sample::UInt(0)],
};

/// What every prober spent on a day (the same per-probe cost as [`PROBE_SPENT`]: a settled
/// probe's actual cost, else its reservation), with its probes run and failed: day
/// (`YYYY-MM-DD`).
pub const PROBE_SPEND_BY_PROBER: Statement = Statement {
    name: "gateway.probe_spend",
    sql: "SELECT prober, toFloat64(sum(c)) AS spent_usd, \
          toUInt64(countIf(o != '' AND o != 'skipped')) AS probes, \
          toUInt64(countIf(o = 'failed')) AS failed, toUInt32(max(t)) AS last_at FROM (\
            SELECT prober, probe_id, if(countIf(phase = 'done') > 0, \
              sumIf(actual_usd, phase = 'done'), sumIf(estimated_usd, phase = 'reserved')) AS c, \
              anyIf(outcome, phase = 'done') AS o, max(at) AS t \
            FROM probe_audit WHERE day = toDate(?) GROUP BY prober, probe_id) \
          GROUP BY prober ORDER BY prober",
    fields: &[],
    samples: &[Sample::Str("2000-01-01")],
};

/// A job's transitions from a seq on: tenant, job, first seq.
pub const LAUNCH_EVENTS: Statement = Statement {
    name: "launch.events",
    sql: "SELECT ?fields FROM launch_events WHERE tenant = ? AND job_id = ? \
          AND seq >= ? ORDER BY seq",
    fields: LaunchEventRow::COLUMN_NAMES,
    samples: &[TENANT, JOB, Sample::UInt(0)],
};

/// New transitions of many watched launches in one query: job ids, their tenants, job ids,
/// their first seqs, job ids.
pub const LAUNCH_EVENTS_WATCHED: Statement = Statement {
    name: "launch.events_watched",
    sql: "SELECT ?fields FROM launch_events WHERE has(?, job_id) \
          AND tenant = arrayElement(?, indexOf(?, job_id)) \
          AND seq >= arrayElement(?, indexOf(?, job_id)) ORDER BY job_id, seq",
    fields: LaunchEventRow::COLUMN_NAMES,
    samples: &[
        JOBS,
        Sample::Strs(&["acme", "acme"]),
        JOBS,
        Sample::UInts(&[2, 0]),
        JOBS,
    ],
};

/// A tenant's newest launches: tenant, limit.
pub const LAUNCH_LIST: Statement = Statement {
    name: "launch.list",
    sql: "SELECT ?fields FROM launch_requests WHERE tenant = ? \
          ORDER BY created_at DESC, created_ms DESC, job_id LIMIT 1 BY job_id LIMIT ?",
    fields: LaunchRequestRow::COLUMN_NAMES,
    samples: &[TENANT, Sample::UInt(20)],
};

/// Transitions of several jobs of a tenant: tenant, job ids.
pub const LAUNCH_EVENTS_OF_JOBS: Statement = Statement {
    name: "launch.events_of_jobs",
    sql: "SELECT ?fields FROM launch_events WHERE tenant = ? AND has(?, job_id) ORDER BY seq",
    fields: LaunchEventRow::COLUMN_NAMES,
    samples: &[TENANT, JOBS],
};

/// Which of several jobs of a tenant have a cancel request: tenant, job ids.
pub const LAUNCH_CANCELLED_OF_JOBS: Statement = Statement {
    name: "launch.cancelled_of_jobs",
    sql: "SELECT job_id FROM launch_cancellations WHERE tenant = ? AND has(?, job_id)",
    fields: &[],
    samples: &[TENANT, JOBS],
};

/// A job's latest transition: tenant, job.
pub const LAUNCH_LATEST: Statement = Statement {
    name: "launch.latest",
    sql: "SELECT ?fields FROM launch_events WHERE tenant = ? AND job_id = ? \
          ORDER BY seq DESC LIMIT 1",
    fields: LaunchEventRow::COLUMN_NAMES,
    samples: &[TENANT, JOB],
};

/// A job as accepted: tenant, job.
pub const LAUNCH_REQUEST: Statement = Statement {
    name: "launch.request",
    sql: "SELECT ?fields FROM launch_requests WHERE tenant = ? AND job_id = ? LIMIT 1",
    fields: LaunchRequestRow::COLUMN_NAMES,
    samples: &[TENANT, JOB],
};

/// Cancel requests of a job: tenant, job.
pub const LAUNCH_CANCEL_REQUESTED: Statement = Statement {
    name: "launch.cancel_requested",
    sql: "SELECT count() FROM launch_cancellations WHERE tenant = ? AND job_id = ?",
    fields: &[],
    samples: &[TENANT, JOB],
};

/// Launches whose latest state is provisioning or running: tenant or '' (twice).
pub const LAUNCH_LIVE: Statement = Statement {
    name: "launch.live",
    sql: "SELECT job_id, tenant, max(seq) AS last_seq, argMax(state, seq) AS last_state, \
          argMax(provider, seq), argMax(region, seq), argMax(zone_id, seq), \
          argMax(instance_type, seq), argMax(market, seq), argMax(instance_id, seq), \
          argMax(attempt, seq), toUInt32(argMax(at, seq)) \
          FROM launch_live WHERE seen >= toDateTime(?) AND (? = '' OR tenant = ?) \
          GROUP BY tenant, job_id \
          HAVING last_state IN ('provisioning', 'running') ORDER BY tenant, job_id",
    fields: &[],
    samples: &[Sample::UInt(0), Sample::Str(""), Sample::Str("")],
};

/// The live-launch index's freshness: the newest `seen` within the window (since, unix
/// seconds); 0 when none.
pub const LIVE_LAST_SEEN: Statement = Statement {
    name: "launch.live_last_seen",
    sql: "SELECT toUInt32(max(seen)) FROM launch_live WHERE seen >= toDateTime(?)",
    fields: &[],
    // a window starting in 2100: the same answer (0) on both engines of the check
    samples: &[Sample::UInt(4_102_444_800)],
};

/// Re-writes, seen now, the latest row of every job not ended among those seen within the
/// window (since, unix seconds), plus a marker row: one server-side statement.
pub const LIVE_REFRESH: Statement = Statement {
    name: "launch.live_refresh",
    sql: "INSERT INTO launch_live SELECT tenant, job_id, last_seq, last_at, last_state, p, r, z, \
          t, m, i, a, now() FROM (SELECT tenant, job_id, max(seq) AS last_seq, \
          argMax(at, seq) AS last_at, argMax(state, seq) AS last_state, \
          argMax(provider, seq) AS p, argMax(region, seq) AS r, argMax(zone_id, seq) AS z, \
          argMax(instance_type, seq) AS t, argMax(market, seq) AS m, \
          argMax(instance_id, seq) AS i, argMax(attempt, seq) AS a \
          FROM launch_live WHERE seen >= toDateTime(?) GROUP BY tenant, job_id \
          HAVING last_state NOT IN ('failed', 'cancelled', 'terminated', 'marker') \
          UNION ALL SELECT '', '', toUInt32(0), now(), 'marker', '', '', '', '', '', '', \
          toUInt32(0))",
    fields: &[],
    samples: &[Sample::UInt(0)],
};

/// Rebuilds the live-launch index from the whole history (a fresh index, or one not refreshed
/// for half its window): the latest row of every job not ended, seen now. Rare: it reads every
/// transition.
pub const LIVE_REBUILD: Statement = Statement {
    name: "launch.live_rebuild",
    sql: "INSERT INTO launch_live SELECT tenant, job_id, last_seq, last_at, last_state, p, r, z, \
          t, m, i, a, now() FROM (SELECT tenant, job_id, max(seq) AS last_seq, \
          argMax(at, seq) AS last_at, CAST(argMax(state, seq) AS String) AS last_state, \
          argMax(provider, seq) AS p, argMax(region, seq) AS r, argMax(zone_id, seq) AS z, \
          argMax(instance_type, seq) AS t, argMax(market, seq) AS m, \
          argMax(instance_id, seq) AS i, argMax(attempt, seq) AS a \
          FROM launch_events GROUP BY tenant, job_id \
          HAVING last_state NOT IN ('failed', 'cancelled', 'terminated') \
          UNION ALL SELECT '', '', toUInt32(0), now(), 'marker', '', '', '', '', '', '', \
          toUInt32(0))",
    fields: &[],
    samples: &[],
};

/// Jobs among `tenant/job_id` keys with a cancel request (the keys become a set of sorting-key
/// tuples: only their granules are read).
pub const LAUNCH_CANCELLED_OF_KEYS: Statement = Statement {
    name: "launch.cancelled_of_keys",
    sql: "SELECT DISTINCT tenant, job_id FROM launch_cancellations WHERE (tenant, job_id) IN \
          (SELECT p[1], p[2] FROM (SELECT splitByChar('/', arrayJoin(?)) AS p))",
    fields: &[],
    samples: &[KEYS],
};

/// The requests of `tenant/job_id` keys.
pub const LAUNCH_REQUESTS_OF_KEYS: Statement = Statement {
    name: "launch.requests_of_keys",
    sql: "SELECT ?fields FROM launch_requests WHERE (tenant, job_id) IN \
          (SELECT p[1], p[2] FROM (SELECT splitByChar('/', arrayJoin(?)) AS p))",
    fields: LaunchRequestRow::COLUMN_NAMES,
    samples: &[KEYS],
};

/// The transitions of `tenant/job_id` keys, by job and seq (unmerged duplicates may repeat a
/// seq).
pub const LAUNCH_EVENTS_OF_KEYS: Statement = Statement {
    name: "launch.events_of_keys",
    sql: "SELECT ?fields FROM launch_events WHERE (tenant, job_id) IN \
          (SELECT p[1], p[2] FROM (SELECT splitByChar('/', arrayJoin(?)) AS p)) \
          ORDER BY tenant, job_id, seq",
    fields: LaunchEventRow::COLUMN_NAMES,
    samples: &[KEYS],
};

/// Outbox jobs to (re-)publish: accepted within the look-back (since, unix seconds) but
/// before the grace (until, unix seconds), never confirmed by the broker, recorded in
/// `launch_requests` and not picked up by a launcher (no transition past seq 0); at most
/// `limit`, oldest first.
pub const LAUNCH_OUTBOX_PENDING: Statement = Statement {
    name: "launch.outbox_pending",
    sql: "SELECT job_id, tenant, min(created_at) AS c, argMax(job, dispatched), \
          max(dispatched) AS d FROM launch_outbox \
          WHERE created_at >= toDateTime(?) AND created_at <= toDateTime(?) \
          AND (tenant, job_id) IN (SELECT tenant, job_id FROM launch_requests \
          WHERE created_at >= toDateTime(?)) \
          AND (tenant, job_id) NOT IN (SELECT tenant, job_id FROM launch_events \
          WHERE at >= toDateTime(?) AND seq > 0) \
          GROUP BY tenant, job_id HAVING d = 0 ORDER BY c LIMIT ?",
    fields: &[],
    samples: &[
        Sample::UInt(0),
        Sample::UInt(0),
        Sample::UInt(0),
        Sample::UInt(0),
        Sample::UInt(100),
    ],
};

/// One job's outbox state: tenant, job; `(job hex, dispatched)` when it has a row.
pub const LAUNCH_OUTBOX_JOB: Statement = Statement {
    name: "launch.outbox_job",
    sql: "SELECT argMax(job, dispatched), max(dispatched) FROM launch_outbox \
          WHERE tenant = ? AND job_id = ? GROUP BY tenant, job_id",
    fields: &[],
    samples: &[TENANT, JOB],
};

/// Tenants and regions launches touched since (unix seconds): where the reconciler looks for
/// instances tagged with a job.
pub const RECONCILE_SCOPES: Statement = Statement {
    name: "launch.reconcile_scopes",
    sql: "SELECT DISTINCT tenant, provider, region FROM launch_events \
          WHERE at >= toDateTime(?) AND region != '' ORDER BY tenant, provider, region",
    fields: &[],
    samples: &[Sample::UInt(0)],
};

/// The latest transition of each of a tenant's jobs: tenant, job ids.
pub const LAUNCH_LATEST_OF_JOBS: Statement = Statement {
    name: "launch.latest_of_jobs",
    sql: "SELECT job_id, argMax(state, seq) FROM launch_events \
          WHERE tenant = ? AND has(?, job_id) GROUP BY job_id",
    fields: &[],
    samples: &[TENANT, JOBS],
};

/// The latest transition of each of these jobs, whichever tenant's (the name-based sweep of
/// clouds without tags, where an account two tenants share lists both's instances): job ids.
pub const LAUNCH_LATEST_OF_ANY_TENANT: Statement = Statement {
    name: "launch.latest_of_any_tenant",
    sql: "SELECT job_id, argMax(state, seq) FROM launch_events \
          WHERE has(?, job_id) GROUP BY job_id",
    fields: &[],
    samples: &[JOBS],
};

/// Instance counts of a tenant's jobs: tenant, job ids.
pub const LAUNCH_COUNTS: Statement = Statement {
    name: "launch.counts",
    sql: "SELECT job_id, count FROM launch_requests WHERE tenant = ? AND has(?, job_id)",
    fields: &[],
    samples: &[TENANT, JOBS],
};

/// The latest score of every key updated since (unix seconds).
pub const LATEST_SCORES: Statement = Statement {
    name: "launch.latest_scores",
    sql: "SELECT provider, region, zone_id, instance_type, market, \
          toUInt32(max(updated_at)), argMax(score, updated_at), argMax(label, updated_at), \
          argMax(confidence, updated_at), argMax(window_secs, updated_at), \
          argMax(signal_count, updated_at) FROM scores \
          WHERE updated_at >= toDateTime(?) \
          GROUP BY provider, region, zone_id, instance_type, market",
    fields: &[],
    samples: &[Sample::UInt(0)],
};

/// Jobs that ended within the hour (from the live-launch index; the caller keeps those that
/// asked for a warm standby).
pub const ENDED_WITH_STANDBY: Statement = Statement {
    name: "launcher.ended_with_standby",
    sql: "SELECT tenant, job_id FROM launch_live \
          WHERE seen >= now() - 3600 GROUP BY tenant, job_id \
          HAVING argMax(state, seq) IN ('terminated', 'failed', 'cancelled')",
    fields: &[],
    samples: &[],
};

/// GPU-hours per month from a day (`YYYY-MM-DD`), tenant or '' (twice).
pub const GPU_HOURS_MONTHLY: Statement = Statement {
    name: "launcher.gpu_hours_monthly",
    sql: "SELECT month, tenant, market, gpu_hours, launches, any_still_running \
          FROM tenant_gpu_hours_monthly \
          WHERE month >= toDate(?) AND (? = '' OR tenant = ?) \
          ORDER BY month DESC, tenant, market",
    fields: &[],
    samples: &[Sample::Str("2000-01-01"), TENANT, TENANT],
};

/// When each of the jobs started running: `tenant/job_id` keys (only their granules are read).
pub const RUNNING_SINCE: Statement = Statement {
    name: "launcher.running_since",
    sql: "SELECT tenant, job_id, toUInt32(min(at)) AS t FROM launch_events \
          WHERE (tenant, job_id) IN \
          (SELECT p[1], p[2] FROM (SELECT splitByChar('/', arrayJoin(?)) AS p)) \
          AND state = 'running' GROUP BY tenant, job_id",
    fields: &[],
    samples: &[KEYS],
};

/// The latest heartbeat of each of the jobs: `tenant/job_id` keys.
pub const LAST_HEARTBEATS: Statement = Statement {
    name: "launcher.last_heartbeats",
    sql: "SELECT tenant, job_id, toUInt32(max(at)) AS t FROM launch_activity \
          WHERE (tenant, job_id) IN \
          (SELECT p[1], p[2] FROM (SELECT splitByChar('/', arrayJoin(?)) AS p)) \
          GROUP BY tenant, job_id",
    fields: &[],
    samples: &[KEYS],
};

/// Lifetime and idle limits of the jobs: `tenant/job_id` keys.
pub const JOB_LIMITS: Statement = Statement {
    name: "launcher.job_limits",
    sql: "SELECT tenant, job_id, any(max_lifetime_secs), any(idle_ttl_secs) \
          FROM launch_requests WHERE (tenant, job_id) IN \
          (SELECT p[1], p[2] FROM (SELECT splitByChar('/', arrayJoin(?)) AS p)) \
          GROUP BY tenant, job_id",
    fields: &[],
    samples: &[KEYS],
};

/// Preflight demand per key since (unix seconds).
pub const PROBE_DEMAND: Statement = Statement {
    name: "probe.demand",
    sql: "SELECT provider, region, zone_id, instance_type, market, count() AS n, \
          toUInt32(maxIf(at, decision = 'retry_with_alternatives')) AS refused_at \
          FROM preflight_log WHERE at >= toDateTime(?) \
          GROUP BY provider, region, zone_id, instance_type, market",
    fields: &[],
    samples: &[Sample::UInt(0)],
};

/// The prober's outbox: prober.
pub const PROBE_UNPUBLISHED: Statement = Statement {
    name: "probe.unpublished",
    sql: "SELECT probe_id, s AS signal FROM (\
            SELECT probe_id, anyIf(signal, phase = 'done') AS s, min(at) AS first \
            FROM probe_audit WHERE prober = ? AND day >= yesterday() \
            GROUP BY probe_id \
            HAVING countIf(phase = 'published') = 0 AND s != '') \
          ORDER BY first",
    fields: &[],
    samples: &[Sample::Str("probe-1")],
};

/// What a prober spent on a day: prober, day (`YYYY-MM-DD`).
pub const PROBE_SPENT: Statement = Statement {
    name: "probe.spent",
    sql: "SELECT toFloat64(sum(c)) FROM (\
            SELECT probe_id, if(countIf(phase = 'done') > 0, \
              sumIf(actual_usd, phase = 'done'), sumIf(estimated_usd, phase = 'reserved')) AS c \
            FROM probe_audit WHERE prober = ? AND day = toDate(?) GROUP BY probe_id)",
    fields: &[],
    samples: &[Sample::Str("probe-1"), Sample::Str("2000-01-01")],
};

/// The key of an instance capsight launched for a tenant: tenant, instance id.
pub const LAUNCHED_INSTANCE: Statement = Statement {
    name: "reports.launched_instance",
    sql: "SELECT provider, region, zone_id, instance_type, market FROM launch_events \
          WHERE tenant = ? AND instance_id != '' \
          AND has(splitByChar(',', replaceAll(instance_id, ' ', '')), ?) \
          ORDER BY seq DESC LIMIT 1",
    fields: &[],
    samples: &[TENANT, Sample::Str("i-0a1b2c3d")],
};

/// The demo's signals read back: id prefix.
pub const DEMO_SIGNALS: Statement = Statement {
    name: "admin.demo_signals",
    sql: "SELECT concat(provider, '/', region, '/', zone_id, '/', instance_type, '/', market), \
          kind, outcome, error_code FROM signals WHERE startsWith(id, ?) ORDER BY id",
    fields: &[],
    samples: &[Sample::Str("demo-")],
};

/// Probes run and their cost (the evaluation's report).
pub const PROBE_SPEND_TOTAL: Statement = Statement {
    name: "eval.probe_spend",
    sql: "SELECT count(), uniqExact(concat(region, '/', zone_id, '/', instance_type, '/', market)), \
          sum(actual_usd) FROM probe_audit WHERE phase = 'done' AND outcome != 'skipped'",
    fields: &[],
    samples: &[],
};

/// Every stored signal, de-duplicated, in time order (the evaluation's fitting data set).
pub const ALL_SIGNALS: Statement = Statement {
    name: "eval.all_signals",
    sql: "SELECT ?fields FROM signals FINAL ORDER BY observed_at, observed_ms, id",
    fields: SignalRow::COLUMN_NAMES,
    samples: &[],
};

/// A tenant's live subscriptions (the newest row of each wins; deleted ones left out): tenant.
pub const NOTIFY_SUBSCRIPTIONS_OF_TENANT: Statement = Statement {
    name: "notify.subscriptions_of_tenant",
    sql: "SELECT tenant, id, max(version) AS v, argMax(created_at, version) AS c, \
          argMax(deleted, version) AS d, argMax(url, version), argMax(format, version), \
          argMax(kinds, version), argMax(keys, version), argMax(cooldown_secs, version), \
          argMax(low_confidence, version) \
          FROM notify_subscriptions WHERE tenant = ? GROUP BY tenant, id \
          HAVING d = 0 ORDER BY c, id",
    fields: &[],
    samples: &[TENANT],
};

/// Every tenant's live subscriptions (the notifier).
pub const NOTIFY_SUBSCRIPTIONS_ALL: Statement = Statement {
    name: "notify.subscriptions_all",
    sql: "SELECT tenant, id, max(version) AS v, argMax(created_at, version) AS c, \
          argMax(deleted, version) AS d, argMax(url, version), argMax(format, version), \
          argMax(kinds, version), argMax(keys, version), argMax(cooldown_secs, version), \
          argMax(low_confidence, version) \
          FROM notify_subscriptions GROUP BY tenant, id \
          HAVING d = 0 ORDER BY tenant, c, id",
    fields: &[],
    samples: &[],
};

/// Where the notifier stopped reading a source: source.
pub const NOTIFY_CURSOR: Statement = Statement {
    name: "notify.cursor",
    sql: "SELECT max(position) FROM notify_cursors WHERE source = ?",
    fields: &[],
    samples: &[Sample::Str("launch_events")],
};

/// Launch transitions of every tenant in an event-time window: from ms, to ms.
pub const NOTIFY_LAUNCH_EVENTS: Statement = Statement {
    name: "notify.launch_events",
    sql: "SELECT ?fields FROM launch_events \
          WHERE at >= toDateTime(intDiv(?, 1000)) AND toUInt64(at) * 1000 + at_ms <= ? \
          ORDER BY at, at_ms, tenant, job_id, seq LIMIT 1 BY tenant, job_id, seq",
    fields: LaunchEventRow::COLUMN_NAMES,
    samples: &[Sample::UInt(0), Sample::UInt(1_000)],
};

/// Label transitions in an event-time window: from ms, to ms.
pub const NOTIFY_ALERTS: Statement = Statement {
    name: "notify.alerts",
    sql: "SELECT ?fields FROM alerts \
          WHERE at >= toDateTime(intDiv(?, 1000)) AND toUInt64(at) * 1000 + at_ms <= ? \
          ORDER BY at, at_ms, provider, region, zone_id, instance_type, market \
          LIMIT 1 BY provider, region, zone_id, instance_type, market, at, at_ms",
    fields: AlertRow::COLUMN_NAMES,
    samples: &[Sample::UInt(0), Sample::UInt(1_000)],
};

/// Notifications written since (unix seconds): what the notifier already fanned out (its
/// de-duplication and cooldown memory at start).
pub const NOTIFY_OUTBOX_RECENT: Statement = Statement {
    name: "notify.outbox_recent",
    sql: "SELECT ?fields FROM notify_outbox WHERE created_at >= toDateTime(?) \
          ORDER BY at, at_ms, id LIMIT 1 BY id",
    fields: NotifyOutboxRow::COLUMN_NAMES,
    samples: &[Sample::UInt(0)],
};

/// Notifications written since (unix seconds) without an outcome, oldest event first.
pub const NOTIFY_PENDING: Statement = Statement {
    name: "notify.pending",
    sql: "SELECT ?fields FROM notify_outbox WHERE created_at >= toDateTime(?) \
          AND id NOT IN (SELECT id FROM notify_deliveries WHERE at >= toDateTime(?)) \
          ORDER BY at, at_ms, id LIMIT 1 BY id LIMIT ?",
    fields: NotifyOutboxRow::COLUMN_NAMES,
    samples: &[Sample::UInt(0), Sample::UInt(0), Sample::UInt(1_000)],
};

/// A tenant's dead letters, newest first: tenant, limit.
pub const NOTIFY_DEAD_LETTERS: Statement = Statement {
    name: "notify.dead_letters",
    sql: "SELECT ?fields FROM notify_deliveries WHERE tenant = ? AND outcome = 'dead' \
          ORDER BY at DESC, id LIMIT 1 BY id LIMIT ?",
    fields: NotifyDeliveryRow::COLUMN_NAMES,
    samples: &[TENANT, Sample::UInt(100)],
};

/// The migration runner's record of applied files.
pub const APPLIED_MIGRATIONS: Statement = Statement {
    name: "migrate.applied",
    sql: "SELECT version, name, checksum, toUInt32(applied_at) FROM schema_migrations",
    fields: &[],
    samples: &[],
};

/// The server's version.
pub const SERVER_VERSION: Statement = Statement {
    name: "server.version",
    sql: "SELECT version()",
    fields: &[],
    samples: &[],
};

/// Every statement above.
pub const ALL: &[Statement] = &[
    SIGNAL_WINDOWS,
    RESUME_SCORES,
    RESUME_ALERTS,
    TENANT_TRUST,
    SCORE_HISTORY,
    SIGNAL_MARKS,
    COLLECTOR_FRESHNESS,
    SCORES_LAST_WRITTEN,
    PROBE_SPEND_BY_PROBER,
    LAUNCH_EVENTS,
    LAUNCH_EVENTS_WATCHED,
    LAUNCH_LIST,
    LAUNCH_EVENTS_OF_JOBS,
    LAUNCH_CANCELLED_OF_JOBS,
    LAUNCH_LATEST,
    LAUNCH_REQUEST,
    LAUNCH_CANCEL_REQUESTED,
    LAUNCH_LIVE,
    LIVE_LAST_SEEN,
    LIVE_REFRESH,
    LIVE_REBUILD,
    LAUNCH_CANCELLED_OF_KEYS,
    LAUNCH_REQUESTS_OF_KEYS,
    LAUNCH_EVENTS_OF_KEYS,
    LAUNCH_COUNTS,
    LAUNCH_OUTBOX_PENDING,
    LAUNCH_OUTBOX_JOB,
    RECONCILE_SCOPES,
    LAUNCH_LATEST_OF_JOBS,
    LAUNCH_LATEST_OF_ANY_TENANT,
    LATEST_SCORES,
    ENDED_WITH_STANDBY,
    GPU_HOURS_MONTHLY,
    RUNNING_SINCE,
    LAST_HEARTBEATS,
    JOB_LIMITS,
    PROBE_DEMAND,
    PROBE_UNPUBLISHED,
    PROBE_SPENT,
    LAUNCHED_INSTANCE,
    DEMO_SIGNALS,
    PROBE_SPEND_TOTAL,
    ALL_SIGNALS,
    NOTIFY_SUBSCRIPTIONS_OF_TENANT,
    NOTIFY_SUBSCRIPTIONS_ALL,
    NOTIFY_CURSOR,
    NOTIFY_LAUNCH_EVENTS,
    NOTIFY_ALERTS,
    NOTIFY_OUTBOX_RECENT,
    NOTIFY_PENDING,
    NOTIFY_DEAD_LETTERS,
    APPLIED_MIGRATIONS,
    SERVER_VERSION,
];

/// Every table capsight inserts into, with the columns it sends.
pub const INSERTS: &[(&str, &[&str])] = &[
    ("signals", SignalRow::COLUMN_NAMES),
    ("scores", ScoreRow::COLUMN_NAMES),
    ("alerts", AlertRow::COLUMN_NAMES),
    ("tenant_checks", TenantCheckRow::COLUMN_NAMES),
    ("launch_events", LaunchEventRow::COLUMN_NAMES),
    ("launch_requests", LaunchRequestRow::COLUMN_NAMES),
    ("launch_cancellations", LaunchCancellationRow::COLUMN_NAMES),
    ("launch_activity", LaunchActivityRow::COLUMN_NAMES),
    ("preflight_log", PreflightLogRow::COLUMN_NAMES),
    ("probe_audit", ProbeAuditRow::COLUMN_NAMES),
    ("instance_gpus", InstanceGpusRow::COLUMN_NAMES),
    ("notify_subscriptions", NotifySubscriptionRow::COLUMN_NAMES),
    ("notify_outbox", NotifyOutboxRow::COLUMN_NAMES),
    ("notify_deliveries", NotifyDeliveryRow::COLUMN_NAMES),
    ("notify_cursors", NotifyCursorRow::COLUMN_NAMES),
    ("schema_migrations", Applied::COLUMN_NAMES),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_placeholder_has_a_sample_and_names_are_unique() {
        for s in ALL {
            let marks = s.sql.matches('?').count() - s.sql.matches("?fields").count();
            assert_eq!(marks, s.samples.len(), "{}", s.name);
            assert_eq!(
                s.sql.contains("?fields"),
                !s.fields.is_empty(),
                "{}",
                s.name
            );
            let bound = s.bound();
            assert!(!bound.contains('?'), "{}: {bound}", s.name);
        }
        let mut names: Vec<&str> = ALL.iter().map(|s| s.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
    }

    #[test]
    fn binding_quotes_strings_and_expands_fields() {
        assert_eq!(
            LAUNCH_LATEST.bound(),
            format!(
                "SELECT {} FROM launch_events WHERE tenant = 'acme' AND job_id = 'job-1' \
                 ORDER BY seq DESC LIMIT 1",
                LaunchEventRow::COLUMN_NAMES
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        );
        assert!(
            LAUNCH_COUNTS
                .bound()
                .contains("has(['job-1','job-2'], job_id)")
        );
    }
}
