-- Revocation events for APIs (docs/revocation-events.md): one row per revocation, written in the
-- revocation's own transaction. `seq` is the stream position; AUTOINCREMENT never hands out a
-- position twice, even after the newest rows were swept.
CREATE TABLE security_events (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind             TEXT    NOT NULL,  -- token_jti, token_sha256, session, user_deleted, password_changed, client_deleted
    subject          TEXT    NOT NULL,  -- the jti, token digest (base64url), sid, user id or client id
    user_id          TEXT,              -- a session's user
    occurred_at      INTEGER NOT NULL,
    tokens_expire_by INTEGER NOT NULL   -- no token the event affects is valid after this
);
CREATE INDEX security_events_by_time ON security_events (occurred_at);

-- The stream's epoch, made once with the database: event ids name it, so that a receiver's
-- acknowledgement from another database is recognised as foreign.
CREATE TABLE event_stream (
    epoch TEXT NOT NULL
);
INSERT INTO event_stream (epoch) VALUES (lower(hex(randomblob(6))));
