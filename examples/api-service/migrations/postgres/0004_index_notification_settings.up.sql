-- v1.3.0, step 3: built concurrently, so writes to users continue during the build. The
-- runner applies it outside a transaction, and rebuilds it if a failed build left it INVALID.
CREATE INDEX CONCURRENTLY idx_users_notification_settings ON users USING GIN (notification_settings);
