-- Release 1.0: users have a `name`.
CREATE TABLE users (
    id bigint PRIMARY KEY,
    name text NOT NULL
);
