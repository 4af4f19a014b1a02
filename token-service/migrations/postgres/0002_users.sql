-- Postgres twin of ../sqlite/ (same tables, columns and versions; BYTEA for BLOB, BIGINT for INTEGER).
-- Users added at run time (`token-service user add`); configured users live in the config.
CREATE TABLE users (
    id            TEXT    PRIMARY KEY NOT NULL,  -- the `sub` of their tokens
    username      TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,              -- Argon2id PHC string
    attributes    TEXT    NOT NULL,              -- JSON object: standard and custom claims
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
