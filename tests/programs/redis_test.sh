#!/usr/bin/env bash
# redis-server (io threads, lazy frees on its background thread) with the
# library preloaded, on 127.0.0.1 and a free port, without persistence.
# redis-benchmark (preloaded too) drives it, then plain redis-cli runs a
# session of checked commands: SET/GET round trips of values of 0 B..3 MB,
# APPEND growth, lists, hashes, sets, sorted sets, DBSIZE, FLUSHALL ASYNC.
# The session's transcript must equal that of a plain server, and the
# preloaded server must exit 0 on SHUTDOWN. The server is killed on any
# failure (trap).
#
# Debian's redis-server calls mallctl/nallocx from libjemalloc for its
# statistics; malloc, free, realloc and malloc_usable_size come from us.
source "$(dirname "$0")/../preload/preload_lib.sh"

SERVER_PID=""
stop_server() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -9 "$SERVER_PID" 2>/dev/null || true
    wait "$SERVER_PID" 2>/dev/null || true
  fi
  SERVER_PID=""
}
trap 'stop_server; rm -rf "$WORK"' EXIT

cli() { redis-cli -h 127.0.0.1 -p "$PORT" "$@"; }

free_port() {
  "$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# start_server TAG PREFIX...: runs PREFIX redis-server on a free port (sets
# PORT and SERVER_PID) and waits until it answers PING. Another process may
# take the port between free_port and bind: then, and only then, retry.
start_server() {
  local tag="$1" attempt i
  shift
  for attempt in 1 2 3; do
    PORT="$(free_port)"
    : >"$WORK/$tag.log"
    "$@" redis-server --bind 127.0.0.1 --port "$PORT" --save '' --appendonly no \
      --dir "$WORK" --daemonize no --logfile "$WORK/$tag.log" --io-threads 2 \
      --lazyfree-lazy-user-del yes --lazyfree-lazy-user-flush yes \
      2>"$WORK/$tag.err" &
    SERVER_PID=$!
    for i in $(seq 100); do
      if cli PING 2>/dev/null | grep -q PONG; then return 0; fi
      kill -0 "$SERVER_PID" 2>/dev/null || break
      sleep 0.1
    done
    stop_server
    grep -q "Address already in use" "$WORK/$tag.log" || break
  done
  tail -n 20 "$WORK/$tag.log" "$WORK/$tag.err" >&2
  fail "redis-server ($tag) did not start"
}

# stop_cleanly TAG: SHUTDOWN NOSAVE, and the server must exit with status 0.
stop_cleanly() {
  local tag="$1" i rc=0
  cli SHUTDOWN NOSAVE >/dev/null 2>&1 || true
  for i in $(seq 100); do
    kill -0 "$SERVER_PID" 2>/dev/null || break
    sleep 0.1
  done
  kill -0 "$SERVER_PID" 2>/dev/null && fail "redis-server ($tag) ignored SHUTDOWN"
  wait "$SERVER_PID" || rc=$?
  SERVER_PID=""
  if [ "$rc" -ne 0 ]; then
    tail -n 20 "$WORK/$tag.log" "$WORK/$tag.err" >&2
    fail "redis-server ($tag) exited with $rc"
  fi
}

# Binary values (NUL and newline bytes included), sliced to every size.
"$PYTHON" -c 'import random, sys; sys.stdout.buffer.write(random.Random(5).randbytes(3 << 20))' \
  >"$WORK/pattern"
SIZES="0 1 2 7 8 9 15 16 17 31 32 33 63 64 65 127 128 129 255 256 257 511 512 513
  1000 1023 1024 1025 2047 2048 4095 4096 4097 8191 8192 8193 16383 16385 32768
  65535 65537 131072 262145 524288 1048577 2097152 3145728"

# session: the checked commands; prints a transcript that depends only on
# what the server stores (hash and set orders are sorted first).
session() {
  local n
  cli FLUSHALL
  for n in $SIZES; do
    head -c "$n" "$WORK/pattern" >"$WORK/value"
    cli -x SET "k$n" <"$WORK/value" >/dev/null
    cli GET "k$n" >"$WORK/got"  # raw output: the value and a newline
    [ "$(stat -c %s "$WORK/got")" -eq $((n + 1)) ] || fail "GET k$n: wrong length"
    head -c "$n" "$WORK/got" | cmp -s - "$WORK/value" || fail "GET k$n: wrong bytes"
    echo "value $n $(cli STRLEN "k$n")"
  done
  for n in $(seq 2000); do echo "APPEND grow chunk-$n"; done | cli >/dev/null
  echo "append $(cli STRLEN grow) $(cli GETRANGE grow 0 20)"
  awk 'BEGIN { for (i = 0; i < 20000; i++) print "RPUSH list v" i "-" sprintf("%0*d", i % 300, 0) }' |
    cli >/dev/null
  echo "list $(cli LLEN list) $(cli LRANGE list 0 -1 | wc -l) $(cli LRANGE list 0 -1 | sha256sum)"
  echo "lpop $(cli LPOP list 5000 | wc -l) $(cli LLEN list) $(cli LINDEX list 0 | head -c 12)"
  awk 'BEGIN { for (i = 0; i < 10000; i++) print "HSET hash f" i " " sprintf("%0*d", i % 500, i) }' |
    cli >/dev/null
  echo "hash $(cli HLEN hash) $(cli HGET hash f777 | wc -c) $(cli HGETALL hash | paste - - | sort | sha256sum)"
  awk 'BEGIN { for (i = 0; i < 10000; i++) { print "SADD s1 m" i; if (i % 3 == 0) print "SADD s2 m" i } }' |
    cli >/dev/null
  echo "set $(cli SCARD s1) $(cli SINTERCARD 2 s1 s2) $(cli SMEMBERS s2 | sort | sha256sum)"
  awk 'BEGIN { for (i = 0; i < 10000; i++) print "ZADD z " (i * 7919) % 10007 " member" i }' |
    cli >/dev/null
  echo "zset $(cli ZCARD z) $(cli ZRANGEBYSCORE z 100 2000 | wc -l) $(cli ZRANGE z 0 4 WITHSCORES | tr '\n' ' ')"
  awk 'BEGIN { for (i = 0; i < 5000; i++) print "SET key" i " " sprintf("%0*d", i % 1000, i) }' |
    cli >/dev/null
  echo "dbsize $(cli DBSIZE)"
  echo "del $(cli DEL list hash) $(cli UNLINK s1 s2 z) $(cli DBSIZE)"
  cli FLUSHALL ASYNC
  echo "flushed $(cli DBSIZE)"
}

start_server plain
session >"$WORK/expected.txt"
stop_cleanly plain

start_server preloaded env LD_PRELOAD="$PRELOAD_LIB" RSEQMALLOC_VERBOSE=1 $PRELOAD_EXTRA_ENV
for opts in "-r 10000 -d 200" "-r 10000 -d 4000 -P 16 -c 20"; do
  # shellcheck disable=SC2086  # opts is a list of options
  preloaded "$WORK/bench_err.txt" redis-benchmark -h 127.0.0.1 -p "$PORT" -n 20000 -q \
    -t set,get,lpush,lpop,incr --threads 2 $opts >"$WORK/bench.txt"
  expect_loaded "$WORK/bench_err.txt"
  tr '\r' '\n' <"$WORK/bench.txt" | grep -E '^[A-Z_]+: .*requests per second' | sort -u >"$WORK/rps.txt"
  [ "$(cut -d: -f1 "$WORK/rps.txt" | sort -u | wc -l)" -eq 5 ] ||
    { cat "$WORK/bench.txt" >&2; fail "redis-benchmark $opts did not report 5 tests"; }
  echo "redis-benchmark $opts:"
  cat "$WORK/rps.txt"
done
session >"$WORK/actual.txt"
stop_cleanly preloaded
expect_loaded "$WORK/preloaded.err"
same_output "$WORK/expected.txt" "$WORK/actual.txt" "redis session"
# One key per size, grow, list, hash, s1, s2, z and the 5000 SETs.
keys=$(($(echo $SIZES | wc -w) + 6 + 5000))
grep -q "^dbsize $keys\$" "$WORK/actual.txt" ||
  fail "DBSIZE: want $keys, got $(grep dbsize "$WORK/actual.txt")"
grep -q '^list 20000 20000 ' "$WORK/actual.txt" || fail "LLEN/LRANGE not 20000"
grep -q '^lpop 5000 15000 ' "$WORK/actual.txt" || fail "LPOP count wrong"
grep -q '^flushed 0$' "$WORK/actual.txt" || fail "FLUSHALL left keys"
grep -v "^value " "$WORK/actual.txt"
echo PASS
