-- +goose Up
-- PostgreSQL twin of migrations/sqlite/00002.

-- Rotation settings of a record (ARCHITECTURE.md §3); no secrets in them.
CREATE TABLE rotation_settings (
    record_uid TEXT    PRIMARY KEY REFERENCES records(uid) ON DELETE CASCADE,
    team_id    BIGINT  NOT NULL REFERENCES teams(id),
    settings   TEXT    NOT NULL, -- JSON
    updated_at BIGINT  NOT NULL
);

-- PAM scripts attached to a record; content sealed under the record's data key.
CREATE TABLE scripts (
    id              TEXT   PRIMARY KEY,
    record_uid      TEXT   NOT NULL REFERENCES records(uid) ON DELETE CASCADE,
    position        BIGINT NOT NULL,
    name            TEXT   NOT NULL,
    command         TEXT   NOT NULL,
    credential_uids TEXT   NOT NULL, -- JSON array
    timeout_ms      BIGINT NOT NULL,
    content         BYTEA  NOT NULL,
    created_at      BIGINT NOT NULL
);
CREATE INDEX scripts_record ON scripts(record_uid, position);

-- Rotation runs. A run moves through its states, each committed before the next side effect.
CREATE TABLE rotation_runs (
    id              TEXT    PRIMARY KEY,
    team_id         BIGINT  NOT NULL REFERENCES teams(id),
    record_uid      TEXT    NOT NULL REFERENCES records(uid) ON DELETE CASCADE,
    trigger         TEXT    NOT NULL,
    status          TEXT    NOT NULL, -- queued | running | succeeded | failed | needs_attention
    state           TEXT    NOT NULL,
    attempt         BIGINT  NOT NULL,
    pending_version BIGINT,           -- the candidate's password version
    old_version     BIGINT,           -- the version that was current when the candidate was made
    candidate_fields TEXT   NOT NULL DEFAULT '{}', -- JSON: custom fields that go with the candidate (an API key's key_id)
    effect_started  BIGINT  NOT NULL DEFAULT 0, -- 1 once something may have touched the target
    error_code      TEXT    NOT NULL DEFAULT '',
    error_message   TEXT    NOT NULL DEFAULT '',
    exec_log        BYTEA,            -- JSON, sealed under the record's data key
    created_at      BIGINT  NOT NULL,
    started_at      BIGINT,
    finished_at     BIGINT,
    updated_at      BIGINT  NOT NULL
);
-- One active run per record.
CREATE UNIQUE INDEX rotation_runs_active ON rotation_runs(record_uid) WHERE status IN ('queued', 'running');
CREATE INDEX rotation_runs_record ON rotation_runs(record_uid, created_at);
CREATE INDEX rotation_runs_team ON rotation_runs(team_id, created_at);
CREATE INDEX rotation_runs_unfinished ON rotation_runs(status) WHERE status IN ('queued', 'running');

-- Audit events, hash-chained: each hash covers the previous one and the event. seq has no
-- default: the store numbers events itself from audit_head, so numbers are gap-free and in
-- commit order (a sequence would leave gaps and hand out numbers out of commit order).
CREATE TABLE audit_events (
    seq        BIGINT  PRIMARY KEY,
    team_id    BIGINT  NOT NULL REFERENCES teams(id),
    type       TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    record_uid TEXT    NOT NULL,
    details    TEXT    NOT NULL, -- JSON, never a secret
    created_at BIGINT  NOT NULL,
    prev_hash  BYTEA   NOT NULL,
    hash       BYTEA   NOT NULL
);
CREATE INDEX audit_events_team ON audit_events(team_id, seq);

-- The head of the audit chain: the newest event's seq and hash. A transaction that appends
-- reads it FOR UPDATE, which makes appenders take turns until each commits: sequence numbers
-- follow commit order without a gap, and each event chains to the one committed before it.
CREATE TABLE audit_head (
    id   SMALLINT PRIMARY KEY CHECK (id = 1),
    seq  BIGINT   NOT NULL,
    hash BYTEA    NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '');

-- +goose Down
DROP TABLE audit_head;
DROP TABLE audit_events;
DROP TABLE rotation_runs;
DROP TABLE scripts;
DROP TABLE rotation_settings;
