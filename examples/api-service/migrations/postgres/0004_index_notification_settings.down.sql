DROP INDEX CONCURRENTLY IF EXISTS idx_users_notification_settings;
