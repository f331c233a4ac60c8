-- +goose Up
-- The failed-exchange limiter's windows (internal/auth/limiter.go), shared by every node on
-- PostgreSQL so that the limits hold per cluster; SQLite's single server keeps them in memory.
-- Times are unix nanoseconds. Rows are transient: storage copy does not copy them.

-- Failed token exchanges of one key id from one address (an IPv4 address, an IPv6 /64, or ''
-- for one that does not parse) in the window that started at window_start.
CREATE TABLE exchange_pair_failures (
    key_id       TEXT    NOT NULL,
    addr         TEXT    NOT NULL,
    window_start BIGINT  NOT NULL,
    failures     INTEGER NOT NULL,
    PRIMARY KEY (key_id, addr)
);
CREATE INDEX exchange_pair_failures_window ON exchange_pair_failures (window_start);

-- Failed token exchanges of one key id from every address.
CREATE TABLE exchange_key_failures (
    key_id       TEXT    PRIMARY KEY,
    window_start BIGINT  NOT NULL,
    failures     INTEGER NOT NULL
);
CREATE INDEX exchange_key_failures_window ON exchange_key_failures (window_start);

-- When an address last got a token for a key id.
CREATE TABLE exchange_good_addresses (
    key_id       TEXT    NOT NULL,
    addr         TEXT    NOT NULL,
    succeeded_at BIGINT  NOT NULL,
    PRIMARY KEY (key_id, addr)
);
CREATE INDEX exchange_good_addresses_at ON exchange_good_addresses (succeeded_at);

-- +goose Down
DROP TABLE exchange_good_addresses;
DROP TABLE exchange_key_failures;
DROP TABLE exchange_pair_failures;
