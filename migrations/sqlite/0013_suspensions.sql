-- A suspension keeps a user out until `suspended_until` (unix ms) has
-- passed; NULL is not suspended. A suspension without an end stores
-- 253402300799999 (9999-12-31T23:59:59.999Z), so "is suspended" is one
-- comparison with the clock for both kinds and the listing still shows
-- a time. Lifting sets both columns back to NULL.
ALTER TABLE users ADD COLUMN suspended_until BIGINT NULL;
ALTER TABLE users ADD COLUMN suspension_reason TEXT NULL;
