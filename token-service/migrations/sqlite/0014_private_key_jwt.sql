-- private_key_jwt (RFC 7523 §2.2): a client that authenticates with a signed JWT registers its
-- public keys, as a JWK Set (JSON text) or the URL it is published at; it has no secret.
ALTER TABLE clients ADD COLUMN jwks     TEXT;
ALTER TABLE clients ADD COLUMN jwks_uri TEXT;

-- An API may introspect with an assertion too: its secret becomes optional (SQLite cannot drop
-- a NOT NULL in place, so the table is rebuilt with every row).
CREATE TABLE apis_next (
    id          TEXT    PRIMARY KEY NOT NULL,
    secret_hash TEXT,
    scopes      TEXT    NOT NULL,  -- space-separated
    created_at  INTEGER NOT NULL,
    rate_limit  TEXT,
    jwks        TEXT,
    jwks_uri    TEXT
);
INSERT INTO apis_next (id, secret_hash, scopes, created_at, rate_limit)
    SELECT id, secret_hash, scopes, created_at, rate_limit FROM apis;
DROP TABLE apis;
ALTER TABLE apis_next RENAME TO apis;
