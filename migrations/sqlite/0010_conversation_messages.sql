CREATE TABLE conversation_messages (
    conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             INTEGER NOT NULL,
    message_id      TEXT    NOT NULL UNIQUE,
    sender_id       INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    text            TEXT    NOT NULL,
    client_msg_id   TEXT,
    sent_at         INTEGER NOT NULL,
    PRIMARY KEY (conversation_id, seq),
    UNIQUE (conversation_id, sender_id, client_msg_id)
);

ALTER TABLE users ADD COLUMN last_seen_at INTEGER;
