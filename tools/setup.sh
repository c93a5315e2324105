#!/usr/bin/env bash
# Installs every Debian package that building, testing and benchmarking
# rseqmalloc needs. Idempotent: runs `apt-get update` only when something is
# missing, and installs only what is missing.
set -euo pipefail

PACKAGES=(
  # build
  bazel-bootstrap bazel-rules-java g++ clang libclang-rt-14-dev pkg-config
  # third-party C++ libraries used by tests and benchmarks
  googletest libgtest-dev libgmock-dev libbenchmark-dev
  # peer allocators for the comparison
  libjemalloc-dev libgoogle-perftools-dev libmimalloc-dev
  # real programs run under the allocator, charts, the fallback-path checker
  python3 libpython3.11-testsuite git sqlite3 perl gawk redis-server redis-tools valgrind
  gnuplot-nox
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}" >&2
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
