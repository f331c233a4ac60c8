-- +goose Up
-- Each state a run committed, with when: the run's timeline. Written in the transaction that
-- commits the state, so the timeline never shows a state the run did not reach.
CREATE TABLE rotation_run_states (
    run_id TEXT    NOT NULL REFERENCES rotation_runs(id) ON DELETE CASCADE,
    n      INTEGER NOT NULL, -- 1, 2, 3, … in the run's order
    state  TEXT    NOT NULL,
    at     INTEGER NOT NULL,
    PRIMARY KEY (run_id, n)
);

-- +goose Down
DROP TABLE rotation_run_states;
