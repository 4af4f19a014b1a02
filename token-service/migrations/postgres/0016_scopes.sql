-- Postgres twin of ../sqlite/0016_scopes.sql.
-- Claim scopes defined at run time (`token-service scope add`, the admin API); those of the
-- configuration file are not stored. A deleted scope keeps its row with `deleted_at` set, so
-- that clients still listing it are no longer granted it; defining it again takes the row back.
CREATE TABLE scopes (
    name         TEXT   PRIMARY KEY NOT NULL,
    claims       TEXT   NOT NULL,  -- JSON object: claim name → user attribute
    access_token BIGINT NOT NULL,  -- 0 or 1: access tokens carry the claims too
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL,
    deleted_at   BIGINT
);
