#!/usr/bin/env bash
# shellcheck disable=SC2015,SC2016  # the $LD_PRELOAD in single quotes is for the child shell
# tools/rseqmalloc run: real programs under the preload, the statistics
# report after their output (also for programs that close stderr, and one
# per process), exit statuses, --version, the installed and packaged
# layouts, and the one-line errors (exit 2).
set -uo pipefail

WRAPPER=$(readlink -f "$1")
LIB=$(readlink -f "$2")
HEADER=$(readlink -f "$3")
TMP=${TEST_TMPDIR:-$(mktemp -d)}
failures=0

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# expect_error DESCRIPTION PATTERN ARGS...: exit 2 and one stderr line
# matching PATTERN.
expect_error() {
  local what=$1 pattern=$2
  shift 2
  local rc=0
  "$WRAPPER" "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
  [[ $rc -eq 2 ]] || fail "$what: exit $rc, expected 2"
  [[ $(wc -l <"$TMP/err") -eq 1 ]] || fail "$what: stderr is not one line: $(cat "$TMP/err")"
  grep -q -- "$pattern" "$TMP/err" || fail "$what: stderr lacks '$pattern': $(cat "$TMP/err")"
  [[ ! -s "$TMP/out" ]] || fail "$what: wrote to stdout"
}

# A real program's output, then the report (thread mode) after it. The
# interpreter itself, not a shim script that would start more processes.
PYTHON=/usr/bin/python3
[[ -x "$PYTHON" ]] || PYTHON=$(command -v python3)
"$WRAPPER" run --stats --mode thread --lib "$LIB" -- "$PYTHON" -c '
d = {}
for i in range(200000):
    d[str(i)] = [i] * (i % 7)
print(sum(len(v) for v in d.values()))
print("program done", flush=True)
' >"$TMP/py" 2>&1
rc=$?
[[ $rc -eq 0 ]] || fail "python run: exit $rc"
expected=$(awk 'BEGIN { for (i = 0; i < 200000; i++) s += i % 7; print s }')
[[ $(sed -n 1p "$TMP/py") == "$expected" ]] || fail "python output wrong: $(head -3 "$TMP/py")"
report_line=$(grep -n '^rseqmalloc statistics: pid [0-9]*, mode thread$' "$TMP/py" | cut -d: -f1 | head -1)
done_line=$(grep -n '^program done$' "$TMP/py" | cut -d: -f1)
[[ -n "$report_line" ]] || fail "no report with 'mode thread': $(cat "$TMP/py")"
[[ -n "$report_line" && -n "$done_line" && $report_line -gt $done_line ]] ||
  fail "report not after the program's output"

# --stats with a program that closes stderr before it exits (coreutils):
# the report still comes, from the file the library wrote, and the
# wrapper's temporary folder is gone afterwards.
mkdir -p "$TMP/tmpdir"
TMPDIR=$TMP/tmpdir "$WRAPPER" run --stats --lib "$LIB" -- ls / >"$TMP/ls.out" 2>"$TMP/ls.err"
rc=$?
[[ $rc -eq 0 ]] || fail "ls under --stats: exit $rc"
grep -qx bin "$TMP/ls.out" || fail "ls printed the wrong thing: $(head -3 "$TMP/ls.out")"
grep -q '^rseqmalloc statistics: pid [0-9]*, mode ' "$TMP/ls.err" ||
  fail "no report for ls: $(head -3 "$TMP/ls.err")"
grep -q 'resident (RSS)' "$TMP/ls.err" || fail "the report has no RSS line"
grep -q -- '^--- rseqmalloc: report' "$TMP/ls.err" && fail "one process, yet a label"
[[ -z $(ls -A "$TMP/tmpdir") ]] || fail "temporary files left: $(ls -A "$TMP/tmpdir")"

# Several processes: one labelled report each, the exit status kept.
TMPDIR=$TMP/tmpdir "$WRAPPER" run --stats --lib "$LIB" -- \
  bash -c 'ls / >/dev/null; "$0" -c "pass"; exit 5' "$PYTHON" 2>"$TMP/multi.err"
rc=$?
[[ $rc -eq 5 ]] || fail "--stats changed the exit status 5 to $rc"
n=$(grep -c '^rseqmalloc statistics: pid' "$TMP/multi.err")
[[ $n -ge 2 ]] || fail "expected a report from each of ls and python, got $n"
[[ $(grep -c "^--- rseqmalloc: report [0-9]* of $n, pid [0-9]* ---$" "$TMP/multi.err") -eq $n ]] ||
  fail "reports are not labelled: $(grep -- '^---' "$TMP/multi.err")"
# Each label names the pid of the report below it.
awk '/^--- rseqmalloc: report/ { pid = $NF == "---" ? $(NF-1) : $NF; next }
     /^rseqmalloc statistics: pid/ { p = $4; sub(",", "", p); if (p != pid) bad = 1 }
     END { exit bad }' "$TMP/multi.err" || fail "a label names another pid than its report"
[[ -z $(ls -A "$TMP/tmpdir") ]] || fail "temporary files left after several processes"

# A report file the user chose is respected, and nothing is printed.
RSEQMALLOC_STATS_FILE=$TMP/mine.%p "$WRAPPER" run --stats --lib "$LIB" -- ls / >/dev/null \
  2>"$TMP/mine.err" || fail "ls with the user's RSEQMALLOC_STATS_FILE failed"
compgen -G "$TMP/mine.[0-9]*" >/dev/null || fail "no report in the user's file"
[[ ! -s $TMP/mine.err ]] || fail "printed despite the user's file: $(head -2 "$TMP/mine.err")"

# No process loads the library (a static program): one line saying so.
"$WRAPPER" run --stats --lib "$LIB" -- /sbin/ldconfig --version >/dev/null 2>"$TMP/none.err" ||
  fail "ldconfig --version failed"
grep -q '^rseqmalloc: no statistics report was written' "$TMP/none.err" ||
  fail "no note when no report was written: $(cat "$TMP/none.err")"

# --version: the header's version.
want=$(sed -n 's/^#define RSEQMALLOC_VERSION "\(.*\)"$/\1/p' "$HEADER")
[[ -n $want ]] || fail "no version in $HEADER"
[[ $("$WRAPPER" --version) == "rseqmalloc $want" ]] || fail "--version: $("$WRAPPER" --version 2>&1)"

# sort through the preload: same result as sort itself.
seq 1 50000 | awk '{ print ($1 * 7919) % 50021 }' >"$TMP/numbers"
sort -n "$TMP/numbers" >"$TMP/expected"
"$WRAPPER" run --mode thread --lib "$LIB" -- sort -n "$TMP/numbers" >"$TMP/sorted" ||
  fail "sort under the preload failed"
cmp -s "$TMP/expected" "$TMP/sorted" || fail "sort output differs"

# The mode reaches the library: its own start-up line says so.
RSEQMALLOC_VERBOSE=1 "$WRAPPER" run --mode none --lib "$LIB" -- true 2>"$TMP/verbose" ||
  fail "verbose run failed"
grep -q '^rseqmalloc: pid [0-9]* mode=none (asked: none)$' "$TMP/verbose" ||
  fail "mode not applied: $(head -2 "$TMP/verbose")"

# Exit status, and 128+signal for a killed program.
"$WRAPPER" run --lib "$LIB" -- sh -c 'exit 3'
rc=$?
[[ $rc -eq 3 ]] || fail "exit 3 gave $rc"
"$WRAPPER" run --lib "$LIB" -- sh -c 'kill -KILL $$' 2>/dev/null
rc=$?
[[ $rc -eq 137 ]] || fail "SIGKILL gave $rc, expected 137"

# Ours first, earlier LD_PRELOAD entries kept.
got=$(LD_PRELOAD=/nonexistent-but-kept.so "$WRAPPER" run --lib "$LIB" -- \
  sh -c 'echo "$LD_PRELOAD"' 2>/dev/null)
[[ "$got" == "$LIB:/nonexistent-but-kept.so" ]] || fail "LD_PRELOAD is '$got'"

# Installed layout: PREFIX/bin/rseqmalloc finds PREFIX/lib/librseqmalloc.so.
mkdir -p "$TMP/prefix/bin" "$TMP/prefix/lib"
cp "$WRAPPER" "$TMP/prefix/bin/rseqmalloc"
cp "$LIB" "$TMP/prefix/lib/librseqmalloc.so"
got=$(cd "$TMP" && prefix/bin/rseqmalloc run -- sh -c 'echo "$LD_PRELOAD"')
[[ "$got" == "$TMP/prefix/lib/librseqmalloc.so" ]] || fail "installed wrapper preloads '$got'"
"$TMP/prefix/bin/rseqmalloc" run --stats -- "$PYTHON" -c 'pass' 2>"$TMP/err"
grep -q '^rseqmalloc statistics: pid' "$TMP/err" || fail "installed wrapper: no report"
mkdir -p "$TMP/prefix/include"
cp "$HEADER" "$TMP/prefix/include/rseqmalloc.h"
[[ $("$TMP/prefix/bin/rseqmalloc" --version) == "rseqmalloc $want" ]] ||
  fail "installed wrapper --version: $("$TMP/prefix/bin/rseqmalloc" --version 2>&1)"

# The Debian package's layout: the library in lib/<multiarch>.
mkdir -p "$TMP/deb/usr/bin" "$TMP/deb/usr/lib/$(uname -m)-linux-gnu"
cp "$WRAPPER" "$TMP/deb/usr/bin/rseqmalloc"
cp "$LIB" "$TMP/deb/usr/lib/$(uname -m)-linux-gnu/librseqmalloc.so"
got=$("$TMP/deb/usr/bin/rseqmalloc" run -- sh -c 'echo "$LD_PRELOAD"')
[[ "$got" == "$TMP/deb/usr/lib/$(uname -m)-linux-gnu/librseqmalloc.so" ]] ||
  fail "packaged wrapper preloads '$got'"

# Help.
# (Captured first: grep -q would close the pipe early.)
out=$("$WRAPPER" --help) && grep -q '^usage: rseqmalloc' <<<"$out" || fail "--help"
out=$("$WRAPPER" --help) && grep -q -- '--version' <<<"$out" || fail "--help lacks --version"
out=$("$WRAPPER" run --help) && grep -q -- '--mode MODE' <<<"$out" || fail "run --help"
out=$("$WRAPPER" compare --help) && grep -q 'tools/compare' <<<"$out" ||
  fail "compare --help: $out"

# Errors: exit 2, one clear line.
expect_error "bad mode" "bad --mode 'fast'" run --mode fast --lib "$LIB" -- true
expect_error "missing command" "missing command" run --lib "$LIB" --
expect_error "missing --" "missing '--'" run --lib "$LIB" true
expect_error "missing library" "library not found: $TMP/none.so" run --lib "$TMP/none.so" -- true
expect_error "unknown option" "unknown option '--fast'" run --fast -- true
expect_error "unknown command" "unknown command 'walk'" walk
expect_error "mode without value" "--mode needs a value" run --mode
# No library next to an installed wrapper, and no repository.
mkdir -p "$TMP/bare/bin"
cp "$WRAPPER" "$TMP/bare/bin/rseqmalloc"
WRAPPER_SAVED=$WRAPPER
WRAPPER=$TMP/bare/bin/rseqmalloc
expect_error "no installed library" "library not found: $TMP/bare/lib/librseqmalloc.so" run -- true
cd "$TMP" || exit 1
expect_error "compare outside a checkout" "needs an rseqmalloc repository" compare
cd - >/dev/null || exit 1
WRAPPER=$WRAPPER_SAVED

if ((failures)); then
  echo "$failures check(s) failed" >&2
  exit 1
fi
echo "PASS"
