-- A client registered at run time may name its default scopes too (space-separated, kept as
-- granted); NULL = every allowed scope, as before.
ALTER TABLE clients ADD COLUMN default_scopes TEXT;
