-- A second site's database, to show one backup file per database.
CREATE DATABASE IF NOT EXISTS wiki CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
USE wiki;
CREATE TABLE pages (
    slug    VARCHAR(100) NOT NULL PRIMARY KEY,
    body    MEDIUMTEXT   NOT NULL,
    updated TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP
) ENGINE=InnoDB;
INSERT INTO pages (slug, body, updated) VALUES ('main', 'Welcome to the wiki.', '2026-11-01 10:00:00');
