-- +goose Up
-- PostgreSQL twin of migrations/sqlite/00014: each state a run committed, with when.
CREATE TABLE rotation_run_states (
    run_id TEXT   NOT NULL REFERENCES rotation_runs(id) ON DELETE CASCADE,
    n      BIGINT NOT NULL, -- 1, 2, 3, … in the run's order
    state  TEXT   NOT NULL,
    at     BIGINT NOT NULL,
    PRIMARY KEY (run_id, n)
);

-- +goose Down
DROP TABLE rotation_run_states;
