-- +goose Up
-- Node leases on rotation runs: the node executing a run holds it until lease_until, renewing
-- it while it works. Each claim adds one to lease_epoch, and every write of the run is fenced
-- on (lease_node, lease_epoch), so a node that lost its lease (it was paused, or cut off from
-- the database) cannot commit anything for the run again.
ALTER TABLE rotation_runs ADD COLUMN lease_node TEXT NOT NULL DEFAULT '';   -- '' when nobody holds it
ALTER TABLE rotation_runs ADD COLUMN lease_epoch BIGINT NOT NULL DEFAULT 0; -- one more with each claim
ALTER TABLE rotation_runs ADD COLUMN lease_until BIGINT;                    -- NULL: free to claim
-- What a claim looks for: unfinished runs whose lease is free or expired.
CREATE INDEX rotation_runs_claimable ON rotation_runs(lease_until) WHERE status IN ('queued', 'running');
-- A scheduled occurrence makes one run, whichever node fires it.
CREATE UNIQUE INDEX rotation_runs_occurrence ON rotation_runs(record_uid, due_at) WHERE due_at IS NOT NULL;

-- +goose Down
DROP INDEX rotation_runs_occurrence;
DROP INDEX rotation_runs_claimable;
ALTER TABLE rotation_runs DROP COLUMN lease_until;
ALTER TABLE rotation_runs DROP COLUMN lease_epoch;
ALTER TABLE rotation_runs DROP COLUMN lease_node;
