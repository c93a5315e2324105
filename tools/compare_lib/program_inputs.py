"""Inputs of the real programs, written once per tools/compare run (untimed).

Each function takes the work folder and the program's scale and writes
deterministic files there: every run of a program, under every allocator,
reads the same input, so its output can be checked against a reference run.
"""

import json
import os
import random
import shutil


def sqlite_load(work, rows):
    """load.sql: ROWS generated INSERT statements in transactions of 5000
    (each one parsed and prepared: malloc-heavy), then indexes, joins,
    aggregates, a window function, updates, deletes, a temporary table,
    VACUUM and an integrity check."""
    r = random.Random(7)
    words = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod".split()
    users = max(1, rows // 5)
    lines = ["PRAGMA synchronous = OFF;",  # no fsync: disk latency is not the allocator's
             "PRAGMA journal_mode = MEMORY;",
             "PRAGMA cache_size = -65536;",
             "CREATE TABLE users(id INTEGER PRIMARY KEY, name TEXT, city INTEGER, bio TEXT);",
             "CREATE TABLE orders(id INTEGER PRIMARY KEY, user INTEGER, amount INTEGER, note TEXT);"]
    for i in range(rows):
        if i % 5000 == 0:
            lines.append("BEGIN;")
        if i < users:
            bio = " ".join(r.choice(words) for _ in range(r.randrange(1, 12)))
            lines.append("INSERT INTO users VALUES(%d, 'user%d', %d, '%s');"
                         % (i, r.randrange(99991), r.randrange(97), bio))
        else:
            lines.append("INSERT INTO orders(user, amount, note) VALUES(%d, %d, 'n%d');"
                         % (r.randrange(users), r.randrange(10007), r.randrange(1000)))
        if i % 5000 == 4999 or i == rows - 1:
            lines.append("COMMIT;")
    lines.append(_SQLITE_QUERIES)
    _write(work, "load.sql", "\n".join(lines))


_SQLITE_QUERIES = r"""
.mode list
CREATE INDEX orders_user ON orders(user);
CREATE INDEX users_city ON users(city, name);
SELECT 'counts', (SELECT count(*) FROM users), (SELECT count(*) FROM orders);
SELECT 'by_city', city, count(*), sum(length(bio)) FROM users GROUP BY city ORDER BY city LIMIT 5;
SELECT 'top', u.name, count(o.id), sum(o.amount) FROM users u JOIN orders o ON o.user = u.id
  GROUP BY u.id ORDER BY sum(o.amount) DESC, u.id LIMIT 5;
SELECT 'rank', id, amount, r FROM (SELECT id, amount,
  rank() OVER (PARTITION BY user ORDER BY amount DESC) r FROM orders WHERE user < 50)
  WHERE r <= 2 ORDER BY id LIMIT 10;
SELECT 'concat', user, length(group_concat(note, ',')) FROM orders GROUP BY user
  ORDER BY 3 DESC, 2 LIMIT 5;
BEGIN;
UPDATE users SET bio = bio || printf('%.*c', city * 10, 'z') WHERE city % 3 = 0;
DELETE FROM orders WHERE amount % 5 = 0;
INSERT INTO orders(user, amount, note) SELECT user, amount + 1, note || 'b' FROM orders
  WHERE amount % 7 = 0;
COMMIT;
SELECT 'after', count(*), sum(amount), total(length(note)) FROM orders;
CREATE TEMP TABLE t AS SELECT user, sum(amount) s FROM orders GROUP BY user;
SELECT 'temp', count(*), sum(s), min(s), max(s) FROM t;
DROP INDEX orders_user;
VACUUM;
PRAGMA integrity_check;
SELECT 'distinct', count(DISTINCT note), count(DISTINCT amount) FROM orders;
"""


def perl_log(work, lines):
    """access.log: LINES web-server-like lines for scripts/logs.pl."""
    r = random.Random(42)
    verbs = ["GET", "POST", "PUT", "DELETE", "PATCH"]
    out = []
    for i in range(lines):
        path = "/".join(["api", "v%d" % r.randrange(3), "item",
                         "x" * r.randrange(40)][:2 + r.randrange(3)])
        query = "".join(chr(97 + r.randrange(26)) for _ in range(1 + r.randrange(12)))
        out.append("u%05d %s /%s?id=%d&q=%s %d %.3f" % (
            r.randrange(20000), r.choice(verbs), path, i, query, r.randrange(600),
            r.random() * 5))
    _write(work, "access.log", "\n".join(out))


def cxx_sources(work, units):
    """src/unitK.cc (K < UNITS), src/main.cc and a Makefile that builds
    them into the current folder. -frandom-seed makes every object file
    identical from run to run, so they can be checked."""
    src = os.path.join(work, "src")
    shutil.rmtree(src, ignore_errors=True)
    os.makedirs(src)
    for k in range(units):
        _write(src, "unit%d.cc" % k, _CXX_UNIT.replace("@K@", str(k))
               .replace("@DEPTH@", str(40 + k)))
    _write(src, "main.cc", "#include <cstdint>\n#include <cstdio>\n"
           + "".join("std::uint64_t Unit%d(int words);\n" % k for k in range(units))
           + "int main() {\n"
           + "".join('  std::printf("unit%d %%llx\\n", static_cast<unsigned long long>'
                     '(Unit%d(20000)));\n' % (k, k) for k in range(units))
           + "  return 0;\n}\n")
    objects = " ".join("unit%d.o" % k for k in range(units)) + " main.o"
    _write(work, "Makefile", _MAKEFILE.format(src=src, objects=objects,
                                              cxx=shutil.which("g++") or "g++"))


_MAKEFILE = """\
CXX = {cxx}
CXXFLAGS = -std=c++17 -O2
VPATH = {src}

prog: {objects}
\t$(CXX) -o $@ $^

%.o: %.cc
\t$(CXX) $(CXXFLAGS) -frandom-seed=$@ -c $< -o $@
"""

_CXX_UNIT = r"""// Generated: templates and standard containers, to give the compiler work.
#include <algorithm>
#include <cstdint>
#include <map>
#include <numeric>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

namespace unit@K@ {
template <typename K, typename V>
struct Index {
  std::unordered_map<K, std::set<V>> buckets;
  void Add(const K& k, V v) { buckets[k].insert(v); }
  std::map<K, std::vector<V>> Sorted() const {
    std::map<K, std::vector<V>> out;
    for (const auto& [k, s] : buckets) out[k].assign(s.begin(), s.end());
    return out;
  }
};

template <int N>
std::uint64_t Mix(std::uint64_t x) {
  if constexpr (N == 0) {
    return x;
  } else {
    return Mix<N - 1>(x * 6364136223846793005ull + @K@ + N);
  }
}
}  // namespace unit@K@

std::uint64_t Unit@K@(int words) {
  unit@K@::Index<std::string, int> index;
  std::uint32_t x = @K@ + 1;
  for (int i = 0; i < words; ++i) {
    x = x * 1664525u + 1013904223u;
    index.Add(std::string(1 + x % 7, static_cast<char>('a' + (x >> 9) % 26)) +
                  std::to_string(x % 89), i);
  }
  std::ostringstream text;
  std::uint64_t h = unit@K@::Mix<@DEPTH@>(@K@);
  for (const auto& [word, ids] : index.Sorted()) {
    text << word << ':' << ids.size() << ';';
    h ^= std::accumulate(ids.begin(), ids.end(), std::uint64_t{0}) + unit@K@::Mix<8>(h);
  }
  const std::string s = text.str();
  return h ^ static_cast<std::uint64_t>(std::count(s.begin(), s.end(), ';'));
}
"""


def redis_session(work, items):
    """session.json: the checked commands sent to redis-server after the
    benchmark: strings of many sizes, APPEND growth, a list, a hash, sets
    and a sorted set of ITEMS elements each, read back only in orders
    Redis defines (no HGETALL/SMEMBERS, whose order depends on a per-start
    hash seed), then deleted."""
    pattern = "".join(chr(33 + (i * 7919) % 94) for i in range(70000))
    c = [["FLUSHDB"]]
    for size in [0, 1, 7, 8, 9, 15, 16, 17, 63, 64, 65, 255, 256, 257, 1023, 1024, 1025,
                 4095, 4097, 16385, 65537]:
        c += [["SET", "k%d" % size, pattern[:size]], ["GET", "k%d" % size],
              ["STRLEN", "k%d" % size]]
    c += [["APPEND", "grow", "chunk-%d" % i] for i in range(items)]
    c += [["STRLEN", "grow"], ["GETRANGE", "grow", "0", "60"]]
    c += [["RPUSH", "list", "v%d-%s" % (i, "0" * (i % 300))] for i in range(items)]
    c += [["LLEN", "list"], ["LRANGE", "list", "0", "9"], ["LINDEX", "list", str(items // 2)],
          ["LPOP", "list", str(items // 4)], ["LLEN", "list"]]
    c += [["HSET", "hash", "f%d" % i, str(i) * (i % 50 + 1)] for i in range(items)]
    c += [["HLEN", "hash"], ["HGET", "hash", "f77"], ["HSTRLEN", "hash", "f%d" % (items - 1)]]
    for i in range(items):
        c.append(["SADD", "s1", "m%d" % i])
        if i % 3 == 0:
            c.append(["SADD", "s2", "m%d" % i])
    c += [["SCARD", "s1"], ["SINTERCARD", "2", "s1", "s2"], ["SISMEMBER", "s2", "m9"],
          ["SISMEMBER", "s2", "m10"]]
    c += [["ZADD", "z", str((i * 7919) % 10007), "member%d" % i] for i in range(items)]
    c += [["ZCARD", "z"], ["ZRANGE", "z", "0", "9", "WITHSCORES"], ["ZCOUNT", "z", "100", "2000"],
          ["ZRANGEBYSCORE", "z", "5000", "5010"]]
    c += [["DBSIZE"], ["DEL", "list", "hash"], ["UNLINK", "s1", "s2", "z"], ["DBSIZE"],
          ["FLUSHDB"], ["DBSIZE"]]
    _write(work, "session.json", json.dumps(c))


def _write(folder, name, text):
    with open(os.path.join(folder, name), "w") as f:
        f.write(text if text.endswith("\n") else text + "\n")
