-- +goose Up
-- One-time sign-in links for the web UI (GET /ui/signin/once?token=…), which `keyturn
-- sandbox` prints: a random 32-byte token, of which only the SHA-256 is stored, that opens
-- one session for one API key (key_id) and is deleted as it is used. A link lives minutes
-- (expires_at); expired links are dropped when the next one is created. Deleting the key
-- deletes its links. Times are unix nanoseconds. Rows are transient: storage copy does not
-- copy them.
CREATE TABLE ui_signin_links (
    token_hash BYTEA   PRIMARY KEY,
    key_id     TEXT    NOT NULL REFERENCES api_keys(id) ON DELETE CASCADE,
    team_id    BIGINT  NOT NULL REFERENCES teams(id),
    created_at BIGINT  NOT NULL,
    expires_at BIGINT  NOT NULL
);
CREATE INDEX ui_signin_links_expires ON ui_signin_links (expires_at);

-- +goose Down
DROP TABLE ui_signin_links;
