-- Imported once, when the mysql service starts on an empty data volume.
CREATE DATABASE IF NOT EXISTS forum CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;
USE forum;
-- Page views of the forum app (service/www/forum/index.php).
CREATE TABLE counter (
    name VARCHAR(64) NOT NULL PRIMARY KEY,
    hits BIGINT UNSIGNED NOT NULL DEFAULT 0
) ENGINE=InnoDB;
INSERT INTO counter (name, hits) VALUES ('page', 0);
CREATE TABLE posts (
    id      INT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY,
    author  VARCHAR(64)  NOT NULL,
    title   VARCHAR(200) NOT NULL,
    body    TEXT         NOT NULL,
    created TIMESTAMP    NOT NULL DEFAULT CURRENT_TIMESTAMP
) ENGINE=InnoDB;
INSERT INTO posts (author, title, body, created) VALUES
    ('admin', 'Welcome', 'The forum runs on bosun: MariaDB, php-fpm and nginx, one image.', '2026-11-01 10:00:00'),
    ('admin', 'Backups', 'Every night at 04:05 the scheduler asks mysql for a dump of this database.', '2026-11-02 10:00:00');
