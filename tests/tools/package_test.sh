#!/usr/bin/env bash
# shellcheck disable=SC2015,SC2016  # "a && b || fail" is meant; $LD_PRELOAD is for the child shell
# tools/package.sh --no-build from the built files, then what a user does
# with the package, in a scratch root instead of /: its name, control
# fields and contents; dpkg-deb -x; the wrapper from there preloads the
# packaged library (--stats shows its report, --version its version); C
# programs built with pkg-config from there, shared and static, use it and
# report the package's version through rseqmalloc_version().
set -uo pipefail

abs() { [[ $1 == /* ]] && echo "$1" || echo "$PWD/$1"; }
PACKAGE=$(abs "$1")
SO=$(abs "$2")
ARCHIVE=$(abs "$3")
HEADER=$(abs "$4")
WRAPPER=$(abs "$5")
MANPAGE=$(abs "$6")
TMP=${TEST_TMPDIR:-$(mktemp -d)}
failures=0

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

for tool in dpkg-deb pkg-config gcc; do
  command -v "$tool" >/dev/null || { echo "FAIL: $tool is not installed (tools/setup.sh)" >&2; exit 1; }
done

VERSION=$(sed -n 's/^#define RSEQMALLOC_VERSION "\(.*\)"$/\1/p' "$HEADER")
ARCH=$(dpkg --print-architecture)
MA=$(uname -m)-linux-gnu
[[ -n $VERSION ]] || { echo "FAIL: no version in $HEADER" >&2; exit 1; }

mkdir -p "$TMP/out" "$TMP/tmp"
deb=$(TMPDIR=$TMP/tmp "$PACKAGE" --out "$TMP/out" --no-build --from "$SO" --from "$ARCHIVE" \
  --from "$HEADER" --from "$WRAPPER" --from "$MANPAGE" 2>"$TMP/package.log") ||
  { cat "$TMP/package.log" >&2; echo "FAIL: package.sh" >&2; exit 1; }
[[ $deb == "$TMP/out/rseqmalloc_${VERSION}_${ARCH}.deb" && -f $deb ]] ||
  fail "package is '$deb', expected $TMP/out/rseqmalloc_${VERSION}_${ARCH}.deb"
[[ -z $(ls -A "$TMP/tmp") ]] || fail "package.sh left $(ls -A "$TMP/tmp")"

# Control fields.
field() { dpkg-deb -f "$deb" "$1"; }
[[ $(field Package) == rseqmalloc ]] || fail "Package: $(field Package)"
[[ $(field Version) == "$VERSION" ]] || fail "Version: $(field Version), header says $VERSION"
[[ $(field Architecture) == "$ARCH" ]] || fail "Architecture: $(field Architecture)"
grep -q 'libc6 (>= ' <<<"$(field Depends)" || fail "Depends: $(field Depends)"
[[ $(field Installed-Size) -gt 0 ]] || fail "Installed-Size: $(field Installed-Size)"
[[ -n $(field Description) ]] || fail "no Description"

# Contents: every expected file, owned by root.
dpkg-deb -c "$deb" >"$TMP/contents"
for f in usr/lib/$MA/librseqmalloc.so usr/lib/$MA/librseqmalloc.a usr/include/rseqmalloc.h \
  usr/lib/$MA/pkgconfig/rseqmalloc.pc usr/lib/$MA/pkgconfig/rseqmalloc-static.pc \
  usr/bin/rseqmalloc usr/share/man/man1/rseqmalloc.1.gz usr/share/doc/rseqmalloc/copyright \
  usr/share/doc/rseqmalloc/README.md usr/share/doc/rseqmalloc/CHANGELOG.md \
  usr/share/doc/rseqmalloc/install.md usr/share/doc/rseqmalloc/benchmarks.md \
  usr/share/doc/rseqmalloc/configuration.md; do
  grep -q " \./$f\$" "$TMP/contents" || fail "not in the package: $f"
done
grep -v ' root/root ' "$TMP/contents" && fail "files not owned by root/root"
grep -q "^-rwxr-xr-x .* \./usr/bin/rseqmalloc\$" "$TMP/contents" || fail "wrapper not executable"

# Extract into a scratch root, as dpkg would unpack into /.
ROOT=$TMP/root
dpkg-deb -x "$deb" "$ROOT" || fail "dpkg-deb -x"
dpkg-deb -e "$deb" "$TMP/control"
(cd "$ROOT" && md5sum --quiet -c "$TMP/control/md5sums") || fail "md5sums do not match the files"
grep -qx "activate-noawait ldconfig" "$TMP/control/triggers" || fail "no ldconfig trigger"
readelf -S "$ROOT/usr/lib/$MA/librseqmalloc.so" | grep -q '\.debug_info' &&
  fail "the packaged library still has debug information"
gzip -dc "$ROOT/usr/share/man/man1/rseqmalloc.1.gz" | grep -q '^\.TH RSEQMALLOC 1 ' ||
  fail "the man page is not a section 1 manual"

# The wrapper from the scratch root: its library, its version, a report.
[[ $("$ROOT/usr/bin/rseqmalloc" --version) == "rseqmalloc $VERSION" ]] ||
  fail "--version: $("$ROOT/usr/bin/rseqmalloc" --version 2>&1)"
got=$(env -u LD_PRELOAD "$ROOT/usr/bin/rseqmalloc" run -- sh -c 'echo "$LD_PRELOAD"')
[[ $got == "$ROOT/usr/lib/$MA/librseqmalloc.so" ]] || fail "packaged wrapper preloads '$got'"
"$ROOT/usr/bin/rseqmalloc" run --stats -- ls / >"$TMP/ls.out" 2>"$TMP/ls.err" ||
  fail "rseqmalloc run --stats -- ls / failed: $(cat "$TMP/ls.err")"
grep -qx bin "$TMP/ls.out" || fail "ls printed the wrong thing"
grep -q '^rseqmalloc statistics: pid [0-9]*, mode ' "$TMP/ls.err" ||
  fail "no report from the packaged library: $(head -3 "$TMP/ls.err")"

# pkg-config from the scratch root: the .pc files say prefix=/usr (the
# installed place), so point that prefix at the root, as for any package
# unpacked elsewhere.
export PKG_CONFIG_LIBDIR=$ROOT/usr/lib/$MA/pkgconfig
pc() { pkg-config --define-variable=prefix="$ROOT/usr" "$@"; }
[[ $(pkg-config --modversion rseqmalloc) == "$VERSION" ]] || fail "pkg-config version"
[[ $(pkg-config --variable=prefix rseqmalloc) == /usr ]] || fail ".pc prefix is not /usr"
cat >"$TMP/check.c" <<'C'
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <rseqmalloc.h>
int main(void) {
  char* p = malloc(100);
  int ok = rseqmalloc_owns(p) == 1 && strcmp(rseqmalloc_version(), RSEQMALLOC_VERSION) == 0;
  printf("version=%s mode=%s owns=%d\n", rseqmalloc_version(), rseqmalloc_mode(),
         rseqmalloc_owns(p));
  free(p);
  return ok ? 0 : 1;
}
C
for module in rseqmalloc rseqmalloc-static; do
  # shellcheck disable=SC2046  # pkg-config output is meant to be split
  if ! gcc -o "$TMP/$module" "$TMP/check.c" $(pc --cflags --libs "$module") 2>"$TMP/$module.log"; then
    fail "$module: compile failed: $(cat "$TMP/$module.log")"
    continue
  fi
  # The shared build finds the library in the root, as it would in /usr.
  if ! LD_LIBRARY_PATH=$ROOT/usr/lib/$MA "$TMP/$module" >"$TMP/$module.out" 2>&1; then
    fail "$module: not rseqmalloc's: $(cat "$TMP/$module.out")"
  fi
  grep -qx "version=$VERSION mode=[a-z]* owns=1" "$TMP/$module.out" ||
    fail "$module: printed $(cat "$TMP/$module.out")"
  echo "$module: $(cat "$TMP/$module.out")"
done
deps=$(LD_LIBRARY_PATH=$ROOT/usr/lib/$MA ldd "$TMP/rseqmalloc")
grep -qF "librseqmalloc.so => $ROOT/usr/lib/$MA/librseqmalloc.so" <<<"$deps" ||
  fail "the shared build does not load the packaged library: $deps"
dynamic=$(readelf -d "$TMP/rseqmalloc-static")
grep -q librseqmalloc <<<"$dynamic" && fail "the static build needs librseqmalloc.so"
grep -q RUNPATH <<<"$(readelf -d "$TMP/rseqmalloc")" &&
  fail "a runpath to /usr/lib/$MA from the package's .pc file"

# Errors: exit 2 and one line.
rc=0
"$PACKAGE" --bogus >/dev/null 2>"$TMP/err" || rc=$?
[[ $rc -eq 2 && $(wc -l <"$TMP/err") -eq 1 ]] && grep -q "unknown argument '--bogus'" "$TMP/err" ||
  fail "bad option: exit $rc, $(cat "$TMP/err")"
out=$("$PACKAGE" --help) && grep -q "apt install ./rseqmalloc_VERSION_ARCH.deb" <<<"$out" ||
  fail "--help"

if ((failures)); then
  echo "$failures check(s) failed" >&2
  exit 1
fi
echo "PASS"
