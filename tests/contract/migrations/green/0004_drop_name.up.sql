-- cutover:phase contract
-- cutover:allow ban-drop-column
-- Release 2.0, contract: `name` goes. Safe only once no instance of 1.x (which reads it) is
-- live: the runner refuses it until then.
ALTER TABLE users DROP COLUMN name;
