-- Postgres twin of ../sqlite/0014_private_key_jwt.sql.
-- private_key_jwt (RFC 7523 §2.2): a client that authenticates with a signed JWT registers its
-- public keys, as a JWK Set (JSON text) or the URL it is published at; it has no secret.
ALTER TABLE clients ADD COLUMN jwks     TEXT;
ALTER TABLE clients ADD COLUMN jwks_uri TEXT;

-- An API may introspect with an assertion too: its secret becomes optional.
ALTER TABLE apis ALTER COLUMN secret_hash DROP NOT NULL;
ALTER TABLE apis ADD COLUMN jwks     TEXT;
ALTER TABLE apis ADD COLUMN jwks_uri TEXT;
