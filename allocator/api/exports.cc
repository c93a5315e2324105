// Every exported entry point, in one list, and nothing else: each body is one
// call into the front end (allocator/frontend/: the fast paths, the glibc
// semantics of libc_semantics.h, the C++ operators of new_delete.h) or the
// statistics layer (allocator/stats/introspection.h); every
// other name of the same function is an alias of that body, so a family has
// one copy of its fast path. Aliases whose C++ type differs from the body's
// (the nothrow and align_val_t forms of delete ignore their extra argument)
// are made in assembly, which the ABI allows and the compiler would warn of.
#include <malloc.h>

#include <cerrno>
#include <cstdarg>
#include <cstddef>
#include <new>

#include "allocator/api/rseqmalloc.h"
#include "allocator/frontend/frontend.h"
#include "allocator/frontend/libc_semantics.h"
#include "allocator/frontend/new_delete.h"
#include "allocator/frontend/shared_tls_child.h"
#include "allocator/stats/introspection.h"

#define RSEQMALLOC_EXPORT __attribute__((visibility("default"), used))
// Another name for `target`, a body defined in this file with the same type
// (and the same attributes, which glibc's declarations give the C names).
// (Clang has no `copy`; it does not warn of the missing attributes either.)
#if __has_attribute(copy)
#define RSEQMALLOC_ALIAS(target) \
  __attribute__((alias(#target), visibility("default"), used, copy(target)))
#else
#define RSEQMALLOC_ALIAS(target) __attribute__((alias(#target), visibility("default"), used))
#endif
// The same for a C++ body, named by its mangled name.
#define RSEQMALLOC_CXX_ALIAS(mangled) \
  __attribute__((alias(mangled), visibility("default"), used))
// Another name, in assembly, for a body whose signature it extends with
// arguments the body ignores.
#define RSEQMALLOC_ASM_ALIAS(name, target)                                  \
  asm(".globl " #name "\n\t.type " #name ", @function\n\t.set " #name ", " \
      #target)

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
RSEQMALLOC_EXPORT void free_sized(void* p, size_t size) noexcept { in::FreeSizedLibc(p, size); }
// Sized delete's body (aliased below: C++ wants the unsized forms defined
// beside a sized one, and those are free's aliases).
__attribute__((visibility("hidden"), used)) void rseqmalloc_sized_delete(void* p,
                                                                         size_t n) noexcept {
  in::FreeSized(p, n);
}
RSEQMALLOC_EXPORT void free_aligned_sized(void* p, size_t align, size_t size) noexcept {
  in::FreeSizedAligned(p, size, align);
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

// rseqmalloc's own (rseqmalloc.h).
RSEQMALLOC_EXPORT const char* rseqmalloc_version(void) { return RSEQMALLOC_VERSION; }
RSEQMALLOC_EXPORT const char* rseqmalloc_mode(void) { return in::ActiveModeName(); }
RSEQMALLOC_EXPORT int rseqmalloc_owns(const void* p) { return in::OwnsPointer(p) ? 1 : 0; }
RSEQMALLOC_EXPORT void rseqmalloc_stats_print(int fd) { in::StatsPrint(fd); }
RSEQMALLOC_EXPORT int rseqmalloc_get_stats(struct rseqmalloc_stats* out) {
  return in::GetPublicStats(out);
}
RSEQMALLOC_EXPORT int rseqmalloc_get_release_stats(struct rseqmalloc_release_stats* out) {
  return in::GetPublicReleaseStats(out);
}

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

// --- C++ ---------------------------------------------------------------------
// new: plain, nothrow, aligned, aligned nothrow; the array forms alias them.

RSEQMALLOC_EXPORT void* operator new(size_t n) { return in::New(n); }
RSEQMALLOC_EXPORT void* operator new(size_t n, const std::nothrow_t&) noexcept {
  return in::NewNothrow(n);
}
RSEQMALLOC_EXPORT void* operator new(size_t n, std::align_val_t a) {
  return in::NewSlow(n, static_cast<size_t>(a));
}
RSEQMALLOC_EXPORT void* operator new(size_t n, std::align_val_t a,
                                     const std::nothrow_t&) noexcept {
  return in::NewSlowNothrow(n, static_cast<size_t>(a));
}
void* operator new[](size_t n) RSEQMALLOC_CXX_ALIAS("_Znwm");
void* operator new[](size_t n, const std::nothrow_t&) noexcept
    RSEQMALLOC_CXX_ALIAS("_ZnwmRKSt9nothrow_t");
void* operator new[](size_t n, std::align_val_t a) RSEQMALLOC_CXX_ALIAS("_ZnwmSt11align_val_t");
void* operator new[](size_t n, std::align_val_t a, const std::nothrow_t&) noexcept
    RSEQMALLOC_CXX_ALIAS("_ZnwmSt11align_val_tRKSt9nothrow_t");

// delete: every unsized form is free (the alignment and nothrow arguments
// change nothing: the pagemap knows the block); the sized forms trust the
// size (operator new's blocks are never realloc'd, so the size names the
// class; free_sized cannot, see frontend.h); the sized aligned forms have a
// body of their own (C++ puts the size before the alignment,
// free_aligned_sized after).
RSEQMALLOC_EXPORT void operator delete(void* p, size_t n, std::align_val_t a) noexcept {
  in::FreeSizedAligned(p, n, static_cast<size_t>(a));
}
void operator delete[](void* p, size_t n, std::align_val_t a) noexcept
    RSEQMALLOC_CXX_ALIAS("_ZdlPvmSt11align_val_t");

RSEQMALLOC_ASM_ALIAS(_ZdlPv, free);                                // delete(void*)
RSEQMALLOC_ASM_ALIAS(_ZdaPv, free);                                // delete[](void*)
RSEQMALLOC_ASM_ALIAS(_ZdlPvRKSt9nothrow_t, free);                  // delete(void*, nothrow)
RSEQMALLOC_ASM_ALIAS(_ZdaPvRKSt9nothrow_t, free);                  // delete[](void*, nothrow)
RSEQMALLOC_ASM_ALIAS(_ZdlPvSt11align_val_t, free);                 // delete(void*, align)
RSEQMALLOC_ASM_ALIAS(_ZdaPvSt11align_val_t, free);                 // delete[](void*, align)
RSEQMALLOC_ASM_ALIAS(_ZdlPvSt11align_val_tRKSt9nothrow_t, free);   // + nothrow
RSEQMALLOC_ASM_ALIAS(_ZdaPvSt11align_val_tRKSt9nothrow_t, free);   // + nothrow
RSEQMALLOC_ASM_ALIAS(_ZdlPvm, rseqmalloc_sized_delete);            // delete(void*, size_t)
RSEQMALLOC_ASM_ALIAS(_ZdaPvm, rseqmalloc_sized_delete);            // delete[](void*, size_t)
