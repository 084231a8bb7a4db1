-- The prober's outbox: the `done` row carries the probe's launch-attempt signal (protobuf, hex)
-- and is written BEFORE the signal is published; a `published` row follows once the broker
-- acknowledged it. At start-up the prober re-publishes the signals of its done rows without a
-- published row (same signal id, so consumers de-duplicate), so a prober killed between the
-- cloud's answer and the broker's ack loses no observation.
ALTER TABLE probe_audit ADD COLUMN signal String DEFAULT '';
