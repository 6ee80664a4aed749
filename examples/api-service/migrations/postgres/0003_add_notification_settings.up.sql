-- v1.3.0, step 2: a nullable column with a constant default is a metadata-only change on
-- PostgreSQL 11+ (no table rewrite); old code ignores it.
ALTER TABLE users ADD COLUMN notification_settings jsonb DEFAULT '{}';
