-- +goose Up
-- An audit sink's cursor row also holds the sink's export lease (see the PostgreSQL
-- migration): on SQLite one node runs, and the lease only keeps the tables alike. The
-- per-target rate limits stay in memory here, so there is no target_rate_buckets.
ALTER TABLE audit_sink_cursors ADD COLUMN holder TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_sink_cursors ADD COLUMN epoch INTEGER NOT NULL DEFAULT 0;
ALTER TABLE audit_sink_cursors ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE audit_sink_cursors DROP COLUMN lease_until;
ALTER TABLE audit_sink_cursors DROP COLUMN epoch;
ALTER TABLE audit_sink_cursors DROP COLUMN holder;
