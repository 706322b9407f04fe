ALTER TABLE users ADD COLUMN notifications_read_up_to BIGINT NOT NULL DEFAULT 0;

CREATE TABLE cards (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    owner_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title       TEXT   NOT NULL,
    body        TEXT   NOT NULL DEFAULT '',
    tags        TEXT   NOT NULL DEFAULT '[]',
    is_open     INTEGER NOT NULL DEFAULT 1,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX cards_owner ON cards (owner_id, id);

CREATE TABLE card_tags (
    card_id BIGINT NOT NULL REFERENCES cards (id) ON DELETE CASCADE,
    tag     TEXT   NOT NULL,
    PRIMARY KEY (card_id, tag)
);
CREATE INDEX card_tags_tag ON card_tags (tag, card_id);

CREATE TABLE interests (
    card_id    BIGINT NOT NULL REFERENCES cards (id) ON DELETE CASCADE,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (card_id, user_id)
);

CREATE TABLE conversations (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    -- The pair in id order, so one pair has one row.
    user_low       BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_high      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    last_seq       BIGINT NOT NULL DEFAULT 0,
    low_read_seq   BIGINT NOT NULL DEFAULT 0,
    high_read_seq  BIGINT NOT NULL DEFAULT 0,
    created_at     BIGINT NOT NULL,
    CHECK (user_low < user_high),
    UNIQUE (user_low, user_high)
);

CREATE TABLE matches (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    card_id         BIGINT NOT NULL REFERENCES cards (id) ON DELETE CASCADE,
    owner_id        BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    user_id         BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    conversation_id BIGINT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    created_at      BIGINT NOT NULL,
    UNIQUE (card_id, user_id)
);
CREATE INDEX matches_owner ON matches (owner_id, id);
CREATE INDEX matches_user ON matches (user_id, id);

CREATE TABLE events (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    host_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title       TEXT   NOT NULL,
    description TEXT   NOT NULL DEFAULT '',
    starts_at   BIGINT NOT NULL,
    ends_at     BIGINT,
    venue       TEXT,
    online_url  TEXT,
    capacity    INTEGER NOT NULL CHECK (capacity BETWEEN 1 AND 500),
    tags        TEXT   NOT NULL DEFAULT '[]',
    cancelled   INTEGER NOT NULL DEFAULT 0,
    created_at  BIGINT NOT NULL,
    updated_at  BIGINT NOT NULL
);
CREATE INDEX events_starts ON events (starts_at, id);

CREATE TABLE event_tags (
    event_id BIGINT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    tag      TEXT   NOT NULL,
    PRIMARY KEY (event_id, tag)
);

CREATE TABLE rsvps (
    event_id   BIGINT NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    status     TEXT   NOT NULL CHECK (status IN ('going', 'waitlisted')),
    -- Waitlist order: first come, first promoted.
    position   INTEGER NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (event_id, user_id)
);
CREATE INDEX rsvps_waitlist ON rsvps (event_id, status, position);

CREATE TABLE communities (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    name        TEXT   NOT NULL UNIQUE,
    description TEXT   NOT NULL DEFAULT '',
    tags        TEXT   NOT NULL DEFAULT '[]',
    owner_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at  BIGINT NOT NULL
);

CREATE TABLE community_tags (
    community_id BIGINT NOT NULL REFERENCES communities (id) ON DELETE CASCADE,
    tag          TEXT   NOT NULL,
    PRIMARY KEY (community_id, tag)
);

CREATE TABLE memberships (
    community_id BIGINT NOT NULL REFERENCES communities (id) ON DELETE CASCADE,
    user_id      BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (community_id, user_id)
);
CREATE INDEX memberships_user ON memberships (user_id);

CREATE TABLE notifications (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    kind       TEXT   NOT NULL,
    data       TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX notifications_user ON notifications (user_id, id);

CREATE TABLE audit_log (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    actor_id   BIGINT REFERENCES users (id) ON DELETE SET NULL,
    action     TEXT   NOT NULL,
    target     TEXT   NOT NULL,
    data       TEXT   NOT NULL DEFAULT '{}',
    created_at BIGINT NOT NULL
);
