-- +goose Up
-- Rotation settings change by read, modify, write: the revision lets a writer refuse to
-- overwrite a change it has not seen (409), as records do.
ALTER TABLE rotation_settings ADD COLUMN revision BIGINT NOT NULL DEFAULT 1;

-- +goose Down
ALTER TABLE rotation_settings DROP COLUMN revision;
