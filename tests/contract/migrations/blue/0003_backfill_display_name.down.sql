-- The values go with the column when 0002 is reverted.
SELECT 1;
