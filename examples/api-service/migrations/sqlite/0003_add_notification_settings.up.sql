-- v1.3.0, step 2: notification settings as JSON text.
ALTER TABLE users ADD COLUMN notification_settings TEXT DEFAULT '{}';
