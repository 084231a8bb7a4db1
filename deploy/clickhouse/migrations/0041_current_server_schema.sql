-- capsight:requires 23.8
-- What a current server does better, skipped on older ones (18.16 keeps the plain schema; it
-- gets this file after an upgrade). Nothing here changes a column's values or what a query
-- returns, so every query works on both shapes.
--
-- LowCardinality for the low-cardinality strings of the big tables that are not in the sort key
-- (dictionary-encoded: smaller on disk, faster to filter and group). Writers keep sending String.
ALTER TABLE signals MODIFY COLUMN source LowCardinality(String);
ALTER TABLE signals MODIFY COLUMN kind LowCardinality(String);
ALTER TABLE signals MODIFY COLUMN outcome LowCardinality(String);
ALTER TABLE signals MODIFY COLUMN error_class LowCardinality(String);
ALTER TABLE scores MODIFY COLUMN label LowCardinality(String);
ALTER TABLE launch_events MODIFY COLUMN state LowCardinality(String);
ALTER TABLE launch_events MODIFY COLUMN error_class LowCardinality(String);

-- Retention: activity heartbeats matter only while a launch runs, and a launch runs at most
-- 30 days (max_lifetime_seconds and idle_ttl_seconds are capped there), so rows older than
-- 60 days are deleted by the server in merges instead of by hand.
ALTER TABLE launch_activity MODIFY TTL at + INTERVAL 60 DAY;
