# Shared by the LD_PRELOAD tests: sourced, never run. The test passes the
# library's path as $1; each helper fails the whole test on any mismatch.
#
# To prove the harness with another allocator by hand (no edit needed):
#   PRELOAD_MARKER='Begin jemalloc statistics' \
#   PRELOAD_EXTRA_ENV='MALLOC_CONF=stats_print:true' \
#   bash tests/preload/sort_test.sh /usr/lib/x86_64-linux-gnu/libjemalloc.so.2

set -euo pipefail

PRELOAD_LIB="${1:?usage: $0 path/to/librseqmalloc.so}"
case "$PRELOAD_LIB" in /*) ;; *) PRELOAD_LIB="$PWD/$PRELOAD_LIB" ;; esac
[ -f "$PRELOAD_LIB" ] || { echo "FAIL: no library at $PRELOAD_LIB"; exit 1; }

# The library prints a line starting with this when RSEQMALLOC_VERBOSE=1.
PRELOAD_MARKER="${PRELOAD_MARKER:-^rseqmalloc:}"
PRELOAD_EXTRA_ENV="${PRELOAD_EXTRA_ENV:-}"

WORK="$(mktemp -d "${TEST_TMPDIR:-/tmp}/preload.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# Deterministic, preload-independent environment for both runs.
export LC_ALL=C TZ=UTC
PYTHON=/usr/bin/python3

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# preloaded ERRFILE CMD...: runs CMD with the library preloaded and verbose,
# its stderr to ERRFILE (stdout untouched), and fails if it exits non-zero.
preloaded() {
  local err="$1"
  shift
  local rc=0
  # shellcheck disable=SC2086  # PRELOAD_EXTRA_ENV is a list of NAME=VALUE
  env LD_PRELOAD="$PRELOAD_LIB" RSEQMALLOC_VERBOSE=1 $PRELOAD_EXTRA_ENV \
    "$@" 2>"$err" || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "--- stderr of the preloaded run (last 30 lines):" >&2
    tail -n 30 "$err" >&2
    fail "preloaded '$*' exited with $rc (RSEQMALLOC_CACHE=${RSEQMALLOC_CACHE:-default})"
  fi
}

# expect_loaded ERRFILE: the child really ran with the library.
# With RSEQMALLOC_CACHE forced, the start-up line must also name that mode
# ("rseqmalloc: pid N mode=thread ...").
expect_loaded() {
  grep -qE "$PRELOAD_MARKER" "$1" ||
    fail "no line matching '$PRELOAD_MARKER' on stderr: library not loaded?"
  if [ -n "${RSEQMALLOC_CACHE:-}" ] && [ "$PRELOAD_MARKER" = "^rseqmalloc:" ]; then
    grep -qE "^rseqmalloc:.* mode=${RSEQMALLOC_CACHE}( |\$)" "$1" ||
      fail "start-up line does not report mode=$RSEQMALLOC_CACHE: $(grep -m1 '^rseqmalloc:' "$1")"
  fi
}

# same_output EXPECTED ACTUAL WHAT
same_output() {
  cmp -s "$1" "$2" || {
    diff "$1" "$2" | head -n 20 >&2 || true
    fail "$3: output differs with the preload"
  }
}

echo "preload: $PRELOAD_LIB RSEQMALLOC_CACHE=${RSEQMALLOC_CACHE:-default}"
