#!/usr/bin/env bash
# Runs small_program (rseqmalloc linked in) under memcheck: it must use the
# per-thread fallback (valgrind has no rseq), produce its output, and have
# no memcheck errors.
set -euo pipefail
prog="$1"
# nouserintercepts: memcheck must not swap our malloc for its own.
out=$(valgrind --error-exitcode=9 --quiet --soname-synonyms=somalloc=nouserintercepts "$prog" 2>&1) || { echo "$out"; echo "FAIL: valgrind exit $?"; exit 1; }
echo "$out"
grep -qx "owned=1" <<<"$out" || { echo "FAIL: malloc under valgrind is not rseqmalloc's"; exit 1; }
grep -qx "mode=thread" <<<"$out" || { echo "FAIL: expected the thread-cache fallback"; exit 1; }
echo "PASS"
