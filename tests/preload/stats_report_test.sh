#!/usr/bin/env bash
# The statistics report from a real program: at exit with RSEQMALLOC_STATS=1,
# and on demand from a running process with RSEQMALLOC_STATS_SIGNAL.
source "$(dirname "$0")/preload_lib.sh"

# At exit.
env LD_PRELOAD="$PRELOAD_LIB" RSEQMALLOC_STATS=1 "$PYTHON" -c 'print(sum(len(str(i)) for i in range(100000)))' \
  >"$WORK/out" 2>"$WORK/err" || fail "python exited $?"
[ "$(cat "$WORK/out")" = 488890 ] || fail "wrong output: $(cat "$WORK/out")"
grep -q '^rseqmalloc statistics: pid [0-9]*, mode ' "$WORK/err" || fail "no report at exit"
grep -q 'total mapped' "$WORK/err" || fail "report has no total"

# On demand: SIGUSR1 (10) to a running process prints the report, twice.
env LD_PRELOAD="$PRELOAD_LIB" RSEQMALLOC_STATS_SIGNAL=10 "$PYTHON" -c '
import sys, time
x = [bytes(100) for _ in range(10000)]
print("ready", flush=True)
time.sleep(30)
' >"$WORK/out2" 2>"$WORK/err2" &
pid=$!
for _ in $(seq 100); do grep -q ready "$WORK/out2" 2>/dev/null && break; sleep 0.1; done
grep -q ready "$WORK/out2" || fail "the program did not start"
kill -USR1 "$pid"
for _ in $(seq 50); do [ "$(grep -c '^rseqmalloc statistics' "$WORK/err2")" -ge 1 ] && break; sleep 0.1; done
kill -USR1 "$pid"
for _ in $(seq 50); do [ "$(grep -c '^rseqmalloc statistics' "$WORK/err2")" -ge 2 ] && break; sleep 0.1; done
kill "$pid" 2>/dev/null || true
wait "$pid" 2>/dev/null || true
n=$(grep -c '^rseqmalloc statistics' "$WORK/err2" || true)
[ "$n" -eq 2 ] || { cat "$WORK/err2"; fail "expected 2 reports on demand, got $n"; }

# To a file: coreutils close stderr before they exit, so a report at exit
# can only reach a file; "%p" names it after the process.
rm -f "$WORK"/report.*
env LD_PRELOAD="$PRELOAD_LIB" RSEQMALLOC_STATS=1 RSEQMALLOC_STATS_FILE="$WORK/report.%p" \
  ls / >"$WORK/out4" 2>"$WORK/err4" || fail "ls exited $?"
grep -qx bin "$WORK/out4" || fail "ls printed the wrong thing"
[ ! -s "$WORK/err4" ] || { cat "$WORK/err4"; fail "the report went to stderr"; }
reports=("$WORK"/report.*)
[ "${#reports[@]}" -eq 1 ] && [ -f "${reports[0]}" ] || fail "no report file: ${reports[*]}"
[[ "${reports[0]}" =~ /report\.[0-9]+$ ]] || fail "%p was not replaced: ${reports[0]}"
grep -q '^rseqmalloc statistics: pid [0-9]*, mode ' "${reports[0]}" || fail "no report in the file"
grep -q 'resident (RSS)' "${reports[0]}" || fail "no resident line in the report"
# A file that cannot be opened: one line, then the report on stderr.
env LD_PRELOAD="$PRELOAD_LIB" RSEQMALLOC_STATS=1 RSEQMALLOC_STATS_FILE=/nonexistent/dir/r \
  "$PYTHON" -c 'print(7)' >"$WORK/out5" 2>"$WORK/err5" || fail "python exited $?"
grep -qx 'rseqmalloc: cannot open RSEQMALLOC_STATS_FILE /nonexistent/dir/r; report on stderr' \
  "$WORK/err5" || { cat "$WORK/err5"; fail "no line for an unopenable file"; }
grep -q '^rseqmalloc statistics' "$WORK/err5" || fail "no report on stderr after the failed open"

# A bad value: one clear line, default kept, program unaffected.
env LD_PRELOAD="$PRELOAD_LIB" RSEQMALLOC_STATS_SIGNAL=9 "$PYTHON" -c 'print(7)' \
  >"$WORK/out3" 2>"$WORK/err3" || fail "python exited $?"
[ "$(cat "$WORK/out3")" = 7 ] || fail "wrong output"
grep -qx 'rseqmalloc: invalid RSEQMALLOC_STATS_SIGNAL=9 (accepted: .*); keeping the default' "$WORK/err3" \
  || { cat "$WORK/err3"; fail "no clear line for a bad value"; }
echo PASS
