CREATE TABLE users (
    id            BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    handle        TEXT   NOT NULL UNIQUE,
    display_name  TEXT   NOT NULL,
    bio           TEXT   NOT NULL DEFAULT '',
    tags          TEXT   NOT NULL DEFAULT '[]',
    role          TEXT   NOT NULL DEFAULT 'member' CHECK (role IN ('member', 'moderator', 'admin')),
    password_hash TEXT,
    external_sub  TEXT   UNIQUE,
    created_at    BIGINT NOT NULL
);

CREATE TABLE sessions (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    user_id     BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    token_hash  TEXT   NOT NULL UNIQUE,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    revoked_at  BIGINT
);

CREATE INDEX sessions_user ON sessions (user_id);
