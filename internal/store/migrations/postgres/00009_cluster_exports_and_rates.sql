-- +goose Up
-- Many nodes on one database. An audit sink's cursor row also holds the sink's export lease:
-- the node exporting to it (holder), a fencing epoch that grows with every take-over, and the
-- lease's end (unix nanoseconds). A node takes the lease only once it has ended, renews it
-- while it exports, and moves the cursor only while the epoch is still its own, so one node
-- exports to a sink at a time and one that lost the lease cannot move the cursor.
ALTER TABLE audit_sink_cursors ADD COLUMN holder TEXT NOT NULL DEFAULT '';
ALTER TABLE audit_sink_cursors ADD COLUMN epoch BIGINT NOT NULL DEFAULT 0;
ALTER TABLE audit_sink_cursors ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;

-- The per-target rate limits of the cluster: one token bucket per connector target, which
-- every node takes its tokens from in one statement. tokens may be below zero (operations
-- that reserved tokens not yet there, as golang.org/x/time/rate does); at is the time
-- (unix nanoseconds) tokens was last brought up to date. UNLOGGED: taking a token writes no
-- WAL, so it does not wait for a flush; after a crash of the database (or on a promoted
-- standby) the table is empty, and a bucket that is missing starts full, as storage copy,
-- which does not copy it, leaves it. (SQLite has one node, whose limiters are in memory.)
CREATE UNLOGGED TABLE target_rate_buckets (
    key    TEXT             PRIMARY KEY,
    tokens DOUBLE PRECISION NOT NULL,
    at     BIGINT           NOT NULL
);

-- +goose Down
DROP TABLE target_rate_buckets;
ALTER TABLE audit_sink_cursors DROP COLUMN lease_until;
ALTER TABLE audit_sink_cursors DROP COLUMN epoch;
ALTER TABLE audit_sink_cursors DROP COLUMN holder;
