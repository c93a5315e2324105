#!/usr/bin/env bash
# librseqmalloc.so exports exactly the allocation API: every C function,
# every glibc-internal alias, rseqmalloc's own API, all 20 forms of
# operator new / delete (a version-script mistake once left the operators
# local, so C++ programs silently used libstdc++'s), and vfork / clone
# (children that share the caller's TLS are marked: shared_tls_child.h).
set -euo pipefail
lib="$1"
exported=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TWi]$/ {print $3}' | sort)
expected=$(sort <<'EOS'
malloc
free
calloc
realloc
reallocarray
memalign
aligned_alloc
posix_memalign
valloc
pvalloc
malloc_usable_size
free_sized
free_aligned_sized
cfree
mallinfo
mallinfo2
malloc_trim
malloc_stats
malloc_info
mallopt
__libc_malloc
__libc_free
__libc_calloc
__libc_realloc
__libc_memalign
__libc_valloc
__libc_pvalloc
__posix_memalign
rseqmalloc_mode
rseqmalloc_owns
rseqmalloc_stats_print
rseqmalloc_get_stats
rseqmalloc_get_release_stats
rseqmalloc_version
vfork
clone
_Znwm
_Znam
_ZnwmRKSt9nothrow_t
_ZnamRKSt9nothrow_t
_ZnwmSt11align_val_t
_ZnamSt11align_val_t
_ZnwmSt11align_val_tRKSt9nothrow_t
_ZnamSt11align_val_tRKSt9nothrow_t
_ZdlPv
_ZdaPv
_ZdlPvRKSt9nothrow_t
_ZdaPvRKSt9nothrow_t
_ZdlPvSt11align_val_t
_ZdaPvSt11align_val_t
_ZdlPvSt11align_val_tRKSt9nothrow_t
_ZdaPvSt11align_val_tRKSt9nothrow_t
_ZdlPvm
_ZdaPvm
_ZdlPvmSt11align_val_t
_ZdaPvmSt11align_val_t
EOS
)
if [ "$exported" != "$expected" ]; then
  echo "FAIL: exported symbols differ (< exported, > expected):"
  diff <(echo "$exported") <(echo "$expected") || true
  exit 1
fi
echo "PASS: $(wc -l <<<"$exported") symbols"
