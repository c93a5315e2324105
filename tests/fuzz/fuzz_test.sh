#!/usr/bin/env bash
# Bounded CI run of the allocator fuzzer: replay the corpus in every cache
# mode, fuzz for FUZZ_SECONDS (30). Fails on a failed replay, or any crash /
# failed check while fuzzing. Bazel built the binary (//fuzz:allocator_fuzzer).
set -euo pipefail

root="${TEST_SRCDIR:?run under bazel test}/${TEST_WORKSPACE:-rseqmalloc}"
cd "$root"
bin="$root/fuzz/allocator_fuzzer"
artifacts="${TEST_UNDECLARED_OUTPUTS_DIR:-$TEST_TMPDIR}/fuzz-crashes"
mkdir -p "$artifacts"

bash fuzz/run.sh --bin "$bin" --out "$TEST_TMPDIR" --replay

# -runs bounds the work on a fast machine; time bounds it here.
export TMPDIR="$TEST_TMPDIR"
log="$TEST_TMPDIR/fuzz.log"
if ! bash fuzz/run.sh --bin "$bin" --out "$TEST_TMPDIR" --seconds "${FUZZ_SECONDS:-30}" \
    --work "$TEST_TMPDIR/work" --artifacts "$artifacts" -- -runs=5000000 >"$log" 2>&1; then
  tail -n 60 "$log"
  echo "FAIL: the fuzzer found a failure; crash input in $artifacts"
  exit 1
fi
grep -E '^(INFO: |rseqmalloc_fuzzer:|stat::|Done |#[0-9]+ +DONE)' "$log" | tail -n 20
grep -q '^Done \|DONE' "$log" || { tail -n 30 "$log"; echo "FAIL: the fuzzer did not finish"; exit 1; }
echo "PASS"
