#!/usr/bin/env bash
# shellcheck disable=SC2015  # "a && b || fail" is meant
# tools/compare's command line: every bad option is one line and exit 2
# (before anything is installed or built); --help documents --env and one
# --quick duration, the README's; and a --no-build run of two real programs writes only the
# report to stdout, with an allocator's --env variable in that allocator's
# runs only; and a library whose file name lacks "malloc" runs as NAME=PATH.
set -uo pipefail

COMPARE=$1  # runfiles path: tools/compare finds compare_lib beside it
LIB=$(readlink -f "$2")
README=$3
BATCH=$(readlink -f "$4")
TMP=${TEST_TMPDIR:-$(mktemp -d)}
failures=0

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# expect_error PATTERN ARGS...: exit 2, one stderr line matching PATTERN,
# nothing on stdout.
expect_error() {
  local pattern=$1 rc=0
  shift
  python3 "$COMPARE" --no-build --out "$TMP/unused" "$@" >"$TMP/out" 2>"$TMP/err" || rc=$?
  [[ $rc -eq 2 ]] || fail "$*: exit $rc, expected 2"
  [[ $(wc -l <"$TMP/err") -eq 1 ]] || fail "$*: stderr is not one line: $(cat "$TMP/err")"
  grep -q -- "$pattern" "$TMP/err" || fail "$*: stderr lacks '$pattern': $(cat "$TMP/err")"
  [[ ! -s $TMP/out ]] || fail "$*: wrote to stdout"
}

expect_error "bad --env 'GLIBC_TUNABLES=x': expected NAME:VAR=VALUE" --env GLIBC_TUNABLES=x
expect_error "no allocator 'tcg' in --allocators" --allocators glibc --env tcg:A=1
expect_error "'1A' is not a variable name" --env glibc:1A=1
expect_error "LD_PRELOAD is the allocator's library" --env rseqmalloc:LD_PRELOAD=/x.so
expect_error "A is already set for glibc" --env glibc:A=1 --env glibc:A=2
expect_error "'mine=' has no library path" --allocators glibc,mine=
expect_error "'jemalloc' is listed twice" --allocators jemalloc,jemalloc
expect_error "unknown allocator 'tcmallok'" --allocators tcmallok
expect_error "unknown program 'redis2'" --programs redis2
expect_error "unknown workload 'pairs'" --workloads pairs
expect_error "unrecognized arguments: --fast" --fast
expect_error "--reps must be at least 1" --reps 0
expect_error "--baseline prev is not one of the allocators (glibc, rseqmalloc)" \
  --allocators glibc,rseqmalloc --baseline prev
[[ ! -e $TMP/unused ]] || fail "a refused command line created its output folder"

help=$(python3 "$COMPARE" --help) || fail "--help failed"
grep -q -- "--env NAME:VAR=VALUE" <<<"$help" || fail "--help does not show --env's syntax"
grep -q "GLIBC_TUNABLES=glibc.pthread.rseq=0" <<<"$help" || fail "--help has no tcmalloc example"
grep -q "programs: redis, sqlite3, python3, g++, perl" <<<"$help" || fail "--help lists no programs"
quick=$(grep -o -- "--quick about [^(]*[^( ]" <<<"$help" | head -1)
[[ -n $quick ]] || fail "--help states no --quick duration"
quick_opt=$(tr -s ' \n' ' ' <<<"$help" | grep -o "repetitions (about [^)]*)" | head -1)
[[ $quick_opt == "repetitions (${quick#--quick })" ]] ||
  fail "--help gives two --quick durations: '$quick' and '$quick_opt'"
grep -qF -- "--quick: ${quick#--quick }" "$README" ||
  fail "README states another --quick duration than --help's '${quick#--quick }'"

# A real run without bazel: the library where --no-build looks for it.
OUT=$TMP/results
mkdir -p "$OUT/bin"
cp "$LIB" "$OUT/bin/librseqmalloc.so"
rc=0
python3 "$COMPARE" --no-build --out "$OUT" --quick --reps 1 --programs sqlite3,perl \
  --allocators glibc,rseqmalloc --env rseqmalloc:RSEQMALLOC_CACHE=thread --baseline glibc \
  >"$TMP/report.md" 2>"$TMP/progress" || rc=$?
[[ $rc -eq 0 ]] || fail "run: exit $rc: $(tail -5 "$TMP/progress")"
[[ $(head -1 "$TMP/report.md") == "# tools/compare results" ]] ||
  fail "stdout does not start with the report: $(head -3 "$TMP/report.md")"
cmp -s "$TMP/report.md" "$OUT/summary.md" || fail "stdout is not exactly summary.md"
grep -q "^compare: preparing 2 programs" "$TMP/progress" || fail "progress is not on stderr"
grep -q "^- rseqmalloc runs with RSEQMALLOC_CACHE=thread$" "$TMP/report.md" ||
  fail "the report does not say which allocator had which variables"
for p in sqlite3 perl; do
  grep -qE "^\| $p \| [0-9.]+s \(1\.00\) \| [0-9.]+s \([0-9.]+, [0-9.]+\) \|$" "$TMP/report.md" ||
    fail "no speed row for $p: $(grep "| $p |" "$TMP/report.md")"
  grep -qE "^\| $p \| [0-9.]+ MiB \(1\.00\) \|" "$TMP/report.md" || fail "no RSS row for $p"
done
# runs.csv: status ok everywhere; the variable in rseqmalloc's commands only.
python3 - "$OUT/runs.csv" <<'PY' || fail "runs.csv"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert len(rows) == 4, rows
for r in rows:
    assert r["status"] == "ok", r
    assert float(r["seconds"]) > 0 and int(r["peak_rss_kib"]) > 0, r
    has = "RSEQMALLOC_CACHE=thread" in r["command"]
    assert has == (r["allocator"] == "rseqmalloc"), r
    assert ("LD_PRELOAD=" in r["command"]) == (r["allocator"] == "rseqmalloc"), r
PY
[[ -s $OUT/medians.csv ]] || fail "no medians.csv"
# --baseline glibc: rseqmalloc's paired ratios, one pair per program.
grep -q "^Paired ratios to glibc" "$TMP/report.md" || fail "no paired table in the report"
for p in sqlite3 perl; do
  grep -qE "^\| $p \| [0-9.]+ \[[0-9.]+-[0-9.]+\] \| [0-9.]+ \[[0-9.]+-[0-9.]+\] \|$" \
    "$TMP/report.md" || fail "no paired row for $p: $(grep "| $p |" "$TMP/report.md")"
done
python3 - "$OUT/paired.csv" <<'PY' || fail "paired.csv"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert [r["workload"] for r in rows] == ["sqlite3", "perl"], rows
for r in rows:
    assert r["allocator"] == "rseqmalloc" and r["baseline"] == "glibc" and r["pairs"] == "1", r
    assert float(r["speed_ratio_median"]) > 0 and float(r["rss_ratio_median"]) > 0, r
PY

# A library of any file name compares (NAME=/path): the workload reports
# the file LD_PRELOAD named even without "malloc" in it.
cp "$LIB" "$TMP/prev.so"
cp "$BATCH" "$OUT/bin/batch"
rc=0
python3 "$COMPARE" --no-build --out "$OUT" --quick --reps 1 --workloads batch_100 \
  --threads 1 --allocators "prev=$TMP/prev.so" >/dev/null 2>"$TMP/progress" || rc=$?
[[ $rc -eq 0 ]] || fail "prev.so run: exit $rc: $(tail -5 "$TMP/progress")"
python3 - "$OUT/runs.csv" <<'PY' || fail "prev.so runs.csv: $(cat "$OUT/runs.csv")"
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1])))
assert len(rows) == 1 and rows[0]["allocator"] == "prev", rows
assert rows[0]["status"] == "ok", rows
PY

# --no-build with a workload that was never built: a clear error.
rc=0
python3 "$COMPARE" --no-build --out "$OUT" --workloads pair >/dev/null 2>"$TMP/err" || rc=$?
[[ $rc -eq 1 ]] && grep -q "^error: --no-build, but pair not in $OUT/bin$" "$TMP/err" ||
  fail "missing workload: exit $rc, $(cat "$TMP/err")"

if ((failures)); then
  echo "$failures check(s) failed" >&2
  exit 1
fi
echo "PASS"
