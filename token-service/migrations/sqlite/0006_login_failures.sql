-- Failed sign-ins per username and per client address (keys are SHA-256 digests, so a
-- password typed into the username field is not kept), counted by every instance together.
CREATE TABLE login_failures (
    key         BLOB    PRIMARY KEY NOT NULL,
    failures    INTEGER NOT NULL,
    window_ends INTEGER NOT NULL
) WITHOUT ROWID;
