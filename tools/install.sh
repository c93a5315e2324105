#!/usr/bin/env bash
# Builds rseqmalloc and installs it into a prefix: the LD_PRELOAD / shared
# library, one self-contained static archive, the header, two pkg-config
# files, the `rseqmalloc` wrapper and its man page. Safe to run again over
# an install. tools/package.sh stages the Debian package with it
# (--destdir, --libdir).
set -euo pipefail

readonly PROG=install.sh
TOOLS=$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")
ROOT=$(dirname -- "$TOOLS")
readonly TOOLS ROOT
readonly STATIC_TARGET=//tests/tools:librseqmalloc_static
readonly BUILD_CMD=(bazel build -c opt //:librseqmalloc.so //:rseqmalloc "$STATIC_TARGET")

die() {
  echo "$PROG: error: $*" >&2
  exit 2
}

usage() {
  cat <<USAGE
usage: tools/install.sh --prefix DIR [--libdir SUBDIR] [--destdir ROOT]
                       [--no-build [--from DIR_OR_FILE]...]

Builds rseqmalloc with '${BUILD_CMD[*]}'
and installs:
  DIR/lib/librseqmalloc.so               shared library (LD_PRELOAD or -lrseqmalloc)
  DIR/lib/librseqmalloc.a                every object of the allocator in one archive
  DIR/include/rseqmalloc.h               the C API
  DIR/lib/pkgconfig/rseqmalloc.pc        link with the shared library
  DIR/lib/pkgconfig/rseqmalloc-static.pc link the archive in (whole-archive)
  DIR/bin/rseqmalloc                     the wrapper ('rseqmalloc run -- COMMAND')
  DIR/share/man/man1/rseqmalloc.1        the wrapper's manual
Running it again replaces the files in place. The version in the pkg-config
files is the header's RSEQMALLOC_VERSION.

Options:
  --prefix DIR        where to install (created if missing)
  --libdir SUBDIR     the library folder under DIR (default: lib; the Debian
                      package uses lib/x86_64-linux-gnu)
  --destdir ROOT      stage the files under ROOT (ROOT/DIR/...) while every
                      path written into them says DIR: for packaging
  --no-build          do not run bazel: install files already built
  --from DIR_OR_FILE  with --no-build, where the files are: a folder holding
                      them, or the files themselves (librseqmalloc.so,
                      librseqmalloc.a, rseqmalloc.h, and optionally the
                      rseqmalloc wrapper and rseqmalloc.1); may be repeated.
                      Default: the repository's bazel-out/k8-opt/bin outputs
  -h, --help          this help
USAGE
}

prefix=""
libdir=lib
destdir=""
build=1
declare -a from=()
while (($#)); do
  case "$1" in
    -h | --help) usage; exit 0 ;;
    --prefix)
      if (($# < 2)) || [[ -z "$2" ]]; then
        die "--prefix needs a folder (usage: tools/install.sh --prefix DIR)"
      fi
      prefix=$2; shift ;;
    --prefix=*) prefix=${1#--prefix=}
      [[ -n "$prefix" ]] || die "--prefix needs a folder" ;;
    --libdir) [[ $# -ge 2 && -n "${2:-}" ]] || die "--libdir needs a folder under the prefix"
      libdir=$2; shift ;;
    --libdir=*) libdir=${1#--libdir=} ;;
    --destdir) [[ $# -ge 2 && -n "${2:-}" ]] || die "--destdir needs a folder"
      destdir=$2; shift ;;
    --destdir=*) destdir=${1#--destdir=} ;;
    --no-build) build=0 ;;
    --from) (($# >= 2)) || die "--from needs a folder or file"
      from+=("$2"); shift ;;
    --from=*) from+=("${1#--from=}") ;;
    *) die "unknown argument '$1' (see tools/install.sh --help)" ;;
  esac
  shift
done
[[ -n "$prefix" ]] || die "missing --prefix DIR (see tools/install.sh --help)"
((${#from[@]} == 0 || !build)) || die "--from only goes with --no-build"
[[ -n "$libdir" && "$libdir" != /* && "$libdir" != *..* ]] ||
  die "--libdir wants a folder under the prefix, such as lib or lib/x86_64-linux-gnu"
if [[ -n "$destdir" ]]; then
  # The prefix names the final place, on another machine perhaps: as given.
  [[ "$prefix" == /* ]] || die "--prefix must be absolute with --destdir"
  destdir=$(realpath -m -- "$destdir")
else
  # pkg-config files need an absolute prefix.
  prefix=$(realpath -m -- "$prefix")
fi
readonly stage="$destdir$prefix"  # where the files are written

# The files to install: where each one is found.
declare -A src=(
  [librseqmalloc.so]=""
  [librseqmalloc.a]=""
  [rseqmalloc.h]=""
  [rseqmalloc]=""
  [rseqmalloc.1]=""
)

if ((build)); then
  [[ -f "$ROOT/WORKSPACE" ]] || die "no repository at $ROOT to build in (use --no-build --from ...)"
  command -v bazel >/dev/null || die "bazel not found (run tools/setup.sh, or use --no-build --from ...)"
  echo "$PROG: ${BUILD_CMD[*]}" >&2
  (cd "$ROOT" && "${BUILD_CMD[@]}") || die "build failed"
fi

if ((${#from[@]} == 0)); then
  # The opt outputs, read through bazel-out: bazel-bin may point at another
  # configuration.
  out="$ROOT/bazel-out/k8-opt/bin"
  src[librseqmalloc.so]=$out/librseqmalloc.so
  src[librseqmalloc.a]=$out/tests/tools/librseqmalloc.a
  src[rseqmalloc.h]=$ROOT/allocator/api/rseqmalloc.h
else
  for f in "${from[@]}"; do
    if [[ -d "$f" ]]; then
      for name in "${!src[@]}"; do
        [[ -f "$f/$name" ]] && src[$name]=$f/$name
      done
    elif [[ -f "$f" ]]; then
      name=$(basename -- "$f")
      [[ -v "src[$name]" ]] || die "--from $f: not one of librseqmalloc.so, librseqmalloc.a, rseqmalloc.h, rseqmalloc, rseqmalloc.1"
      src[$name]=$f
    else
      die "--from $f: no such file or folder"
    fi
  done
fi
[[ -n "${src[rseqmalloc]}" ]] || src[rseqmalloc]=$TOOLS/rseqmalloc
[[ -n "${src[rseqmalloc.1]}" ]] || src[rseqmalloc.1]=$TOOLS/rseqmalloc.1
for name in librseqmalloc.so librseqmalloc.a rseqmalloc.h rseqmalloc rseqmalloc.1; do
  [[ -f "${src[$name]}" ]] ||
    die "$name not found${src[$name]:+ at ${src[$name]}} (build with: ${BUILD_CMD[*]})"
done
VERSION=$(sed -n 's/^#define RSEQMALLOC_VERSION "\([^"]*\)".*/\1/p' "${src[rseqmalloc.h]}")
[[ -n "$VERSION" ]] || die "no RSEQMALLOC_VERSION in ${src[rseqmalloc.h]}"
readonly VERSION

# Copies to a temporary name, then renames: a program running from the
# prefix keeps its old mapping, and a failed copy leaves the old file.
put() {  # put MODE SOURCE DEST
  local tmp
  tmp=$(mktemp "$3.XXXXXX")
  cp -- "$2" "$tmp"
  chmod "$1" "$tmp"
  mv -f -- "$tmp" "$3"
  echo "  $3"
}

write_pc() {  # write_pc FILE NAME DESCRIPTION LIBS
  local tmp
  tmp=$(mktemp "$1.XXXXXX")
  cat >"$tmp" <<PC
prefix=$prefix
libdir=\${prefix}/$libdir
includedir=\${prefix}/include

Name: $2
Description: $3
Version: $VERSION
Cflags: -I\${includedir}
Libs: $4
PC
  chmod 0644 "$tmp"
  mv -f -- "$tmp" "$1"
  echo "  $1"
}

# The loader searches these itself; a runpath to them would only be noise
# in every program linked through the .pc file.
case "$prefix/$libdir" in
  /lib | /usr/lib | /lib/*-linux-gnu | /usr/lib/*-linux-gnu) rpath="" ;;
  *) rpath=" -Wl,-rpath,\${libdir}" ;;
esac

mkdir -p "$stage/bin" "$stage/$libdir/pkgconfig" "$stage/include" "$stage/share/man/man1"
echo "$PROG: installing into $stage" >&2
put 0755 "${src[librseqmalloc.so]}" "$stage/$libdir/librseqmalloc.so"
put 0644 "${src[librseqmalloc.a]}" "$stage/$libdir/librseqmalloc.a"
put 0644 "${src[rseqmalloc.h]}" "$stage/include/rseqmalloc.h"
put 0755 "${src[rseqmalloc]}" "$stage/bin/rseqmalloc"
put 0644 "${src[rseqmalloc.1]}" "$stage/share/man/man1/rseqmalloc.1"
# The runpath lets programs find the library in a prefix the loader does not
# search, without LD_LIBRARY_PATH.
write_pc "$stage/$libdir/pkgconfig/rseqmalloc.pc" rseqmalloc \
  "rseq-based malloc replacement (shared library)" \
  "-L\${libdir}$rpath -lrseqmalloc"
# One token for the whole-archive group: pkg-config and CMake keep it whole,
# so the archive cannot drift outside --whole-archive. Whole, because the
# malloc/new definitions must be linked even where nothing names them.
write_pc "$stage/$libdir/pkgconfig/rseqmalloc-static.pc" rseqmalloc-static \
  "rseq-based malloc replacement (static archive, linked whole)" \
  "-Wl,--whole-archive,\${libdir}/librseqmalloc.a,--no-whole-archive -lstdc++ -lpthread"
echo "$PROG: done" >&2
