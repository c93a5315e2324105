#!/usr/bin/env bash
# Runs the rseqmalloc libFuzzer target that Bazel builds (//fuzz, fuzz.bzl).
#
#   fuzz/run.sh                       build (bazel), then fuzz for 60 s
#   fuzz/run.sh --seconds 600         fuzz longer
#   fuzz/run.sh --ubsan               the -fsanitize=undefined build
#   fuzz/run.sh --replay              run fuzz/corpus once per cache mode
#   fuzz/run.sh --merge DIR...        add DIRs' inputs with new edges to fuzz/corpus
#   fuzz/run.sh --bin PATH --replay   a binary built already (the Bazel test)
#   fuzz/run.sh --seconds 60 -- -max_len=4096   extra libFuzzer flags
#
# Options: --work DIR (where a fuzzing run keeps new inputs; default a fresh
# temporary directory, printed at the end so it can be merged), --artifacts
# DIR (crash inputs; default the work directory), --out DIR (logs; default
# $TMPDIR). RSEQMALLOC_* pass through to the fuzzer.
# Exit status: 0 when no run failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ubsan=0 seconds=60 action=fuzz work="" artifacts="" bin="" out="${TMPDIR:-/tmp}"
merge_dirs=() extra=()
while (($#)); do
  case "$1" in
    --ubsan) ubsan=1 ;;
    --seconds) seconds="$2"; shift ;;
    --replay) action=replay ;;
    --merge) action=merge ;;
    --bin) bin="$2"; shift ;;
    --out) out="$2"; shift ;;
    --work) work="$2"; shift ;;
    --artifacts) artifacts="$2"; shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *)
      if [ "$action" = merge ]; then merge_dirs+=("$1"); else
        echo "run.sh: unknown argument '$1' (--help)" >&2; exit 2
      fi ;;
  esac
  shift
done

if [ -z "$bin" ]; then
  target="//fuzz:allocator_fuzzer$([ "$ubsan" = 1 ] && echo _ubsan)"
  bazel build "$target" >&2
  bin="$ROOT/bazel-bin/fuzz/allocator_fuzzer$([ "$ubsan" = 1 ] && echo _ubsan)"
fi
[ -x "$bin" ] || { echo "run.sh: no fuzzer binary $bin" >&2; exit 1; }
mkdir -p "$out"

# --- run --------------------------------------------------------------------
corpus="$ROOT/fuzz/corpus"
common_flags=(-timeout=30 -rss_limit_mb=4096 -max_len=1024 -print_final_stats=1)
# The fuzzer checks that the statistics add up exactly and that in-use bytes
# return to where they were after each input, which holds only while its
# thread alone moves memory between layers: no maintenance thread (it would
# move cached objects and pages concurrently, and its start allocates).
export RSEQMALLOC_BACKGROUND_THREAD=0

case "$action" in
  replay)
    # Every input once in every environment the allocator tests run in.
    mapfile -t inputs < <(find -L "$corpus" -maxdepth 1 -type f | sort)
    ((${#inputs[@]})) || { echo "run.sh: empty corpus $corpus" >&2; exit 1; }
    failed=0
    for envs in "" RSEQMALLOC_CACHE=cpu RSEQMALLOC_CACHE=cid RSEQMALLOC_CACHE=thread \
        RSEQMALLOC_CACHE=none RSEQMALLOC_CHECK_SIZED_FREE=1 GLIBC_TUNABLES=glibc.pthread.rseq=0; do
      log="$out/replay.log"
      t0=$(date +%s%N)
      # shellcheck disable=SC2086  # envs is empty or one NAME=VALUE
      if env $envs "$bin" "${common_flags[@]}" "${extra[@]}" "${inputs[@]}" >"$log" 2>&1; then
        echo "replay ${envs:-default}: PASS ($(grep -m1 -o 'mode=[a-z]*' "$log"), ${#inputs[@]} inputs, $((($(date +%s%N) - t0) / 1000000)) ms)"
      else
        echo "replay ${envs:-default}: FAIL"
        grep -E 'FAILED|^rseqmalloc:|ERROR|runtime error|^Running' "$log" | tail -n 6
        tail -n 12 "$log"
        failed=1
      fi
    done
    exit "$failed"
    ;;
  merge)
    # Adds to fuzz/corpus only the inputs that reach new edges. Edges only
    # (no hit counts, no comparison operands) keep the corpus small; what is
    # already there (the hand-written seed_* inputs, earlier finds) stays.
    "$bin" -merge=1 -use_counters=0 -use_cmp=0 -use_value_profile=0 "${common_flags[@]}" \
      "${extra[@]}" "$corpus" "${merge_dirs[@]}"
    echo "run.sh: fuzz/corpus now holds $(find -L "$corpus" -type f | wc -l) inputs, $(du -sk --apparent-size "$corpus" | cut -f1) KiB"
    ;;
  fuzz)
    work="${work:-$(mktemp -d "${TMPDIR:-/tmp}/rseqmalloc-fuzz-work.XXXXXX")}"
    artifacts="${artifacts:-$work}"
    mkdir -p "$work" "$artifacts"
    # New inputs go to $work; fuzz/corpus is only read.
    "$bin" -max_total_time="$seconds" -artifact_prefix="$artifacts/" "${common_flags[@]}" \
      "${extra[@]}" "$work" "$corpus"
    echo "run.sh: new inputs in $work (fuzz/run.sh --merge $work to keep them)"
    ;;
esac
