-- cutover:phase backfill
-- cutover:backfill table=users key=id batch=1000 pause=100ms
-- v1.3.0, step 4: fill notification settings in batches of 1,000 ids (SQLite has no enum
-- types: the brief's status enum has no counterpart here).
UPDATE users
SET notification_settings = '{"email": true, "sms": false, "push": true}'
WHERE id > $1 AND id <= $2 AND (notification_settings IS NULL OR notification_settings = '{}');
