// glibc's semantics for the C allocation API (errno, overflow, zero sizes,
// alignment rules), on top of the front end. exports.cc forwards here.
#ifndef RSEQMALLOC_ALLOCATOR_FRONTEND_LIBC_SEMANTICS_H_
#define RSEQMALLOC_ALLOCATOR_FRONTEND_LIBC_SEMANTICS_H_

#include <cstddef>

namespace rseqmalloc::internal {

void* Calloc(size_t count, size_t size);
void* Realloc(void* p, size_t size);
void* ReallocArray(void* p, size_t count, size_t size);
void* Memalign(size_t align, size_t size);
void* AlignedAlloc(size_t align, size_t size);
int PosixMemalign(void** out, size_t align, size_t size);
void* Valloc(size_t size);
void* Pvalloc(size_t size);

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_FRONTEND_LIBC_SEMANTICS_H_
