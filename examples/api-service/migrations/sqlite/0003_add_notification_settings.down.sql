ALTER TABLE users DROP COLUMN notification_settings;
