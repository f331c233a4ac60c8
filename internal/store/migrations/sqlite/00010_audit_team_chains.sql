-- +goose Up
-- Each team's own audit chain, beside the vault-wide one: team_seq numbers a team's events
-- 1, 2, 3, … without a gap, and team_hash is a keyed hash of team_prev_hash (the team's event
-- before) and the event, so that a team's trail is checked end to end from its own events.
-- The global seq, prev_hash and hash stay as they were: the audit export follows them.
ALTER TABLE audit_events ADD COLUMN team_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE audit_events ADD COLUMN team_prev_hash BLOB NOT NULL DEFAULT x'';
ALTER TABLE audit_events ADD COLUMN team_hash BLOB NOT NULL DEFAULT x'';

-- Events written before this migration (a SQL migration has no key to hash with) are numbered
-- in seq order, and linked by the vault-wide hash that already covers each of them: team_hash
-- is the event's hash. The first event a team writes after it chains to that hash, and a
-- verification checks this earlier part along the vault-wide chain (internal/audit).
UPDATE audit_events SET team_seq = n.team_seq, team_prev_hash = n.team_prev_hash, team_hash = audit_events.hash
FROM (SELECT seq, ROW_NUMBER() OVER w AS team_seq, COALESCE(LAG(hash) OVER w, x'') AS team_prev_hash
      FROM audit_events WINDOW w AS (PARTITION BY team_id ORDER BY seq)) AS n
WHERE audit_events.seq = n.seq;

CREATE UNIQUE INDEX audit_events_team_seq ON audit_events(team_id, team_seq);

-- The head of each team's chain: its newest event's team_seq and team_hash, moved in the
-- transaction that appends, so a team's newest events removed from the trail show.
CREATE TABLE audit_team_heads (
    team_id INTEGER PRIMARY KEY REFERENCES teams(id),
    seq     INTEGER NOT NULL,
    hash    BLOB    NOT NULL
);
INSERT INTO audit_team_heads (team_id, seq, hash)
SELECT team_id, team_seq, team_hash FROM audit_events e
WHERE team_seq = (SELECT MAX(team_seq) FROM audit_events WHERE team_id = e.team_id);

-- +goose Down
DROP TABLE audit_team_heads;
DROP INDEX audit_events_team_seq;
ALTER TABLE audit_events DROP COLUMN team_hash;
ALTER TABLE audit_events DROP COLUMN team_prev_hash;
ALTER TABLE audit_events DROP COLUMN team_seq;
