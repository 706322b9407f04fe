-- The conversation list is ordered by activity: the latest message, else
-- the match that opened (or reopened) the conversation. `last_activity` is
-- when, in ms; `activity_seq` is a counter over the whole database that
-- every message (and every match) moves the conversation to, so it orders
-- conversations without ties and pages by keyset stay exact while
-- messages arrive (see `Store::conversations_of`). SQLite has one writer
-- at a time, so the next value is MAX + 1, read through the unique index.
ALTER TABLE conversations ADD COLUMN last_activity BIGINT NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN activity_seq BIGINT NOT NULL DEFAULT 0;

UPDATE conversations SET last_activity = COALESCE(
    (SELECT MAX(m.sent_at) FROM conversation_messages m WHERE m.conversation_id = conversations.id),
    created_at);

UPDATE conversations SET activity_seq = ranked.n
FROM (SELECT id, ROW_NUMBER() OVER (ORDER BY last_activity, id) AS n FROM conversations) AS ranked
WHERE ranked.id = conversations.id;

CREATE UNIQUE INDEX conversations_activity ON conversations (activity_seq);
-- A user's open conversations by activity, from either side of the pair:
-- the list reads each side newest first and merges the two.
CREATE INDEX conversations_low_activity ON conversations (user_low, activity_seq)
    WHERE closed_reason IS NULL;
CREATE INDEX conversations_high_activity ON conversations (user_high, activity_seq)
    WHERE closed_reason IS NULL;

-- Community members in the order they joined.
CREATE INDEX memberships_joined ON memberships (community_id, created_at, user_id);
