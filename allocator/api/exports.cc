// Every exported C entry point, in one list. No logic here: each symbol
// forwards to the front end (allocator/frontend/) or to the glibc semantics
// (libc_semantics.h), and the glibc-internal names are aliases of ours, so
// glibc's own calls (strdup, fopen, getline, ...) land on us too.
#include <malloc.h>

#include <cerrno>
#include <cstdarg>
#include <cstddef>

#include "allocator/api/introspection.h"
#include "allocator/api/libc_semantics.h"
#include "allocator/frontend/frontend.h"
#include "allocator/frontend/shared_tls_child.h"

#define RSEQMALLOC_EXPORT __attribute__((visibility("default"), used))
#define RSEQMALLOC_ALIAS(name) __attribute__((alias(#name), visibility("default"), used))

namespace in = rseqmalloc::internal;

extern "C" {

RSEQMALLOC_EXPORT void* malloc(size_t size) noexcept { return in::Allocate(size); }
RSEQMALLOC_EXPORT void free(void* p) noexcept { in::Free(p); }
RSEQMALLOC_EXPORT void* calloc(size_t n, size_t size) noexcept { return in::Calloc(n, size); }
RSEQMALLOC_EXPORT void* realloc(void* p, size_t size) noexcept { return in::Realloc(p, size); }
RSEQMALLOC_EXPORT void* reallocarray(void* p, size_t n, size_t size) noexcept {
  return in::ReallocArray(p, n, size);
}
RSEQMALLOC_EXPORT void* memalign(size_t align, size_t size) noexcept {
  return in::Memalign(align, size);
}
RSEQMALLOC_EXPORT void* aligned_alloc(size_t align, size_t size) noexcept {
  return in::AlignedAlloc(align, size);
}
RSEQMALLOC_EXPORT int posix_memalign(void** out, size_t align, size_t size) noexcept {
  return in::PosixMemalign(out, align, size);
}
RSEQMALLOC_EXPORT void* valloc(size_t size) noexcept { return in::Valloc(size); }
RSEQMALLOC_EXPORT void* pvalloc(size_t size) noexcept { return in::Pvalloc(size); }
RSEQMALLOC_EXPORT size_t malloc_usable_size(void* p) noexcept {
  return in::CheckedUsableSize(p);
}
RSEQMALLOC_EXPORT void free_sized(void* p, size_t size) noexcept {
  in::FreeSized(p, size, 0);
}
RSEQMALLOC_EXPORT void free_aligned_sized(void* p, size_t align, size_t size) noexcept {
  in::FreeSized(p, size, align);
}

RSEQMALLOC_EXPORT struct mallinfo2 mallinfo2() noexcept { return in::MallInfo2(); }
RSEQMALLOC_EXPORT struct mallinfo mallinfo() noexcept { return in::MallInfo(); }
RSEQMALLOC_EXPORT int malloc_trim(size_t pad) noexcept { return in::MallocTrim(pad); }
RSEQMALLOC_EXPORT void malloc_stats() noexcept { in::MallocStats(); }
RSEQMALLOC_EXPORT int malloc_info(int options, FILE* out) noexcept {
  return in::MallocInfo(options, out);
}
RSEQMALLOC_EXPORT int mallopt(int param, int value) noexcept { return in::Mallopt(param, value); }

void cfree(void* p) noexcept RSEQMALLOC_ALIAS(free);
void* __libc_malloc(size_t size) noexcept RSEQMALLOC_ALIAS(malloc);
void __libc_free(void* p) noexcept RSEQMALLOC_ALIAS(free);
void* __libc_calloc(size_t n, size_t size) noexcept RSEQMALLOC_ALIAS(calloc);
void* __libc_realloc(void* p, size_t size) noexcept RSEQMALLOC_ALIAS(realloc);
void* __libc_memalign(size_t align, size_t size) noexcept RSEQMALLOC_ALIAS(memalign);
void* __libc_valloc(size_t size) noexcept RSEQMALLOC_ALIAS(valloc);
void* __libc_pvalloc(size_t size) noexcept RSEQMALLOC_ALIAS(pvalloc);
int __posix_memalign(void** out, size_t align, size_t size) noexcept
    RSEQMALLOC_ALIAS(posix_memalign);

// Children that share the caller's TLS (allocator/frontend/shared_tls_child.h).
RSEQMALLOC_EXPORT int clone(int (*fn)(void*), void* stack, int flags, void* arg, ...) noexcept {
  va_list rest;
  va_start(rest, arg);
  auto* parent_tid = va_arg(rest, pid_t*);
  void* tls = va_arg(rest, void*);
  auto* child_tid = va_arg(rest, pid_t*);
  va_end(rest);
  return in::CloneMarkingSharedTls(fn, stack, flags, arg, parent_tid, tls, child_tid);
}

}  // extern "C"

// vfork cannot be a C function that calls another: the child returns on
// this stack. A jump keeps the stack as the caller left it.
asm(R"(
  .text
  .globl vfork
  .type vfork, @function
vfork:
  jmp rseqmalloc_vfork
  .size vfork, .-vfork
)");
