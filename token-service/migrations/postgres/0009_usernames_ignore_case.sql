-- No two usernames differ by ASCII case alone (usernames are ASCII): enforced here, so that two
-- concurrent creations of `Jane` and `jane` cannot both succeed. The service refuses to start,
-- naming the pairs, if a database from before this version holds any (see store::sql).
CREATE UNIQUE INDEX users_by_lower_username ON users (lower(username));
