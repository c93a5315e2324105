#!/usr/bin/env bash
# The README's test command: installs what is missing, builds everything and
# runs the whole test suite. Extra arguments go to `bazel test` (for example
# `--config=asan` or a narrower target pattern than //...).
set -uo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh || exit 1

targets=("//...")
flags=()
for a in "$@"; do
  case "$a" in
    //*|:*) targets=("$a") ;;
    *) flags+=("$a") ;;
  esac
done

log=$(mktemp)
bazel test "${flags[@]}" -- "${targets[@]}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

# One closing line in the form CI reads: "N passed, N failed".
passed=$(grep -cE '^//.* (PASSED|\(cached\) PASSED)' "$log")
failed=$(grep -cE '^//.* (FAILED|TIMEOUT|NO STATUS|FAILED TO BUILD)' "$log")
rm -f "$log"
if [ "$rc" -ne 0 ] && [ "$failed" -eq 0 ]; then failed=1; fi  # build broke before tests ran
echo "tests: ${passed} passed, ${failed} failed"
exit "$rc"
