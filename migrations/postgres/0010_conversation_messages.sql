CREATE TABLE conversation_messages (
    conversation_id BIGINT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    seq             BIGINT NOT NULL,
    message_id      TEXT    NOT NULL UNIQUE,
    sender_id       BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    text            TEXT    NOT NULL,
    client_msg_id   TEXT,
    sent_at         BIGINT NOT NULL,
    PRIMARY KEY (conversation_id, seq),
    UNIQUE (conversation_id, sender_id, client_msg_id)
);

ALTER TABLE users ADD COLUMN last_seen_at BIGINT;
