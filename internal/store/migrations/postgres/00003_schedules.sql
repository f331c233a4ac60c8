-- +goose Up
-- PostgreSQL twin of migrations/sqlite/00003.
-- Scheduling state of a record's rotation, kept apart from its settings: the next fire time
-- is computed once per occurrence and survives restarts unchanged.
ALTER TABLE rotation_settings ADD COLUMN next_run_at BIGINT;                 -- NULL: nothing scheduled
ALTER TABLE rotation_settings ADD COLUMN anchor_at BIGINT NOT NULL DEFAULT 0; -- when the schedule was set (interval phase)
ALTER TABLE rotation_settings ADD COLUMN next_heartbeat_at BIGINT;           -- NULL: no heartbeat
ALTER TABLE rotation_settings ADD COLUMN drift TEXT NOT NULL DEFAULT '';     -- '' or 'drifted'
ALTER TABLE rotation_settings ADD COLUMN drift_at BIGINT;
ALTER TABLE rotation_settings ADD COLUMN drift_message TEXT NOT NULL DEFAULT '';
CREATE INDEX rotation_settings_due ON rotation_settings(next_run_at) WHERE next_run_at IS NOT NULL;
CREATE INDEX rotation_settings_heartbeat ON rotation_settings(next_heartbeat_at) WHERE next_heartbeat_at IS NOT NULL;

ALTER TABLE rotation_runs ADD COLUMN due_at BIGINT; -- the occurrence a scheduled run is for

-- +goose Down
DROP INDEX rotation_settings_heartbeat;
DROP INDEX rotation_settings_due;
ALTER TABLE rotation_runs DROP COLUMN due_at;
ALTER TABLE rotation_settings DROP COLUMN drift_message;
ALTER TABLE rotation_settings DROP COLUMN drift_at;
ALTER TABLE rotation_settings DROP COLUMN drift;
ALTER TABLE rotation_settings DROP COLUMN next_heartbeat_at;
ALTER TABLE rotation_settings DROP COLUMN anchor_at;
ALTER TABLE rotation_settings DROP COLUMN next_run_at;
