# shellcheck shell=bash
# Sourced during the first start, after the *.sql files before it: one database user per
# site, with the password from the environment (docker-compose.yaml passes it to mysql and php).
# init_sql runs SQL from stdin against the setup server; sql_quote escapes a string literal.
init_sql <<SQL
CREATE USER IF NOT EXISTS 'forum'@'localhost' IDENTIFIED BY '$(sql_quote "${FORUM_DB_PASSWORD:-forum}")';
GRANT SELECT, INSERT, UPDATE, DELETE ON forum.* TO 'forum'@'localhost';
CREATE USER IF NOT EXISTS 'wiki'@'localhost' IDENTIFIED BY '$(sql_quote "${WIKI_DB_PASSWORD:-wiki}")';
GRANT SELECT, INSERT, UPDATE, DELETE ON wiki.* TO 'wiki'@'localhost';
SQL
