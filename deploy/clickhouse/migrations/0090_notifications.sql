-- Tenant notifications (gateway/notify, docs/notifications.md).
--
-- Subscriptions: one row per change (created, deleted) of a tenant's webhook subscription; the
-- row with the highest version wins (a delete is a row with deleted = 1). The webhook secret is
-- not stored: it is derived from tenancy.hash_secret and the subscription id.
CREATE TABLE IF NOT EXISTS notify_subscriptions
(
    tenant String,
    id String,
    version UInt64,
    created_at DateTime,
    deleted UInt8,
    url String,
    format String,
    kinds String,
    keys String,
    cooldown_secs UInt32,
    low_confidence UInt8
)
ENGINE = ReplacingMergeTree(version)
ORDER BY (tenant, id);

-- The notifier's outbox: one row per notification to deliver (id = the idempotency id the
-- receiver sees), written before the notifier's cursor moves past the event it came from. A
-- notification is pending until notify_deliveries has its outcome.
CREATE TABLE IF NOT EXISTS notify_outbox
(
    id String,
    tenant String,
    subscription_id String,
    kind String,
    subject String,
    at DateTime,
    at_ms UInt16,
    created_at DateTime,
    event String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(created_at)
ORDER BY (tenant, subscription_id, id);

-- Final outcomes of notifications: `delivered`, or `dead` after every attempt failed (the
-- dead-letter store a tenant lists with ListDeadLetters). `event` repeats the payload for it.
CREATE TABLE IF NOT EXISTS notify_deliveries
(
    id String,
    tenant String,
    subscription_id String,
    kind String,
    at DateTime,
    outcome String,
    attempts UInt32,
    status UInt16,
    error String,
    event String
)
ENGINE = ReplacingMergeTree()
PARTITION BY toYYYYMM(at)
ORDER BY (tenant, subscription_id, id);

-- How far the notifier has read each source (`launch_events`, `alerts`), in milliseconds of
-- event time; the highest position wins.
CREATE TABLE IF NOT EXISTS notify_cursors
(
    source String,
    position UInt64,
    at DateTime
)
ENGINE = ReplacingMergeTree(position)
ORDER BY source;
