-- Community names are unique whatever their case. The key is lower-cased by
-- the server rather than by SQL LOWER, whose folding differs between the
-- backends, so both agree on what clashes. The key also orders the
-- directory; collation "C" makes that code-point order, as on SQLite.
ALTER TABLE communities ADD COLUMN name_key TEXT COLLATE "C" NOT NULL DEFAULT '';
UPDATE communities SET name_key = LOWER(name);
ALTER TABLE communities ALTER COLUMN name_key DROP DEFAULT;
CREATE UNIQUE INDEX communities_by_name_key ON communities (name_key);

CREATE INDEX community_tags_tag ON community_tags (tag, community_id);
