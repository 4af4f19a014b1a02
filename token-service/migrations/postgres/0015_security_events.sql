-- Postgres twin of ../sqlite/0015_security_events.sql.
-- Revocation events for APIs (docs/revocation-events.md): one row per revocation, written in the
-- revocation's own transaction. `seq` is the stream position; writers take an advisory lock
-- before inserting, so that positions are handed out in commit order.
CREATE TABLE security_events (
    seq              BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind             TEXT    NOT NULL,  -- token_jti, token_sha256, session, user_deleted, password_changed, client_deleted
    subject          TEXT    NOT NULL,  -- the jti, token digest (base64url), sid, user id or client id
    user_id          TEXT,              -- a session's user
    occurred_at      BIGINT  NOT NULL,
    tokens_expire_by BIGINT  NOT NULL   -- no token the event affects is valid after this
);
CREATE INDEX security_events_by_time ON security_events (occurred_at);

-- The stream's epoch, made once with the database: event ids name it, so that a receiver's
-- acknowledgement from another database is recognised as foreign.
CREATE TABLE event_stream (
    epoch TEXT NOT NULL
);
INSERT INTO event_stream (epoch) VALUES (substr(md5(random()::text || clock_timestamp()::text), 1, 12));
