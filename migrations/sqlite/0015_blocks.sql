-- A user blocking another: while either blocks the other, neither can
-- press interest on the other's cards, match, message or see presence.
CREATE TABLE blocks (
    blocker_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    blocked_id BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
);
CREATE INDEX blocks_blocked ON blocks (blocked_id, blocker_id);

-- Why a conversation takes no messages (`unmatched`, `account_deleted`),
-- or NULL while it is open. A block closes it too, but only while the
-- block lasts, so that is read from `blocks` rather than stored here.
ALTER TABLE conversations ADD COLUMN closed_reason TEXT;
