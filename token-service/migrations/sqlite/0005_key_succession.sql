-- Which key a key succeeds ('' for a first key). Unique: of instances rotating at once (or
-- generating a first key at once), exactly one inserts its key.
ALTER TABLE signing_keys ADD COLUMN succeeds TEXT;
CREATE UNIQUE INDEX signing_keys_by_predecessor ON signing_keys (succeeds);
