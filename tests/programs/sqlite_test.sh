#!/usr/bin/env bash
# sqlite3 (the shell, with its own page cache and statement objects all on
# malloc) on a scripted workload: 100k generated INSERT statements in
# transactions, indexes, joins, GROUP BY, a window function, updates and
# deletes, VACUUM and an integrity check, on a file database and then on an
# in-memory copy. Outputs must equal those of a plain run.
source "$(dirname "$0")/../preload/preload_lib.sh"

# 100k INSERTs, 10k per transaction: every statement is parsed and prepared.
# Generated once; both runs read the same file.
awk 'BEGIN {
  srand(12345)
  print "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, city INTEGER, bio TEXT);"
  print "CREATE TABLE orders(id INTEGER PRIMARY KEY, user INTEGER, amount INTEGER, note TEXT);"
  for (i = 0; i < 100000; i++) {
    if (i % 10000 == 0) print "BEGIN;"
    y = int(rand() * 2147483648)
    if (i < 20000)
      printf "INSERT INTO users VALUES(%d, '\''user%d'\'', %d, '\''%s'\'');\n", i, y % 99991, y % 97,
             substr("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod", 1, 1 + y % 60)
    else
      printf "INSERT INTO orders(user, amount, note) VALUES(%d, %d, '\''n%d'\'');\n", y % 20000, y % 10007, y % 1000
    if (i % 10000 == 9999) print "COMMIT;"
  }
}' >"$WORK/load.sql"

cat >"$WORK/queries.sql" <<'SQL'
.mode list
.headers off
PRAGMA cache_size = -65536;
CREATE INDEX IF NOT EXISTS orders_user ON orders(user);
CREATE INDEX IF NOT EXISTS users_city ON users(city, name);
SELECT 'counts', (SELECT count(*) FROM users), (SELECT count(*) FROM orders);
SELECT 'by_city', city, count(*), sum(length(bio)) FROM users GROUP BY city ORDER BY city LIMIT 10;
SELECT 'top', u.name, count(o.id), sum(o.amount) FROM users u JOIN orders o ON o.user = u.id
  GROUP BY u.id ORDER BY sum(o.amount) DESC, u.id LIMIT 10;
SELECT 'city_total', u.city, sum(o.amount), max(o.note) FROM orders o JOIN users u ON u.id = o.user
  GROUP BY u.city HAVING count(*) > 100 ORDER BY 2 DESC LIMIT 5;
SELECT 'rank', id, amount, r FROM (SELECT id, amount, rank() OVER (PARTITION BY user ORDER BY amount DESC) r
  FROM orders WHERE user < 50) WHERE r <= 2 ORDER BY id LIMIT 20;
SELECT 'groupconcat', user, length(group_concat(note, ',')) FROM orders GROUP BY user ORDER BY 3 DESC, 2 LIMIT 5;
BEGIN;
UPDATE users SET bio = bio || printf('%.*c', city * 10, 'z') WHERE city % 3 = 0;
DELETE FROM orders WHERE amount % 5 = 0;
INSERT INTO orders(user, amount, note) SELECT user, amount + 1, note || 'b' FROM orders WHERE amount % 7 = 0;
COMMIT;
SELECT 'after', count(*), sum(amount), total(length(note)) FROM orders;
SELECT 'bio', sum(length(bio)), max(length(bio)) FROM users;
CREATE TEMP TABLE IF NOT EXISTS t AS SELECT user, sum(amount) s FROM orders GROUP BY user;
SELECT 'temp', count(*), sum(s), min(s), max(s) FROM t;
DROP INDEX orders_user;
VACUUM;
PRAGMA integrity_check;
SELECT 'distinct', count(DISTINCT note), count(DISTINCT amount) FROM orders;
SELECT 'like', count(*) FROM users WHERE bio LIKE '%dolor%z%';
SQL

# run PREFIX...: the whole workload in $WORK/db.$$ (fresh), output on stdout.
run() {
  local db
  db="$(mktemp -u "$WORK/db.XXXXXX")"
  "$@" sqlite3 -bail "$db" <"$WORK/load.sql"
  "$@" sqlite3 -bail "$db" <"$WORK/queries.sql"
  # The same queries on an in-memory copy: one big malloc'd page cache.
  { echo ".restore $db"; cat "$WORK/queries.sql"; } | "$@" sqlite3 -bail :memory:
}

run >"$WORK/expected.txt"
preloaded "$WORK/err.txt" bash -c "$(declare -f run); WORK='$WORK'; run" >"$WORK/actual.txt"
expect_loaded "$WORK/err.txt"
same_output "$WORK/expected.txt" "$WORK/actual.txt" "sqlite3"
grep -q '^counts|20000|80000$' "$WORK/actual.txt" || fail "wrong row counts"
[ "$(grep -c '^ok$' "$WORK/actual.txt")" -eq 2 ] || fail "integrity_check did not say ok twice"
grep -E '^(counts|after|temp)' "$WORK/actual.txt"
echo PASS
