-- The live-launch index the launcher's sweeps and the GPU quota read instead of the whole
-- launch history: every launch_events row is copied here (launch_live_mv) with `seen` = when
-- it was written, and the leading launcher re-writes the latest row of every job not yet
-- ended (`refresh`, with a marker row tenant = '' job_id = '' state = 'marker') every
-- launcher.live.refresh, so every job not ended has a row seen within launcher.live.window.
-- Readers take the latest row per job among those seen within the window: the day partitions
-- outside it are never read (they only hold the jobs touched that day; drop them by day).
-- When no refresh happened within half the window (a fresh table, every launcher down for
-- long), the leader rebuilds the index from launch_events once.
CREATE TABLE IF NOT EXISTS launch_live
(
    tenant String,
    job_id String,
    seq UInt32,
    at DateTime,
    state String,
    provider String,
    region String,
    zone_id String,
    instance_type String,
    market String,
    instance_id String,
    attempt UInt32,
    seen DateTime
)
ENGINE = ReplacingMergeTree(seq)
PARTITION BY toYYYYMMDD(seen)
ORDER BY (tenant, job_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS launch_live_mv TO launch_live AS
SELECT tenant, job_id, seq, at, CAST(state AS String) AS state, provider, region, zone_id,
       instance_type, market, instance_id, attempt, now() AS seen
FROM launch_events;
