-- A user's conversations are found by either side of the pair
-- (`user_low = ? OR user_high = ?`): presence loads partners on every
-- online/offline change, and the conversation list on every request. The
-- pair's unique key covers `user_low` only; without this the OR scans
-- the whole table.
CREATE INDEX conversations_high ON conversations (user_high);
