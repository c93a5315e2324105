#!/usr/bin/env bash
# Builds rseqmalloc and installs it into a prefix: the LD_PRELOAD / shared
# library, one self-contained static archive, the header, two pkg-config
# files and the `rseqmalloc` wrapper. Safe to run again over an install.
set -euo pipefail

readonly PROG=install.sh
TOOLS=$(dirname -- "$(readlink -f -- "${BASH_SOURCE[0]}")")
ROOT=$(dirname -- "$TOOLS")
readonly TOOLS ROOT
readonly STATIC_TARGET=//tests/tools:librseqmalloc_static
readonly BUILD_CMD=(bazel build -c opt //:librseqmalloc.so //:rseqmalloc "$STATIC_TARGET")
readonly VERSION=0.1.0

die() {
  echo "$PROG: error: $*" >&2
  exit 2
}

usage() {
  cat <<USAGE
usage: tools/install.sh --prefix DIR [--no-build] [--from DIR_OR_FILE]...

Builds rseqmalloc with '${BUILD_CMD[*]}'
and installs:
  DIR/lib/librseqmalloc.so               shared library (LD_PRELOAD or -lrseqmalloc)
  DIR/lib/librseqmalloc.a                every object of the allocator in one archive
  DIR/include/rseqmalloc.h               the C API
  DIR/lib/pkgconfig/rseqmalloc.pc        link with the shared library
  DIR/lib/pkgconfig/rseqmalloc-static.pc link the archive in (whole-archive)
  DIR/bin/rseqmalloc                     the wrapper ('rseqmalloc run -- COMMAND')
Running it again replaces the files in place.

Options:
  --prefix DIR        where to install (created if missing)
  --no-build          do not run bazel: install files already built
  --from DIR_OR_FILE  with --no-build, where the files are: a folder holding
                      them, or the files themselves (librseqmalloc.so,
                      librseqmalloc.a, rseqmalloc.h, and optionally the
                      rseqmalloc wrapper); may be repeated. Default: the
                      repository's bazel-out/k8-opt/bin outputs
  -h, --help          this help
USAGE
}

prefix=""
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
# pkg-config files need an absolute prefix.
prefix=$(realpath -m -- "$prefix")

# The four files to install: where each one is found.
declare -A src=(
  [librseqmalloc.so]=""
  [librseqmalloc.a]=""
  [rseqmalloc.h]=""
  [rseqmalloc]=""
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
      [[ -v "src[$name]" ]] || die "--from $f: not one of librseqmalloc.so, librseqmalloc.a, rseqmalloc.h, rseqmalloc"
      src[$name]=$f
    else
      die "--from $f: no such file or folder"
    fi
  done
fi
[[ -n "${src[rseqmalloc]}" ]] || src[rseqmalloc]=$TOOLS/rseqmalloc
for name in librseqmalloc.so librseqmalloc.a rseqmalloc.h rseqmalloc; do
  [[ -f "${src[$name]}" ]] ||
    die "$name not found${src[$name]:+ at ${src[$name]}} (build with: ${BUILD_CMD[*]})"
done

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
libdir=\${prefix}/lib
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

mkdir -p "$prefix/bin" "$prefix/lib/pkgconfig" "$prefix/include"
echo "$PROG: installing into $prefix" >&2
put 0755 "${src[librseqmalloc.so]}" "$prefix/lib/librseqmalloc.so"
put 0644 "${src[librseqmalloc.a]}" "$prefix/lib/librseqmalloc.a"
put 0644 "${src[rseqmalloc.h]}" "$prefix/include/rseqmalloc.h"
put 0755 "${src[rseqmalloc]}" "$prefix/bin/rseqmalloc"
# The runpath lets programs find the library in a prefix the loader does not
# search, without LD_LIBRARY_PATH.
write_pc "$prefix/lib/pkgconfig/rseqmalloc.pc" rseqmalloc \
  "rseq-based malloc replacement (shared library)" \
  "-L\${libdir} -Wl,-rpath,\${libdir} -lrseqmalloc"
# One token for the whole-archive group: pkg-config and CMake keep it whole,
# so the archive cannot drift outside --whole-archive. Whole, because the
# malloc/new definitions must be linked even where nothing names them.
write_pc "$prefix/lib/pkgconfig/rseqmalloc-static.pc" rseqmalloc-static \
  "rseq-based malloc replacement (static archive, linked whole)" \
  "-Wl,--whole-archive,\${libdir}/librseqmalloc.a,--no-whole-archive -lstdc++ -lpthread"
echo "$PROG: done" >&2
