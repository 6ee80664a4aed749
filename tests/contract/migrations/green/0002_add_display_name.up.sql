-- Release 1.1, expand: the new column, nullable, so 1.0 keeps writing and reading `name`.
ALTER TABLE users ADD COLUMN display_name text;
