#!/usr/bin/env bash
# Runs the allocator's data-structure unit tests (the packages below the
# front end: size classes, spinlock, log in allocator/base; system, arena,
# pagemap, page heap in allocator/pages; central free list, transfer cache,
# central heap in allocator/central) under AddressSanitizer and ThreadSanitizer,
# and prints how long each configuration took.
#
#   tools/sanitizers.sh                   both configurations
#   tools/sanitizers.sh asan              one of them
#   SANITIZER_TARGETS="//allocator/pages:pagemap_test" tools/sanitizers.sh tsan
#   BAZEL="bazel --output_base=/tmp/ob" tools/sanitizers.sh   own Bazel server
#
# These tests link no exported malloc, so the sanitizers' own allocators do
# not clash with ours. The configurations (.bazelrc) build into their own
# output directories (--platform_suffix), so running them does not evict the
# normal build's outputs. Exit status: 0 when every configuration passed.
set -uo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
configs=("$@")
((${#configs[@]})) || configs=(asan tsan)
read -r -a targets <<<"${SANITIZER_TARGETS:-//allocator/base:all //allocator/pages:all //allocator/central:all}"
# BAZEL="bazel --output_base=DIR" runs beside a busy main Bazel server.
read -r -a bazel <<<"${BAZEL:-bazel}"

failed=0
summary=()
for cfg in "${configs[@]}"; do
  case "$cfg" in asan | tsan) ;; *) echo "sanitizers.sh: unknown config '$cfg'" >&2; exit 2 ;; esac
  start=$(date +%s)
  # --nocache_test_results: a result cached from an earlier run proves nothing
  # about this one's timing.
  if "${bazel[@]}" test --config="$cfg" --nocache_test_results "${targets[@]}"; then
    result=PASS
  else
    result=FAIL
    failed=1
  fi
  summary+=("$(printf '%-5s %s  %4d s (build + test)' "$cfg" "$result" "$(($(date +%s) - start))")")
done

echo "--- sanitizers.sh summary: ${targets[*]}"
printf '%s\n' "${summary[@]}"
exit "$failed"
