#!/usr/bin/env bash
# shellcheck disable=SC2015,SC2016  # "a && b || fail" is meant; $LD_PRELOAD is for the child shell
# tools/install.sh --no-build into a temporary prefix, then what a user does:
# compile C and C++ programs with pkg-config, shared and static, and check
# that their malloc and operator new are rseqmalloc's.
set -uo pipefail

abs() { [[ $1 == /* ]] && echo "$1" || echo "$PWD/$1"; }
INSTALL=$(abs "$1")
WRAPPER=$(abs "$2")
SO=$(abs "$3")
ARCHIVE=$(abs "$4")
HEADER=$(abs "$5")
TMP=${TEST_TMPDIR:-$(mktemp -d)}
P=$TMP/prefix
failures=0

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

command -v pkg-config >/dev/null ||
  { echo "FAIL: pkg-config is not installed (tools/setup.sh)" >&2; exit 1; }

install_it() {
  "$INSTALL" --prefix "$P" --no-build --from "$SO" --from "$ARCHIVE" \
    --from "$HEADER" --from "$WRAPPER" >"$TMP/install.log" 2>&1
}
install_it || { cat "$TMP/install.log" >&2; echo "FAIL: install" >&2; exit 1; }
for f in lib/librseqmalloc.so lib/librseqmalloc.a include/rseqmalloc.h \
  lib/pkgconfig/rseqmalloc.pc lib/pkgconfig/rseqmalloc-static.pc bin/rseqmalloc \
  share/man/man1/rseqmalloc.1; do
  [[ -f "$P/$f" ]] || fail "not installed: $f"
done
[[ -x "$P/bin/rseqmalloc" ]] || fail "wrapper not executable"
cmp -s "$SO" "$P/lib/librseqmalloc.so" || fail "shared library differs from the built one"

# Idempotent: a second run succeeds and leaves the same files.
(cd "$P" && find . -type f | sort | xargs md5sum) >"$TMP/first"
install_it || fail "second install failed: $(cat "$TMP/install.log")"
(cd "$P" && find . -type f | sort | xargs md5sum) >"$TMP/second"
cmp -s "$TMP/first" "$TMP/second" || fail "second install changed the prefix: $(diff "$TMP/first" "$TMP/second")"

export PKG_CONFIG_PATH=$P/lib/pkgconfig
pkg-config --exists rseqmalloc || fail "pkg-config does not find rseqmalloc"
[[ $(pkg-config --variable=prefix rseqmalloc) == "$P" ]] || fail "prefix in .pc"
version=$(sed -n 's/^#define RSEQMALLOC_VERSION "\(.*\)"$/\1/p' "$HEADER")
[[ -n $version && $(pkg-config --modversion rseqmalloc) == "$version" ]] ||
  fail ".pc version $(pkg-config --modversion rseqmalloc), header says '$version'"

# --destdir stages for packaging: files under ROOT, paths in them without it.
"$INSTALL" --prefix /usr --libdir lib/x86_64-linux-gnu --destdir "$TMP/stage" --no-build \
  --from "$SO" --from "$ARCHIVE" --from "$HEADER" --from "$WRAPPER" >"$TMP/stage.log" 2>&1 ||
  fail "--destdir install: $(cat "$TMP/stage.log")"
pc_file=$TMP/stage/usr/lib/x86_64-linux-gnu/pkgconfig/rseqmalloc.pc
grep -qx 'prefix=/usr' "$pc_file" || fail "staged .pc does not say prefix=/usr"
grep -qx 'libdir=${prefix}/lib/x86_64-linux-gnu' "$pc_file" || fail "staged .pc libdir"
grep -q 'rpath' "$pc_file" && fail "a runpath to a folder the loader searches anyway"
[[ -f $TMP/stage/usr/lib/x86_64-linux-gnu/librseqmalloc.so && ! -e $TMP/stage/usr/lib/librseqmalloc.so ]] ||
  fail "--libdir not honoured"
rc=0
"$INSTALL" --prefix usr --destdir "$TMP/stage2" --no-build --from "$SO" >/dev/null 2>"$TMP/err" || rc=$?
[[ $rc -eq 2 ]] && grep -q 'must be absolute' "$TMP/err" || fail "relative prefix with --destdir: $rc"

cat >"$TMP/check.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <rseqmalloc.h>
int main(void) {
  void* p = malloc(100);
  char* s = strdup("inside libc"); /* libc's own call to malloc */
  int ok = rseqmalloc_owns(p) == 1 && rseqmalloc_owns(s) == 1;
  int local = 0;
  ok = ok && rseqmalloc_owns(&local) == 0;
  printf("malloc=%d strdup=%d mode=%s\n", rseqmalloc_owns(p), rseqmalloc_owns(s),
         rseqmalloc_mode());
  free(s);
  free(p);
  return ok ? 0 : 1;
}
C
cat >"$TMP/check.cc" <<'CC'
#include <rseqmalloc.h>
#include <cstdio>
#include <memory>
#include <string>
#include <vector>
int main() {
  auto n = std::make_unique<long>(7);
  std::vector<int> v(1000, 1);
  std::string s(200, 'x');
  void* m = std::malloc(100);
  bool ok = rseqmalloc_owns(n.get()) == 1 && rseqmalloc_owns(v.data()) == 1 &&
            rseqmalloc_owns(s.data()) == 1 && rseqmalloc_owns(m) == 1;
  std::printf("new=%d vector=%d string=%d malloc=%d\n", rseqmalloc_owns(n.get()),
              rseqmalloc_owns(v.data()), rseqmalloc_owns(s.data()), rseqmalloc_owns(m));
  std::free(m);
  return ok ? 0 : 1;
}
CC

# build_and_run NAME COMPILER SOURCE PKG [EXTRA...]
build_and_run() {
  local name=$1 cc=$2 src=$3 pkg=$4
  shift 4
  # shellcheck disable=SC2046  # pkg-config output is meant to be split
  if ! "$cc" "$@" -o "$TMP/$name" "$src" $(pkg-config --cflags --libs "$pkg") 2>"$TMP/$name.log"; then
    fail "$name: compile failed: $(cat "$TMP/$name.log")"
    return
  fi
  # Without LD_LIBRARY_PATH: the shared build must find the library itself.
  if ! env -u LD_LIBRARY_PATH -u LD_PRELOAD "$TMP/$name" >"$TMP/$name.out" 2>&1; then
    fail "$name: not rseqmalloc's: $(cat "$TMP/$name.out")"
  fi
  echo "$name: $(cat "$TMP/$name.out")"
}

build_and_run c_shared gcc "$TMP/check.c" rseqmalloc
build_and_run cc_shared g++ "$TMP/check.cc" rseqmalloc
build_and_run c_static gcc "$TMP/check.c" rseqmalloc-static
build_and_run cc_static g++ "$TMP/check.cc" rseqmalloc-static

# The shared builds load the installed library; the static ones none.
for name in c_shared cc_shared; do
  # Not `ldd | grep -q`: under pipefail, grep's early exit can kill ldd with
  # SIGPIPE and fail the pipeline although the line was found.
  deps=$(ldd "$TMP/$name")
  grep -qF "librseqmalloc.so => $P/lib/librseqmalloc.so" <<<"$deps" ||
    fail "$name does not load $P/lib/librseqmalloc.so: $(ldd "$TMP/$name")"
done
for name in c_static cc_static; do
  dynamic=$(readelf -d "$TMP/$name")
  ! grep -q librseqmalloc <<<"$dynamic" || fail "$name needs librseqmalloc.so"
done

# The installed wrapper preloads the installed library.
got=$(env -u LD_PRELOAD "$P/bin/rseqmalloc" run -- sh -c 'echo "$LD_PRELOAD"')
[[ "$got" == "$P/lib/librseqmalloc.so" ]] || fail "installed wrapper preloads '$got'"

# Errors: exit 2 and one line.
rc=0
"$INSTALL" --no-build >/dev/null 2>"$TMP/err" || rc=$?
[[ $rc -eq 2 ]] && grep -q 'missing --prefix' "$TMP/err" ||
  fail "no prefix: exit $rc, $(cat "$TMP/err")"
rc=0
"$INSTALL" --prefix "$TMP/p2" --no-build --from "$TMP/nothing" >/dev/null 2>"$TMP/err" || rc=$?
[[ $rc -eq 2 ]] && grep -q 'no such file' "$TMP/err" ||
  fail "bad --from: exit $rc, $(cat "$TMP/err")"
out=$("$INSTALL" --help) && grep -q -- '--prefix DIR' <<<"$out" || fail "--help"

if ((failures)); then
  echo "$failures check(s) failed" >&2
  exit 1
fi
echo "PASS"
