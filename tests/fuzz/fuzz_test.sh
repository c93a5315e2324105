#!/usr/bin/env bash
# Bounded CI run of the allocator fuzzer: build with clang++, replay the
# corpus in every cache mode, fuzz for FUZZ_SECONDS (30). Fails on a compile
# error, a failed replay, or any crash / failed check while fuzzing.
set -euo pipefail

# The runfiles tree holds exactly the declared sources, laid out as in the
# repository, so the script compiles what Bazel tracks and nothing else.
root="${TEST_SRCDIR:?run under bazel test}/${TEST_WORKSPACE:-rseqmalloc}"
cd "$root"
build="$TEST_TMPDIR/fuzz-build"
artifacts="${TEST_UNDECLARED_OUTPUTS_DIR:-$TEST_TMPDIR}/fuzz-crashes"
mkdir -p "$artifacts"

bash fuzz/build_and_run.sh --build-only --out "$build"
bash fuzz/build_and_run.sh --no-build --replay --out "$build"

# -runs bounds the work on a fast machine; time bounds it here.
export TMPDIR="$TEST_TMPDIR"
log="$TEST_TMPDIR/fuzz.log"
if ! bash fuzz/build_and_run.sh --no-build --out "$build" --seconds "${FUZZ_SECONDS:-30}" \
    --work "$TEST_TMPDIR/work" --artifacts "$artifacts" -- -runs=5000000 >"$log" 2>&1; then
  tail -n 60 "$log"
  echo "FAIL: the fuzzer found a failure; crash input in $artifacts"
  exit 1
fi
grep -E '^(INFO: |rseqmalloc_fuzzer:|stat::|Done |#[0-9]+ +DONE)' "$log" | tail -n 20
grep -q '^Done \|DONE' "$log" || { tail -n 30 "$log"; echo "FAIL: the fuzzer did not finish"; exit 1; }
echo "PASS"
