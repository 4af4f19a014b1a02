-- Postgres twin of ../sqlite/0013_dpop.sql.
-- DPoP (RFC 9449): the key thumbprint (`cnf.jkt`) a token, code or refresh token is bound to
-- (NULL = unbound), and the per-client requirement (RFC 9449 §5.2 `dpop_bound_access_tokens`).
ALTER TABLE access_tokens        ADD COLUMN jkt TEXT;
ALTER TABLE refresh_tokens       ADD COLUMN jkt TEXT;
ALTER TABLE authorization_codes  ADD COLUMN dpop_jkt TEXT;
ALTER TABLE clients ADD COLUMN dpop_bound_access_tokens BIGINT NOT NULL DEFAULT 0;  -- 0 or 1

-- Identifiers that may be used once (DPoP proof and client assertion `jti`s), by SHA-256 of
-- their kind, issuer and value; kept until the proof or assertion could no longer be accepted.
CREATE TABLE spent_ids (
    key        BYTEA  PRIMARY KEY NOT NULL,
    expires_at BIGINT NOT NULL
);
CREATE INDEX spent_ids_by_expiry ON spent_ids (expires_at);
