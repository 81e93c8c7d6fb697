<?php
// The forum's front page: counts its views in MariaDB (forum.counter) and lists the posts.
// It reaches MariaDB through the unix socket in the shared /run, never over TCP.
declare(strict_types=1);

header('Content-Type: text/html; charset=utf-8');
header('Cache-Control: no-store');

try {
    $db = new mysqli('localhost', 'forum', getenv('FORUM_DB_PASSWORD') ?: 'forum', 'forum', 0,
        '/run/mysqld/mysqld.sock');
    $db->set_charset('utf8mb4');
    // LAST_INSERT_ID(expr) hands this connection its own new value: no race between views.
    $db->query("UPDATE counter SET hits = LAST_INSERT_ID(hits + 1) WHERE name = 'page'");
    $visits = (int) $db->insert_id;
    $posts = $db->query('SELECT author, title, body, created FROM posts ORDER BY created DESC LIMIT 20')
        ->fetch_all(MYSQLI_ASSOC);
} catch (mysqli_sql_exception $e) {
    http_response_code(503);
    error_log('forum: database: ' . $e->getMessage());
    echo "<!doctype html><title>forum</title><p>The database is not available. Try again shortly.</p>\n";
    exit;
}

function h(string $s): string { return htmlspecialchars($s, ENT_QUOTES, 'UTF-8'); }
?>
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>forum</title>
<link rel="stylesheet" href="/style.css">
</head>
<body>
<h1>forum</h1>
<p class="visits">visits: <span id="visits"><?= $visits ?></span></p>
<?php foreach ($posts as $p): ?>
<article>
  <h2><?= h($p['title']) ?></h2>
  <p class="meta"><?= h($p['author']) ?>, <?= h($p['created']) ?></p>
  <p><?= h($p['body']) ?></p>
</article>
<?php endforeach; ?>
</body>
</html>
