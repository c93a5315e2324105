#!/usr/bin/env bash
# Installs every Debian package that building, testing, benchmarking and
# packaging rseqmalloc needs. Idempotent: runs `apt-get update` only when
# something is missing, and installs only what is missing.
#
# Quiet by design: one line per step on stderr, nothing on stdout (so
# `tools/compare > out.md` captures only the report); apt's own output goes
# to a log file, SETUP_LOG (default ${TMPDIR:-/tmp}/rseqmalloc-setup.log),
# whose last lines are shown if a step fails. When another apt or dpkg
# holds the lock (unattended-upgrades on a fresh VM), it waits up to
# SETUP_LOCK_TIMEOUT seconds (default 600) instead of failing.
set -euo pipefail

PACKAGES=(
  # build, and the Debian package (dpkg-shlibdeps; strip is binutils')
  bazel-bootstrap bazel-rules-java g++ clang libclang-rt-14-dev pkg-config dpkg-dev binutils
  # third-party C++ libraries used by tests and benchmarks
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  # peer allocators for the comparison
  libjemalloc-dev libgoogle-perftools-dev libmimalloc-dev
  # real programs run under the allocator (tests and tools/compare --programs),
  # GNU time for their peak RSS, charts, the fallback-path checker
  python3 libpython3.11-testsuite git sqlite3 perl gawk redis-server redis-tools make time
  valgrind gnuplot-nox
)

LOG=${SETUP_LOG:-${TMPDIR:-/tmp}/rseqmalloc-setup.log}
LOCK_TIMEOUT=${SETUP_LOCK_TIMEOUT:-600}

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
((${#missing[@]})) || exit 0

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive

# apt_step WHAT APT-GET-ARGS...: one line, then apt-get with its output in
# the log. DPkg::Lock::Timeout makes apt-get wait for the dpkg lock; the
# loop also covers the package lists' lock, which `update` takes and that
# option does not wait for.
apt_step() {
  local what=$1 waited=0 start=$SECONDS
  shift
  echo "setup: $what (log: $LOG)" >&2
  while :; do
    echo "\$ apt-get $*" >>"$LOG"
    if $SUDO apt-get -o "DPkg::Lock::Timeout=$LOCK_TIMEOUT" "$@" >>"$LOG" 2>&1 </dev/null; then
      return 0
    fi
    if tail -n 3 "$LOG" | grep -qE 'Could not get lock|Unable to lock|Unable to acquire' &&
      ((SECONDS - start < LOCK_TIMEOUT)); then
      ((waited)) || echo "setup: waiting for another apt or dpkg to release its lock" >&2
      waited=1
      sleep 5
      continue
    fi
    echo "setup: error: '$what' failed; the end of $LOG:" >&2
    tail -n 15 "$LOG" >&2
    exit 1
  done
}

: >"$LOG"
echo "setup: missing ${missing[*]}" >&2
apt_step "apt-get update" update -q
apt_step "installing ${#missing[@]} packages" install -y -q --no-install-recommends "${missing[@]}"
echo "setup: done" >&2
