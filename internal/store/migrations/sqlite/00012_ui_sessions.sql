-- +goose Up
-- Web UI sessions (internal/ui). The browser's cookie holds a random 32-byte id; only its
-- SHA-256 is stored. Each session stands for the bearer token minted when it signed in
-- (token_id), and is resolved through that token on every request, so deleting or expiring
-- the key, or disabling or deleting its user, ends the session at once on every node.
-- Deleting the token (the key's deletion cascades to it) deletes the session.
-- Times are unix nanoseconds. Rows are transient: storage copy does not copy them.
CREATE TABLE ui_sessions (
    id_hash    BLOB    PRIMARY KEY,
    token_id   TEXT    NOT NULL REFERENCES tokens(id) ON DELETE CASCADE,
    key_id     TEXT    NOT NULL,
    team_id    INTEGER NOT NULL REFERENCES teams(id),
    csrf_token TEXT    NOT NULL, -- sent in every form; useless without the cookie
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL
);
CREATE INDEX ui_sessions_token ON ui_sessions (token_id);
CREATE INDEX ui_sessions_expires ON ui_sessions (expires_at);

-- +goose Down
DROP TABLE ui_sessions;
