-- An account deleted by its owner keeps its row, so that its messages
-- keep an author and its handle is never given to anyone else; the row is
-- emptied of everything personal and marked here.
ALTER TABLE users ADD COLUMN deleted_at BIGINT;

-- Handles of deleted accounts: the row's handle becomes `deleted-<id>`
-- (never a valid handle), and the old one is kept here so that nobody
-- registers it again and passes for the person who left.
CREATE TABLE retired_handles (
    handle     TEXT   PRIMARY KEY,
    retired_at BIGINT NOT NULL
);
