-- v1.3.0, step 3: SQLite has no GIN index; an expression index on the flag the API reads.
CREATE INDEX idx_users_notification_push ON users (json_extract(notification_settings, '$.push'));
