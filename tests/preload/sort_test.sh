#!/usr/bin/env bash
# GNU sort of two million generated lines, once in memory with two threads
# and once with a small buffer that forces temporary files and merges; the
# preloaded outputs must be byte-identical to the plain ones.
source "$(dirname "$0")/preload_lib.sh"

awk 'BEGIN { srand(7); for (i = 0; i < 2000000; i++)
       printf "%08x %d %s\n", int(rand() * 4294967295), i,
              substr("abcdefghijklmnopqrstuvwxyz", 1 + int(rand() * 26)) }' \
  >"$WORK/in.txt"

for opts in "--parallel=2" "--parallel=2 -S 4M -T $WORK"; do
  # shellcheck disable=SC2086
  sort $opts -o "$WORK/expected.txt" "$WORK/in.txt"
  # shellcheck disable=SC2086
  preloaded "$WORK/err.txt" sort $opts -o "$WORK/actual.txt" "$WORK/in.txt"
  expect_loaded "$WORK/err.txt"
  same_output "$WORK/expected.txt" "$WORK/actual.txt" "sort $opts"
  # And a numeric, keyed sort writing to a pipe.
  sort -k2,2nr "$WORK/in.txt" | cat >"$WORK/expected.txt"
  preloaded "$WORK/err.txt" sort -k2,2nr "$WORK/in.txt" | cat >"$WORK/actual.txt"
  same_output "$WORK/expected.txt" "$WORK/actual.txt" "sort -k2,2nr"
done
echo PASS
