#!/usr/bin/env bash
# Long cross-thread stress, outside Bazel's test timeout: builds
# //tests/stress:cross_thread_stress_test (and its glibc twin) and runs it in
# every environment its Bazel variants use (tests/defs.bzl), each for about
# SECONDS, then prints PASS / FAIL per mode.
#
#   tools/stress_long.sh [SECONDS]        default 300 per mode (8 modes: ~40 min)
#   STRESS_MODES="cpu cid" tools/stress_long.sh 60   only some modes
#   BAZEL="bazel --output_base=/tmp/ob" tools/stress_long.sh   own Bazel server
#
# Modes: default glibc_rseq_off cpu cid thread none checked_sized_free glibc.
# The test binary runs its cases (16 and 64 threads) one after the other, so
# each case gets SECONDS / cases (RSEQMALLOC_STRESS_SECONDS). Logs go to
# $STRESS_LOG_DIR (default a fresh temporary directory, printed).
# Exit status: 0 when every mode passed.
set -euo pipefail

seconds="${1:-300}"
[[ "$seconds" =~ ^[0-9]+$ ]] && ((seconds > 0)) || { echo "usage: $0 [SECONDS]" >&2; exit 2; }
modes="${STRESS_MODES:-default glibc_rseq_off cpu cid thread none checked_sized_free glibc}"

cd "$(dirname "${BASH_SOURCE[0]}")/.."
# BAZEL="bazel --output_base=DIR" runs beside a busy main Bazel server.
read -r -a bazel <<<"${BAZEL:-bazel}"
"${bazel[@]}" build //tests/stress:cross_thread_stress_test //tests/stress:cross_thread_stress_test_glibc
bin_dir="$("${bazel[@]}" info bazel-bin 2>/dev/null)/tests/stress"
logs="${STRESS_LOG_DIR:-$(mktemp -d "${TMPDIR:-/tmp}/rseqmalloc-stress.XXXXXX")}"
mkdir -p "$logs"

# The environment of each Bazel variant (tests/defs.bzl _variants).
mode_env() {
  case "$1" in
    default | glibc) echo "" ;;
    glibc_rseq_off) echo "GLIBC_TUNABLES=glibc.pthread.rseq=0" ;;
    cpu | cid | thread | none) echo "RSEQMALLOC_CACHE=$1" ;;
    checked_sized_free) echo "RSEQMALLOC_CHECK_SIZED_FREE=1" ;;
    *) echo "stress_long.sh: unknown mode '$1'" >&2; return 1 ;;
  esac
}

bin="$bin_dir/cross_thread_stress_test"
cases=$("$bin" --gtest_list_tests | grep -c '^  ')
per_case=$(awk -v s="$seconds" -v c="$cases" 'BEGIN { printf "%.1f", s / c }')
echo "stress_long.sh: $cases cases x ${per_case} s per mode; logs in $logs"

failed=0
summary=()
for mode in $modes; do
  env_assign="$(mode_env "$mode")"
  exe="$bin"
  [ "$mode" = glibc ] && exe="${bin}_glibc"
  log="$logs/$mode.log"
  start=$(date +%s)
  # shellcheck disable=SC2086  # env_assign is empty or one NAME=VALUE
  if env $env_assign RSEQMALLOC_STRESS_SECONDS="$per_case" "$exe" \
      --gtest_output="xml:$logs/$mode.xml" >"$log" 2>&1; then
    result=PASS
  else
    result=FAIL
    failed=1
  fi
  # Each case records its allocation count in the XML report.
  allocs=$(grep -o 'name="allocations" value="[0-9]*"' "$logs/$mode.xml" 2>/dev/null |
    awk -F'"' '{ n += $4 } END { if (NR) print n }' || true)
  line=$(printf '%-20s %s  %4d s  %s allocations' "$mode" "$result" "$(($(date +%s) - start))" "${allocs:-?}")
  echo "$line"
  summary+=("$line")
  [ "$result" = FAIL ] && grep -E 'Failure|FAILED|Expected|rseqmalloc:' "$log" | head -n 20
done

echo "--- stress_long.sh summary (${seconds} s per mode)"
printf '%s\n' "${summary[@]}"
exit "$failed"
