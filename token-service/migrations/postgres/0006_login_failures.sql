-- Postgres twin of ../sqlite/ (same tables, columns and versions; BYTEA for BLOB, BIGINT for INTEGER).
-- Failed sign-ins per username and per client address (keys are SHA-256 digests, so a
-- password typed into the username field is not kept), counted by every instance together.
CREATE TABLE login_failures (
    key         BYTEA   PRIMARY KEY NOT NULL,
    failures    BIGINT  NOT NULL,
    window_ends BIGINT  NOT NULL
);
