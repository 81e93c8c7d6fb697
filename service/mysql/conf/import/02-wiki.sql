-- The wiki's database (service/www/wiki, served by the wiki service); a second database
-- also shows one backup file per database.
CREATE DATABASE IF NOT EXISTS wiki CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
USE wiki;
CREATE TABLE pages (
    slug    VARCHAR(100) NOT NULL PRIMARY KEY,
    body    MEDIUMTEXT   NOT NULL,
    updated TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP
) ENGINE=InnoDB;
INSERT INTO pages (slug, body, updated) VALUES ('main', 'Welcome to the wiki.', '2026-11-01 10:00:00');
-- Page views of the wiki app (service/www/wiki/index.php).
CREATE TABLE counter (
    name VARCHAR(64) NOT NULL PRIMARY KEY,
    hits BIGINT UNSIGNED NOT NULL DEFAULT 0
) ENGINE=InnoDB;
INSERT INTO counter (name, hits) VALUES ('page', 0);
