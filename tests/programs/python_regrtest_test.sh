#!/usr/bin/env bash
# A slice of CPython's own regression tests (Debian's libpython3.11-testsuite)
# with the library preloaded into the test runner, its worker processes and
# every child the tests start, and PYTHONMALLOC=malloc so that all Python
# objects come from malloc. The slice passes without the preload; it must
# pass with it. On a failure the slice is rerun without the preload to tell
# an allocator bug from a broken environment.
source "$(dirname "$0")/../preload/preload_lib.sh"

TESTDIR=/usr/lib/python3.11/test
[ -f "$TESTDIR/test_json/__init__.py" ] ||
  fail "no $TESTDIR/test_json: install Debian's libpython3.11-testsuite"

MODULES=(
  test_json test_collections test_dict test_list test_unicode test_re
  test_bytes test_set test_sort test_itertools test_heapq test_array
  test_deque test_struct test_string test_tuple test_gc test_threading
  test_codecs test_functools test_ordered_dict test_difflib test_hashlib
  test_zlib
)

cd "$WORK"
export HOME="$WORK" TMPDIR="$WORK" PYTHONMALLOC=malloc PYTHONDONTWRITEBYTECODE=1

# Only the runner itself is verbose: several tests demand an empty stderr
# from the Python children they start, and those inherit the environment.
REGRTEST='import os, sys
os.environ.pop("RSEQMALLOC_VERBOSE", None)
from test.libregrtest import main
main()'

# -j2: two worker processes (the machine has two cores); --timeout makes a
# hang print its tracebacks instead of running into Bazel's limit.
ARGS=(-j2 --timeout=240 "${MODULES[@]}")

rc=0
env LD_PRELOAD="$PRELOAD_LIB" RSEQMALLOC_VERBOSE=1 $PRELOAD_EXTRA_ENV \
  "$PYTHON" -c "$REGRTEST" "${ARGS[@]}" >"$WORK/out.txt" 2>"$WORK/err.txt" || rc=$?
if [ "$rc" -ne 0 ]; then
  tail -n 60 "$WORK/out.txt" >&2
  tail -n 30 "$WORK/err.txt" >&2
  if "$PYTHON" -c "$REGRTEST" "${ARGS[@]}" >"$WORK/plain.txt" 2>&1; then
    fail "regrtest exited with $rc with the preload and passes without it"
  fi
  tail -n 20 "$WORK/plain.txt" >&2
  fail "regrtest fails with ($rc) and without the preload: environment problem"
fi
expect_loaded "$WORK/err.txt"
grep -q "Tests result: SUCCESS" "$WORK/out.txt" || fail "no SUCCESS line"
# Every module must have run (none skipped as a whole, none missing).
for m in "${MODULES[@]}"; do
  grep -qE "(^|[] ])$m( |$)" "$WORK/out.txt" || fail "module $m not reported"
done
grep -E "^(All [0-9]+ tests OK|Total duration|Tests result)" "$WORK/out.txt"
echo PASS
