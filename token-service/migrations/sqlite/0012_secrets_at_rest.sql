-- Secrets at rest: the id of the operator key that encrypted a signing key or a shared secret;
-- NULL = stored in clear (no key configured, or stored before keys were).
ALTER TABLE signing_keys ADD COLUMN sealed_by TEXT;
ALTER TABLE server_secrets ADD COLUMN sealed_by TEXT;
