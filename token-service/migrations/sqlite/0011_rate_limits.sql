-- A client's or an API's own request rate (`100/s`, `600/min`, `10000/h`); NULL = the
-- service's default.
ALTER TABLE clients ADD COLUMN rate_limit TEXT;
ALTER TABLE apis ADD COLUMN rate_limit TEXT;
