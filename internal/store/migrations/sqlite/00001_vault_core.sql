-- +goose Up
-- Times are unix nanoseconds (BIGINT), so the same SQL serves SQLite and PostgreSQL.

-- The master key, wrapped by a key-encryption key; one row per key term.
CREATE TABLE keyring (
    term       BIGINT PRIMARY KEY,
    wrapped    TEXT   NOT NULL, -- JSON: kind, KDF parameters, sealed master key
    created_at BIGINT NOT NULL
);

CREATE TABLE teams (
    id         INTEGER PRIMARY KEY,
    name       TEXT   NOT NULL UNIQUE,
    created_at BIGINT NOT NULL
);

CREATE TABLE service_users (
    id         TEXT    PRIMARY KEY,
    team_id    INTEGER NOT NULL REFERENCES teams(id),
    name       TEXT    NOT NULL,
    status     TEXT    NOT NULL,
    roles      TEXT    NOT NULL, -- JSON array
    folders    TEXT    NOT NULL, -- JSON array of folder prefixes; empty = all
    created_at BIGINT  NOT NULL,
    deleted_at BIGINT,
    UNIQUE (team_id, name)
);

CREATE TABLE api_keys (
    id              TEXT   PRIMARY KEY,
    service_user_id TEXT   NOT NULL REFERENCES service_users(id),
    secret_hash     BLOB   NOT NULL, -- keyed hash; the secret itself is never stored
    issued_at       BIGINT NOT NULL,
    expires_at      BIGINT,
    last_used       BIGINT
);
CREATE INDEX api_keys_user ON api_keys(service_user_id);

CREATE TABLE tokens (
    id         TEXT   PRIMARY KEY,
    key_id     TEXT   NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
    hash       BLOB   NOT NULL, -- keyed hash of the whole bearer token
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX tokens_key ON tokens(key_id);

-- Records: type, title and folder in clear for listing; every field value is inside data,
-- sealed under the record's own data key (data_key, wrapped by the master key).
CREATE TABLE records (
    uid        TEXT    PRIMARY KEY,
    team_id    INTEGER NOT NULL REFERENCES teams(id),
    type       TEXT    NOT NULL,
    title      TEXT    NOT NULL,
    folder     TEXT    NOT NULL,
    revision   BIGINT  NOT NULL,
    data_key   BLOB    NOT NULL,
    data       BLOB    NOT NULL,
    created_at BIGINT  NOT NULL,
    updated_at BIGINT  NOT NULL
);
CREATE INDEX records_team_title ON records(team_id, title);
CREATE INDEX records_team_folder ON records(team_id, folder);

-- Versions of a record's password; value sealed under the record's data key.
CREATE TABLE password_versions (
    record_uid TEXT   NOT NULL REFERENCES records(uid) ON DELETE CASCADE,
    version    BIGINT NOT NULL,
    state      TEXT   NOT NULL, -- current | previous | pending | failed
    value      BLOB   NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (record_uid, version)
);

-- +goose Down
DROP TABLE password_versions;
DROP TABLE records;
DROP TABLE tokens;
DROP TABLE api_keys;
DROP TABLE service_users;
DROP TABLE teams;
DROP TABLE keyring;
