// The one door from the front end down to the central heap's free lists.
//
// Every object a front-end cache gives back (an overflow, an eviction, a
// drain, a thread's exit, a deferred free) goes through ReturnToCentral, so
// that a block mapped for a signal handler (reentrant_blocks.h), which a
// sized free may have filed in a cache, is unmapped here and never reaches
// a layer that expects every object to belong to a span. While no such
// block is alive (nearly always) the door is one load.
#ifndef RSEQMALLOC_ALLOCATOR_FRONTEND_TO_CENTRAL_H_
#define RSEQMALLOC_ALLOCATOR_FRONTEND_TO_CENTRAL_H_

#include <cstdint>

#include "allocator/central/central_heap.h"
#include "allocator/frontend/reentrant_blocks.h"

namespace rseqmalloc::internal {

// InsertBatch of what is left after unmapping re-entrant blocks.
void ReturnToCentralSorting(uint32_t cls, void* const* objects, int n);

inline void ReturnToCentral(uint32_t cls, void* const* objects, int n) {
  if (__builtin_expect(AnyLiveReentrantBlocks(), 0)) {
    return ReturnToCentralSorting(cls, objects, n);
  }
  InsertBatch(cls, objects, n);
}

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_FRONTEND_TO_CENTRAL_H_
