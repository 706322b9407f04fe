-- Authors edit and delete their messages after sending. A deleted
-- message keeps its row, seq and id so the conversation has no gap; only
-- its text goes.
ALTER TABLE conversation_messages ADD COLUMN edited_at BIGINT;
ALTER TABLE conversation_messages ADD COLUMN deleted BOOLEAN NOT NULL DEFAULT FALSE;
