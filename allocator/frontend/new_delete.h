// operator new / delete on top of the front end: the fast paths inline, the
// new-handler loop out of line. exports.cc defines the operators (one body
// per family, the other forms are aliases of it).
//
// [new.delete.single]: a failed allocation calls the new-handler until it
// succeeds, or there is none (then bad_alloc, or nullptr for nothrow), or
// the handler throws.
#ifndef RSEQMALLOC_ALLOCATOR_FRONTEND_NEW_DELETE_H_
#define RSEQMALLOC_ALLOCATOR_FRONTEND_NEW_DELETE_H_

#include <cstddef>

#include "allocator/frontend/frontend.h"

namespace rseqmalloc::internal {

// The slow half of every operator new: retries through the new-handler.
// align 0 means the default alignment.
[[gnu::noinline]] void* NewSlow(size_t size, size_t align);
[[gnu::noinline]] void* NewSlowNothrow(size_t size, size_t align) noexcept;

// One rseq pop, as malloc; a miss or a large size goes to NewSlow.
[[gnu::always_inline]] inline void* New(size_t size) {
  if (__builtin_expect(size <= kMaxSmallSize, 1)) {
    return g_cpu_slab.Pop(SizeToClass(size), [size]() __attribute__((always_inline)) {
      return NewSlow(size, 0);
    });
  }
  return NewSlow(size, 0);
}

[[gnu::always_inline]] inline void* NewNothrow(size_t size) noexcept {
  if (__builtin_expect(size <= kMaxSmallSize, 1)) {
    return g_cpu_slab.Pop(SizeToClass(size), [size]() __attribute__((always_inline)) {
      return NewSlowNothrow(size, 0);
    });
  }
  return NewSlowNothrow(size, 0);
}

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_FRONTEND_NEW_DELETE_H_
