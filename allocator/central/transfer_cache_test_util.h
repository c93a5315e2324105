// What the transfer cache's tests share: a cache over a central list of
// its own, and the statistics they read.
#ifndef RSEQMALLOC_ALLOCATOR_CENTRAL_TRANSFER_CACHE_TEST_UTIL_H_
#define RSEQMALLOC_ALLOCATOR_CENTRAL_TRANSFER_CACHE_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "allocator/central/central_freelist.h"
#include "allocator/central/transfer_cache.h"
#include "allocator/pages/page_heap.h"

namespace rseqmalloc::internal {

// The page heap the tests' central lists cut their spans from.
inline constinit PageHeap g_heap;

// Every object the cache ever took is back in its span, and the spans
// went back to the page heap.
inline void ExpectEveryObjectInItsSpan(CentralFreeList& central) {
  CentralFreeListStats c;
  central.GetStats(&c);
  EXPECT_EQ(c.out_objects, 0u);
  EXPECT_EQ(c.spans, 0u);
}

struct Fixture {
  explicit Fixture(uint32_t cls)
      : slots(static_cast<size_t>(TransferCache::GrownCapacityFor(cls))) {
    central.Init(cls, &g_heap);
    cache.Init(cls, &central, slots.data());
  }
  std::vector<void*> slots;
  CentralFreeList central;
  TransferCache cache;
};

inline TransferCacheStats StatsOf(TransferCache& cache) {
  TransferCacheStats t;
  cache.GetStats(&t);
  return t;
}

inline uint64_t CentralOut(CentralFreeList& central) {
  CentralFreeListStats c;
  central.GetStats(&c);
  return c.out_objects;
}

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_CENTRAL_TRANSFER_CACHE_TEST_UTIL_H_
