-- The values go with the column when 0003 is reverted; nothing to undo here.
SELECT 1;
