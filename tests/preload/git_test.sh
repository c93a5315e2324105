#!/usr/bin/env bash
# git under the preload (every git subprocess inherits it): init, commit 500
# files in 5 commits, gc, fsck. With fixed dates and identities the commit
# hashes are deterministic, so they must equal those of a plain run.
source "$(dirname "$0")/preload_lib.sh"

export GIT_AUTHOR_NAME=t GIT_AUTHOR_EMAIL=t@example.com
export GIT_COMMITTER_NAME=t GIT_COMMITTER_EMAIL=t@example.com
export GIT_AUTHOR_DATE="2024-01-01T00:00:00Z" GIT_COMMITTER_DATE="2024-01-01T00:00:00Z"
export GIT_CONFIG_NOSYSTEM=1 HOME="$WORK"

# make_repo DIR PREFIX...: the whole scenario, each git command run as
# PREFIX git; only stdout is compared (the preloaded stderr has the marker).
make_repo() {
  set -euo pipefail
  local dir="$1"
  shift
  mkdir -p "$dir"
  "$@" git -C "$dir" init -q -b main
  for c in 0 1 2 3 4; do
    awk -v c="$c" -v dir="$dir" 'BEGIN {
      for (i = c * 100; i < c * 100 + 100; i++) {
        d = dir "/d" (i % 10); system("mkdir -p " d); f = d "/f" i ".txt"
        for (l = i; l <= i + 300; l++) print "file " i " line " l > f
        close(f) } }'
    "$@" git -C "$dir" add -A
    "$@" git -C "$dir" commit -q -m "commit $c"
  done
  "$@" git -C "$dir" gc -q
  "$@" git -C "$dir" fsck --full --strict --no-progress
  "$@" git -C "$dir" log --format='%H %s'
  "$@" git -C "$dir" count-objects -v | grep -E '^(count|in-pack|packs)'
}

make_repo "$WORK/plain" >"$WORK/expected.txt"
# All git processes share one stderr file: each must print the marker.
preloaded "$WORK/err.txt" bash -c "$(declare -f make_repo); make_repo '$WORK/pre'" \
  >"$WORK/actual.txt"
expect_loaded "$WORK/err.txt"
same_output "$WORK/expected.txt" "$WORK/actual.txt" "git"
[ "$(grep -c 'commit [0-4]' "$WORK/actual.txt")" -eq 5 ] || fail "missing commits"
echo PASS
