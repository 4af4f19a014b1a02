-- Claim sources: where a claim scope's claims are read — `attributes` (the user's stored
-- attributes) or the name of a configured `[[claim_sources]]` entry.
ALTER TABLE scopes ADD COLUMN source TEXT NOT NULL DEFAULT 'attributes';
