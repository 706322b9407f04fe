-- Community names are unique whatever their case. The key is lower-cased by
-- the server rather than by SQL LOWER, which folds only ASCII here, so both
-- backends agree on what clashes. The key also orders the directory.
ALTER TABLE communities ADD COLUMN name_key TEXT NOT NULL DEFAULT '';
UPDATE communities SET name_key = LOWER(name);
CREATE UNIQUE INDEX communities_by_name_key ON communities (name_key);

CREATE INDEX community_tags_tag ON community_tags (tag, community_id);
