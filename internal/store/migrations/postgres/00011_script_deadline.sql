-- +goose Up
-- When a script's process is sure to have ended: its start plus its time limit. A node that
-- settles a run whose script another machine started (the node there was paused or cut off,
-- and its script may still be at work on the target) cannot kill it, so it waits until then.
ALTER TABLE script_processes ADD COLUMN ends_by BIGINT NOT NULL DEFAULT 0;

-- +goose Down
ALTER TABLE script_processes DROP COLUMN ends_by;
