-- The migration the documentation's examples embed.
CREATE TABLE notes (id integer PRIMARY KEY, body text NOT NULL);
