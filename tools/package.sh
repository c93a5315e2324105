#!/usr/bin/env bash
# Builds the Debian package rseqmalloc_<version>_<arch>.deb: the shared and
# static libraries, the header, the pkg-config files, the `rseqmalloc`
# wrapper and its man page (all staged by tools/install.sh under /usr), and
# the documents under /usr/share/doc/rseqmalloc. The version is the
# header's RSEQMALLOC_VERSION, which rseqmalloc_version() returns.
set -euo pipefail

readonly PROG=package.sh
TOOLS=$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")
ROOT=$(dirname -- "$TOOLS")
readonly TOOLS ROOT
readonly NAME=rseqmalloc

die() {
  echo "$PROG: error: $*" >&2
  exit 2
}

usage() {
  cat <<USAGE
usage: tools/package.sh [--out DIR] [--no-build [--from DIR_OR_FILE]...]

Builds rseqmalloc (through tools/install.sh, which runs bazel) and makes
DIR/${NAME}_VERSION_ARCH.deb with dpkg-deb. Install it with
'apt install ./${NAME}_VERSION_ARCH.deb' (or dpkg -i).

Options:
  --out DIR           where to write the package (default: the current folder)
  --no-build          package files already built, as tools/install.sh does
  --from DIR_OR_FILE  with --no-build: where they are (see tools/install.sh --help)
  -h, --help          this help
USAGE
}

out=.
declare -a install_args=()
while (($#)); do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --out) [[ $# -ge 2 && -n "${2:-}" ]] || die "--out needs a folder"
      out=$2; shift ;;
    --out=*) out=${1#--out=} ;;
    --no-build) install_args+=(--no-build) ;;
    --from) (($# >= 2)) || die "--from needs a folder or file"
      install_args+=(--from "$2"); shift ;;
    --from=*) install_args+=(--from "${1#--from=}") ;;
    *) die "unknown argument '$1' (see tools/package.sh --help)" ;;
  esac
  shift
done
for tool in dpkg-deb dpkg-shlibdeps strip gzip; do
  command -v "$tool" >/dev/null || die "$tool not found (tools/setup.sh installs dpkg-dev and binutils)"
done
mkdir -p -- "$out"
out=$(realpath -- "$out")

ARCH=$(dpkg --print-architecture)
MULTIARCH=$(uname -m)-linux-gnu
readonly ARCH MULTIARCH
work=$(mktemp -d "${TMPDIR:-/tmp}/rseqmalloc-package.XXXXXX")
trap 'rm -rf -- "$work"' EXIT
chmod 0755 "$work"
pkg=$work/root

echo "$PROG: staging with tools/install.sh" >&2
"$TOOLS/install.sh" --prefix /usr --libdir "lib/$MULTIARCH" --destdir "$pkg" \
  "${install_args[@]}" >"$work/install.log" 2>&1 ||
  { cat "$work/install.log" >&2; die "tools/install.sh failed"; }
lib=$pkg/usr/lib/$MULTIARCH
VERSION=$(sed -n 's/^#define RSEQMALLOC_VERSION "\([^"]*\)".*/\1/p' "$pkg/usr/include/rseqmalloc.h")
[[ "$VERSION" =~ ^[0-9]+(\.[0-9]+)*$ ]] || die "bad RSEQMALLOC_VERSION '$VERSION' in rseqmalloc.h"
readonly VERSION

# Debug information stays out of the package (Bazel builds with -g);
# symbol tables stay in, so backtraces still name functions.
strip --strip-debug "$lib/librseqmalloc.so" "$lib/librseqmalloc.a"
gzip -9n "$pkg/usr/share/man/man1/rseqmalloc.1"  # Debian policy: compressed, no timestamp

doc=$pkg/usr/share/doc/$NAME
mkdir -p "$doc"
for f in "$ROOT/README.md" "$ROOT/CHANGELOG.md" "$ROOT"/docs/*.md "$ROOT"/docs/*.png; do
  [[ -f "$f" ]] || die "missing document $f"
  install -m 0644 "$f" "$doc/"
done
cat >"$doc/copyright" <<COPYRIGHT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: rseqmalloc
Comment: Built from the rseqmalloc repository by tools/package.sh.
 The repository carries no license file yet: no license is granted by this
 package beyond what its authors state elsewhere.

Files: *
Copyright: the rseqmalloc authors
License: none-stated
 The repository states no license.
COPYRIGHT

# Dependencies from the library's own needs (ELF NEEDED entries and symbol
# versions), as Debian's own packages get them. dpkg-shlibdeps wants a
# debian/control to stand in a source tree.
mkdir -p "$work/src/debian"
printf 'Source: %s\n\nPackage: %s\nArchitecture: any\n' "$NAME" "$NAME" >"$work/src/debian/control"
depends=$(cd "$work/src" && dpkg-shlibdeps -O "$lib/librseqmalloc.so" 2>"$work/shlibdeps.log" |
  sed -n 's/^shlibs:Depends=//p') || { cat "$work/shlibdeps.log" >&2; die "dpkg-shlibdeps failed"; }
[[ -n "$depends" ]] || die "dpkg-shlibdeps found no dependencies"

find "$pkg" -type d -exec chmod 0755 {} +
mkdir -m 0755 "$pkg/DEBIAN"
size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
cat >"$pkg/DEBIAN/control" <<CONTROL
Package: $NAME
Version: $VERSION
Architecture: $ARCH
Maintainer: rseqmalloc developers <rseqmalloc@localhost>
Installed-Size: $size
Depends: $depends
Suggests: pkg-config
Section: libs
Priority: optional
Description: malloc replacement with per-CPU caches on restartable sequences
 rseqmalloc replaces malloc, free and every C++ operator new and delete.
 Its caches are per CPU (or per memory-map concurrency id) and protected by
 restartable sequences (rseq) rather than per thread, with per-thread caches
 as the fallback where rseq is unavailable.
 .
 Use it without recompiling: 'rseqmalloc run -- COMMAND' preloads
 librseqmalloc.so (LD_PRELOAD). Or link it: pkg-config modules rseqmalloc
 (shared) and rseqmalloc-static (archive). The header rseqmalloc.h declares
 its statistics and introspection API.
CONTROL
# The loader's cache learns of the new library, as for any library package.
echo "activate-noawait ldconfig" >"$pkg/DEBIAN/triggers"
(cd "$pkg" && find usr -type f -print0 | sort -z | xargs -0 md5sum) >"$pkg/DEBIAN/md5sums"
chmod 0644 "$pkg/DEBIAN/control" "$pkg/DEBIAN/triggers" "$pkg/DEBIAN/md5sums"

deb=$out/${NAME}_${VERSION}_${ARCH}.deb
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >"$work/dpkg-deb.log" 2>&1 ||
  { cat "$work/dpkg-deb.log" >&2; die "dpkg-deb failed"; }
echo "$PROG: wrote $deb" >&2
echo "$deb"
