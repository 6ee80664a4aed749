DROP TYPE user_status_new;
