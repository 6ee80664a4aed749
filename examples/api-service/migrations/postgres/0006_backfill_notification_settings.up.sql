-- cutover:phase backfill
-- cutover:backfill table=users key=id batch=1000 pause=100ms
-- v1.3.0, step 5: fill notification settings in short batches of 1,000 ids, each committed with
-- its checkpoint; a crash resumes after the last committed batch.
UPDATE users
SET notification_settings = '{"email": true, "sms": false, "push": true}'::jsonb
WHERE id > $1 AND id <= $2
  AND (notification_settings IS NULL OR notification_settings = '{}'::jsonb);
