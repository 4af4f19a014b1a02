-- Postgres twin of ../sqlite/ (same tables, columns and versions; BYTEA for BLOB, BIGINT for INTEGER).
-- Clients added at run time (`token-service client add`); configured clients live in the config.
CREATE TABLE clients (
    id               TEXT    PRIMARY KEY NOT NULL,
    secret_hash      TEXT,
    grants           TEXT    NOT NULL,  -- JSON array of grant type names
    scopes           TEXT    NOT NULL,  -- space-separated
    token_format     TEXT    NOT NULL,
    access_token_ttl BIGINT,           -- seconds; NULL = service default
    audience         TEXT    NOT NULL,  -- JSON array
    redirect_uris    TEXT    NOT NULL,  -- JSON array
    created_at       BIGINT NOT NULL
);

-- Resource servers registered at run time (`token-service api add`); configured ones live in
-- the config.
CREATE TABLE apis (
    id          TEXT    PRIMARY KEY NOT NULL,
    secret_hash TEXT    NOT NULL,
    scopes      TEXT    NOT NULL,  -- space-separated
    created_at  BIGINT NOT NULL
);

-- Opaque access tokens, known only by the SHA-256 digest of their value.
CREATE TABLE access_tokens (
    digest     BYTEA  PRIMARY KEY NOT NULL,
    jti        TEXT    NOT NULL,
    client_id  TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    scope      TEXT    NOT NULL,
    audience   TEXT    NOT NULL,  -- JSON array
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT 
);
CREATE INDEX access_tokens_by_expiry ON access_tokens (expires_at);

-- Revoked JWT access tokens, kept until they would have expired anyway.
CREATE TABLE revoked_jwts (
    jti        TEXT    PRIMARY KEY NOT NULL,
    client_id  TEXT    NOT NULL,
    expires_at BIGINT NOT NULL,
    revoked_at BIGINT NOT NULL
);
CREATE INDEX revoked_jwts_by_expiry ON revoked_jwts (expires_at);

-- Signing keys (PKCS#8); published from creation, signing from activates_at.
CREATE TABLE signing_keys (
    kid          TEXT    PRIMARY KEY NOT NULL,
    algorithm    TEXT    NOT NULL,
    private_key  BYTEA  NOT NULL,
    created_at   BIGINT NOT NULL,
    activates_at BIGINT NOT NULL
);
