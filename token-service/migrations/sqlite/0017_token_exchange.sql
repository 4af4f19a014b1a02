-- Token exchange (RFC 8693). A client's `exchange_from`: the audiences of the tokens it may
-- exchange (JSON list). An access token's `act`: the actor chain it was exchanged for (JSON
-- object, NULL for a token not exchanged). Which grants a token belongs to is looked up by its
-- jti, so that an exchanged token joins the grants of the token it came from.
ALTER TABLE clients       ADD COLUMN exchange_from TEXT NOT NULL DEFAULT '[]';
ALTER TABLE access_tokens ADD COLUMN act TEXT;
CREATE INDEX grant_tokens_by_jti ON grant_tokens (jti);
