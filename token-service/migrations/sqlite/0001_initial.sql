-- Clients added at run time (`token-service client add`); configured clients live in the config.
CREATE TABLE clients (
    id               TEXT    PRIMARY KEY NOT NULL,
    secret_hash      TEXT,
    grants           TEXT    NOT NULL,  -- JSON array of grant type names
    scopes           TEXT    NOT NULL,  -- space-separated
    token_format     TEXT    NOT NULL,
    access_token_ttl INTEGER,           -- seconds; NULL = service default
    audience         TEXT    NOT NULL,  -- JSON array
    redirect_uris    TEXT    NOT NULL,  -- JSON array
    created_at       INTEGER NOT NULL
);

-- Resource servers registered at run time (`token-service api add`); configured ones live in
-- the config.
CREATE TABLE apis (
    id          TEXT    PRIMARY KEY NOT NULL,
    secret_hash TEXT    NOT NULL,
    scopes      TEXT    NOT NULL,  -- space-separated
    created_at  INTEGER NOT NULL
);

-- Opaque access tokens, known only by the SHA-256 digest of their value.
CREATE TABLE access_tokens (
    digest     BLOB    PRIMARY KEY NOT NULL,
    jti        TEXT    NOT NULL,
    client_id  TEXT    NOT NULL,
    subject    TEXT    NOT NULL,
    scope      TEXT    NOT NULL,
    audience   TEXT    NOT NULL,  -- JSON array
    issued_at  INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER
) WITHOUT ROWID;
CREATE INDEX access_tokens_by_expiry ON access_tokens (expires_at);

-- Revoked JWT access tokens, kept until they would have expired anyway.
CREATE TABLE revoked_jwts (
    jti        TEXT    PRIMARY KEY NOT NULL,
    client_id  TEXT    NOT NULL,
    expires_at INTEGER NOT NULL,
    revoked_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX revoked_jwts_by_expiry ON revoked_jwts (expires_at);

-- Signing keys (PKCS#8); published from creation, signing from activates_at.
CREATE TABLE signing_keys (
    kid          TEXT    PRIMARY KEY NOT NULL,
    algorithm    TEXT    NOT NULL,
    private_key  BLOB    NOT NULL,
    created_at   INTEGER NOT NULL,
    activates_at INTEGER NOT NULL
);
