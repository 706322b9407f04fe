-- Reports of users, cards and messages, and how moderators resolved them.
-- `excerpt` is a copy of the reported text taken when the report was
-- made, so an edit or a delete afterwards cannot hide what was reported.
CREATE TABLE reports (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    kind            TEXT   NOT NULL CHECK (kind IN ('user', 'card', 'room_message', 'dm_message')),
    target_id       TEXT   NOT NULL,
    room_id         TEXT,
    conversation_id BIGINT REFERENCES conversations (id) ON DELETE SET NULL,
    reporter_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    reason          TEXT   NOT NULL,
    excerpt         TEXT   NOT NULL,
    status          TEXT   NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    created_at      BIGINT NOT NULL,
    resolved_by     BIGINT REFERENCES users (id) ON DELETE SET NULL,
    resolved_at     BIGINT,
    action          TEXT,
    note            TEXT
);
-- The queue pages open reports oldest first, resolved ones newest first.
CREATE INDEX reports_open ON reports (status, id);
CREATE INDEX reports_resolved ON reports (status, resolved_at, id);
-- The bound on open reports per reporter counts these.
CREATE INDEX reports_reporter ON reports (reporter_id, status);
