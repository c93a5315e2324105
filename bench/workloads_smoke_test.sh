#!/usr/bin/env bash
# Runs each workload program (given as arguments) for a few milliseconds and
# checks that it prints one well-formed result line with positive figures,
# and that a bad option is refused with exit status 2.
set -uo pipefail
fail=0
for bin in "$@"; do
  name=$(basename "$bin")
  case "$name" in
    producer_consumer|memory_64threads) threads=4 ;;
    *) threads=2 ;;
  esac
  extra=(--ms 30)
  [ "$name" = fragmentation ] && extra=(--mib 8)
  [ "$name" = large_realloc ] && extra=(--ms 30 --size 4M)
  out=$("$bin" --threads "$threads" "${extra[@]}" 2>&1)
  rc=$?
  line=$(grep '^result ' <<<"$out")
  if [ "$rc" -ne 0 ] || [ "$(grep -c '^result ' <<<"$out")" -ne 1 ]; then
    echo "FAIL $name: rc=$rc output: $out"; fail=1; continue
  fi
  for key in ops_per_sec peak_rss_kib final_rss_kib; do
    value=$(grep -o " $key=[^ ]*" <<<"$line" | cut -d= -f2)
    if ! awk -v v="$value" 'BEGIN { exit !(v + 0 > 0) }'; then
      echo "FAIL $name: $key is '$value' in: $line"; fail=1
    fi
  done
  grep -q " workload=$name " <<<"$line" || { echo "FAIL $name: workload field: $line"; fail=1; }
  grep -q " threads=$threads " <<<"$line" || { echo "FAIL $name: threads field: $line"; fail=1; }
  grep -q " malloc_libs=none" <<<"$line" || { echo "FAIL $name: links a malloc library: $line"; fail=1; }
  "$bin" --no-such-option 1 >/dev/null 2>&1
  rc=$?
  [ "$rc" -eq 2 ] || { echo "FAIL $name: bad option gave rc=$rc, want 2"; fail=1; }
  if [ "$name" = producer_consumer ]; then
    "$bin" --ring 1000 >/dev/null 2>&1
    rc=$?
    [ "$rc" -eq 2 ] || { echo "FAIL $name: --ring 1000 gave rc=$rc, want 2"; fail=1; }
    "$bin" --threads 2 --ring 8 --ms 30 | grep -q ' ring=8 ' ||
      { echo "FAIL $name: --ring 8 did not run"; fail=1; }
  fi
  if [ "$name" = large ]; then
    # --replacements: exactly that many replacements per thread, whatever --ms says.
    counted=$("$bin" --threads 2 --replacements 3 --size 256K --ms 1 2>&1 | grep '^result ')
    grep -q ' ops=6 ' <<<"$counted" || { echo "FAIL $name: --replacements 3 x 2 threads: $counted"; fail=1; }
    "$bin" --replacements -1 >/dev/null 2>&1
    rc=$?
    [ "$rc" -eq 2 ] || { echo "FAIL $name: --replacements -1 gave rc=$rc, want 2"; fail=1; }
  fi
  if [ "$name" = server ]; then
    # --steps: that many replacements in all (each thread's share rounded up
    # to its batch of 64), whatever --ms says.
    counted=$("$bin" --threads 2 --steps 200 --live 100 --ms 100000 2>&1 | grep '^result ')
    grep -q ' ops=256 ' <<<"$counted" || { echo "FAIL $name: --steps 200 x 2 threads: $counted"; fail=1; }
    "$bin" --steps -1 >/dev/null 2>&1
    rc=$?
    [ "$rc" -eq 2 ] || { echo "FAIL $name: --steps -1 gave rc=$rc, want 2"; fail=1; }
  fi
  echo "ok $name: $line"
done
exit $fail
