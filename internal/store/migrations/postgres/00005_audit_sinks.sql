-- +goose Up
-- How far each audit sink (a JSONL file, a webhook, a syslog server) has been sent the trail:
-- the sequence number of the last event it acknowledged. Events after it are sent again after
-- a restart, so each sink gets every event at least once, in order.
CREATE TABLE audit_sink_cursors (
    name       TEXT    PRIMARY KEY,
    seq        BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL
);

-- +goose Down
DROP TABLE audit_sink_cursors;
