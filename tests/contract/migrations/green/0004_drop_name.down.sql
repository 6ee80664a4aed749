ALTER TABLE users ADD COLUMN name text;
UPDATE users SET name = display_name;
