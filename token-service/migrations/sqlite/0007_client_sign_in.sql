-- What a stored client's sign-in needs besides its redirect URIs (issue 9): where logout may
-- return to, the claims a user must supply before a code is issued, and self sign-up.
ALTER TABLE clients ADD COLUMN post_logout_redirect_uris TEXT    NOT NULL DEFAULT '[]';  -- JSON array
ALTER TABLE clients ADD COLUMN required_claims           TEXT    NOT NULL DEFAULT '[]';  -- JSON array
ALTER TABLE clients ADD COLUMN self_signup               INTEGER NOT NULL DEFAULT 0;     -- 0 or 1
