-- +goose Up
-- The process of the script a run started last: recorded (and fsynced) before the script may
-- run, so that whoever settles the run after a crash first kills what the crash left running.
CREATE TABLE script_processes (
    run_id     TEXT    PRIMARY KEY REFERENCES rotation_runs(id) ON DELETE CASCADE,
    pid        BIGINT  NOT NULL,
    start      BIGINT  NOT NULL, -- clock ticks since boot (/proc/PID/stat field 22)
    boot_id    TEXT    NOT NULL,
    updated_at BIGINT  NOT NULL
);

-- +goose Down
DROP TABLE script_processes;
