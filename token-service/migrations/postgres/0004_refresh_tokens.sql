-- Postgres twin of ../sqlite/ (same tables, columns and versions; BYTEA for BLOB, BIGINT for INTEGER).
-- Refresh tokens, by SHA-256. A family is every token rotated from one authorization code
-- (`family` is that code's grant id); reuse of a rotated token revokes the family.
CREATE TABLE refresh_tokens (
    digest     BYTEA  PRIMARY KEY NOT NULL,
    family     TEXT    NOT NULL,
    client_id  TEXT    NOT NULL,
    user_id    TEXT    NOT NULL,
    username   TEXT    NOT NULL,
    sid        TEXT    NOT NULL,
    scope      TEXT    NOT NULL,
    auth_time  BIGINT NOT NULL,
    issued_at  BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    rotated_at BIGINT,
    revoked_at BIGINT 
);
CREATE INDEX refresh_tokens_by_family ON refresh_tokens (family);
CREATE INDEX refresh_tokens_by_sid ON refresh_tokens (sid);
