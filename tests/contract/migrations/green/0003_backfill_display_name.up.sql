-- cutover:phase backfill
-- cutover:backfill table=users key=id batch=500 pause=0s
-- Release 1.1, backfill: copy `name` in short batches.
UPDATE users SET display_name = name WHERE id > $1 AND id <= $2 AND display_name IS NULL;
