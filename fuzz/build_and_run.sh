#!/usr/bin/env bash
# Builds the rseqmalloc libFuzzer target with clang++ and runs it.
#
# Bazel 4 with clang and -fsanitize=fuzzer is awkward, so this compiles the
# allocator's library sources (allocator/**.cc and rseq/*.cc, minus tests)
# directly, with the flags of allocator/copts.bzl, into one binary whose
# malloc is rseqmalloc's. Not AddressSanitizer: it would replace malloc.
#
#   fuzz/build_and_run.sh                    build, then fuzz for 60 s
#   fuzz/build_and_run.sh --seconds 600      fuzz longer
#   fuzz/build_and_run.sh --ubsan            the same with -fsanitize=undefined
#   fuzz/build_and_run.sh --replay           run fuzz/corpus once per cache mode
#   fuzz/build_and_run.sh --merge DIR...     add DIRs' inputs with new edges to fuzz/corpus
#   fuzz/build_and_run.sh --build-only       just build (prints the binary's path)
#   fuzz/build_and_run.sh --no-build --replay  reuse the binary --out holds
#   fuzz/build_and_run.sh --seconds 60 -- -max_len=4096   extra libFuzzer flags
#
# Options: --out DIR (build directory; default $TMPDIR/rseqmalloc-fuzz[-ubsan]),
# --work DIR (where a fuzzing run keeps new inputs; default a fresh temporary
# directory, printed at the end so it can be merged), --artifacts DIR (crash
# inputs; default the work directory). Environment: CXX (default clang++-14,
# else clang++), RSEQMALLOC_* passed through to the fuzzer.
# Exit status: 0 when everything built and no run failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ubsan=0 seconds=60 action=fuzz out="" work="" artifacts="" build=1
merge_dirs=() extra=()
while (($#)); do
  case "$1" in
    --ubsan) ubsan=1 ;;
    --seconds) seconds="$2"; shift ;;
    --replay) action=replay ;;
    --merge) action=merge ;;
    --build-only) action=build ;;
    --no-build) build=0 ;;
    --out) out="$2"; shift ;;
    --work) work="$2"; shift ;;
    --artifacts) artifacts="$2"; shift ;;
    --) shift; extra=("$@"); break ;;
    -h|--help) sed -n '2,25p' "$0"; exit 0 ;;
    *)
      if [ "$action" = merge ]; then merge_dirs+=("$1"); else
        echo "build_and_run.sh: unknown argument '$1' (--help)" >&2; exit 2
      fi ;;
  esac
  shift
done

if [ -z "${CXX:-}" ]; then
  CXX=clang++-14
  command -v "$CXX" >/dev/null || CXX=clang++
fi
command -v "$CXX" >/dev/null || { echo "build_and_run.sh: no $CXX (tools/setup.sh installs clang)" >&2; exit 1; }

suffix=""; [ "$ubsan" = 1 ] && suffix="-ubsan"
out="${out:-${TMPDIR:-/tmp}/rseqmalloc-fuzz$suffix}"
mkdir -p "$out/obj"
bin="$out/allocator_fuzzer"

# --- build ------------------------------------------------------------------
build_fuzzer() {
  # The allocator's flags come from the one place Bazel takes them: the
  # Bazel test passes them in RSEQMALLOC_FUZZ_COPTS, else read the file.
  if [ -n "${RSEQMALLOC_FUZZ_COPTS:-}" ]; then
    read -r -a alloc_copts <<<"$RSEQMALLOC_FUZZ_COPTS"
  else
    mapfile -t alloc_copts < <(grep -o '"-f[^"]*"' allocator/copts.bzl | tr -d '"')
  fi
  ((${#alloc_copts[@]})) || { echo "build_and_run.sh: no flags found in allocator/copts.bzl" >&2; exit 1; }

  # Link libFuzzer's runtime by hand: -fsanitize=fuzzer would also link
  # UBSan's standalone runtime (for libFuzzer's interceptors), whose
  # .preinit_array function calls malloc before libc has set `environ`, so
  # rseqmalloc would start with default options and ignore RSEQMALLOC_CACHE.
  local runtime
  runtime="$("$CXX" -print-resource-dir)/lib/linux/libclang_rt.fuzzer-x86_64.a"
  [ -f "$runtime" ] || { echo "build_and_run.sh: no $runtime (install libclang-rt-14-dev)" >&2; exit 1; }
  sanitize=(-fsanitize=fuzzer-no-link)
  link_sanitize=(-Wl,--whole-archive "$runtime" -Wl,--no-whole-archive)
  if [ "$ubsan" = 1 ]; then
    # The minimal runtime, for the same reason (it has no start-up code).
    # Clang refuses it next to -fsanitize=fuzzer-no-link, so name the
    # coverage that flag stands for. Every report is fatal, so libFuzzer
    # keeps the input that caused it.
    sanitize=(-fsanitize-coverage=inline-8bit-counters,indirect-calls,trace-cmp,pc-table
      -fsanitize=undefined -fsanitize-minimal-runtime -fno-sanitize-recover=all)
    link_sanitize+=(-fsanitize=undefined -fsanitize-minimal-runtime)
  fi
  common=(-std=c++20 -O1 -g -I"$ROOT" -Wall -Wextra "${sanitize[@]}")

  # Library sources only: tests, benchmarks and test helpers stay out.
  mapfile -t lib_srcs < <(find allocator rseq -name '*.cc' ! -name '*_test.cc' \
    ! -name '*_benchmark.cc' ! -name 'test_util.cc' ! -name '*_stub.cc' | sort)
  ((${#lib_srcs[@]})) || { echo "build_and_run.sh: no allocator sources under $ROOT" >&2; exit 1; }

  # One line per translation unit: "source<TAB>object<TAB>flags...".
  jobs_file="$out/compile_jobs"
  : >"$jobs_file"
  for src in "${lib_srcs[@]}"; do
    printf '%s\t%s\t%s\n' "$src" "$out/obj/${src//\//_}.o" \
      "${common[*]} ${alloc_copts[*]}" >>"$jobs_file"
  done
  # The fuzzer calls ::operator delete(p, size): clang 14 declares it only with
  # -fsized-deallocation. -fno-builtin keeps malloc/free calls as written.
  printf '%s\t%s\t%s\n' fuzz/allocator_fuzzer.cc "$out/obj/fuzz_allocator_fuzzer.o" \
    "${common[*]} -fsized-deallocation -fno-builtin" >>"$jobs_file"

  compile_one() {  # source object flags
    local src="$1" obj="$2" flags="$3"
    # shellcheck disable=SC2086  # flags is a word list
    "$CXX" $flags -c "$src" -o "$obj" || { echo "build_and_run.sh: FAILED to compile $src" >&2; return 255; }
  }
  export -f compile_one
  export CXX

  start=$(date +%s)
  echo "build_and_run.sh: compiling ${#lib_srcs[@]} allocator sources + the fuzzer with $CXX$([ "$ubsan" = 1 ] && echo ' (UBSan)') into $out"
  tr '\t' '\n' <"$jobs_file" | xargs -d '\n' -n 3 -P "$(nproc)" bash -c 'compile_one "$@"' _
  mapfile -t objs < <(cut -f2 "$jobs_file")
  "$CXX" "${objs[@]}" "${link_sanitize[@]}" -o "$bin" -lpthread
  echo "build_and_run.sh: built $bin in $(($(date +%s) - start)) s"
}

if [ "$build" = 1 ] || [ ! -x "$bin" ]; then build_fuzzer; fi
[ "$action" = build ] && exit 0

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
    ((${#inputs[@]})) || { echo "build_and_run.sh: empty corpus $corpus" >&2; exit 1; }
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
    echo "build_and_run.sh: fuzz/corpus now holds $(find -L "$corpus" -type f | wc -l) inputs, $(du -sk --apparent-size "$corpus" | cut -f1) KiB"
    ;;
  fuzz)
    work="${work:-$(mktemp -d "${TMPDIR:-/tmp}/rseqmalloc-fuzz-work.XXXXXX")}"
    artifacts="${artifacts:-$work}"
    mkdir -p "$work" "$artifacts"
    # New inputs go to $work; fuzz/corpus is only read.
    "$bin" -max_total_time="$seconds" -artifact_prefix="$artifacts/" "${common_flags[@]}" \
      "${extra[@]}" "$work" "$corpus"
    echo "build_and_run.sh: new inputs in $work (fuzz/build_and_run.sh --merge $work to keep them)"
    ;;
esac
