<?php
// The wiki's front page (served by the `wiki` service, started on demand): counts its views
// in MariaDB (wiki.counter) and shows the page `main`. Through the unix socket in /run.
declare(strict_types=1);

header('Content-Type: text/html; charset=utf-8');
header('Cache-Control: no-store');

try {
    $db = new mysqli('localhost', 'wiki', getenv('WIKI_DB_PASSWORD') ?: 'wiki', 'wiki', 0,
        '/run/mysqld/mysqld.sock');
    $db->set_charset('utf8mb4');
    // LAST_INSERT_ID(expr) hands this connection its own new value: no race between views.
    $db->query("UPDATE counter SET hits = LAST_INSERT_ID(hits + 1) WHERE name = 'page'");
    $visits = (int) $db->insert_id;
    $page = $db->query("SELECT body, updated FROM pages WHERE slug = 'main'")->fetch_assoc();
} catch (mysqli_sql_exception $e) {
    http_response_code(503);
    error_log('wiki: database: ' . $e->getMessage());
    echo "<!doctype html><title>wiki</title><p>The database is not available. Try again shortly.</p>\n";
    exit;
}

function h(string $s): string { return htmlspecialchars($s, ENT_QUOTES, 'UTF-8'); }
?>
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>wiki</title>
</head>
<body>
<h1>wiki</h1>
<p class="visits">visits: <span id="visits"><?= $visits ?></span></p>
<?php if ($page): ?>
<article>
  <p><?= h($page['body']) ?></p>
  <p class="meta">updated <?= h($page['updated']) ?></p>
</article>
<?php endif; ?>
</body>
</html>
