-- Postgres twin of ../sqlite/ (same tables, columns and versions; BYTEA for BLOB, BIGINT for INTEGER).
-- Browser sessions, known by the SHA-256 of their cookie value; `sid` is their public name.
CREATE TABLE sessions (
    digest     BYTEA  PRIMARY KEY NOT NULL,
    sid        TEXT    NOT NULL UNIQUE,
    user_id    TEXT    NOT NULL,
    username   TEXT    NOT NULL,
    auth_time  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ended_at   BIGINT 
);

-- Authorization codes, by SHA-256; one redemption each.
CREATE TABLE authorization_codes (
    digest         BYTEA  PRIMARY KEY NOT NULL,
    client_id      TEXT    NOT NULL,
    user_id        TEXT    NOT NULL,
    username       TEXT    NOT NULL,
    sid            TEXT    NOT NULL,
    redirect_uri   TEXT    NOT NULL,
    scope          TEXT    NOT NULL,
    nonce          TEXT,
    code_challenge TEXT,
    auth_time      BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL,
    redeemed_at    BIGINT 
);

-- Which access tokens a grant (a code) produced: revoked together if the code is replayed.
CREATE TABLE grant_tokens (
    grant_id   TEXT    NOT NULL,
    jti        TEXT    NOT NULL,
    client_id  TEXT    NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (grant_id, jti)
);
CREATE INDEX access_tokens_by_jti ON access_tokens (jti);

-- Secrets shared by every instance (the CSRF key).
CREATE TABLE server_secrets (
    name       TEXT    PRIMARY KEY NOT NULL,
    value      BYTEA  NOT NULL,
    created_at BIGINT NOT NULL
);
