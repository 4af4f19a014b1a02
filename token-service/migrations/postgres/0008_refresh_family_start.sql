-- When a refresh token family started (its code was redeemed), for the family's absolute
-- lifetime (defaults.refresh_token_absolute_ttl): every token rotated from one code carries it.
-- Families from before this version count from their sign-in.
ALTER TABLE refresh_tokens ADD COLUMN family_started_at BIGINT NOT NULL DEFAULT 0;
UPDATE refresh_tokens SET family_started_at = auth_time;
-- A password change ends a user's sessions and revokes their families.
CREATE INDEX refresh_tokens_by_user ON refresh_tokens (user_id);
CREATE INDEX sessions_by_user ON sessions (user_id);
