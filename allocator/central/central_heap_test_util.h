// What the central heap's tests share: the statistics with their
// identities checked, and a MiB.
#ifndef RSEQMALLOC_ALLOCATOR_CENTRAL_CENTRAL_HEAP_TEST_UTIL_H_
#define RSEQMALLOC_ALLOCATOR_CENTRAL_CENTRAL_HEAP_TEST_UTIL_H_

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>

#include "allocator/base/size_classes.h"
#include "allocator/central/central_heap.h"

namespace rseqmalloc::internal {

inline constexpr size_t kMiB = size_t{1} << 20;

// Checks the identities documented in central_stats.h; returns the stats.
inline CentralStats CheckedStats() {
  static CentralStats s;  // big; keep it off the stack
  GetCentralStats(&s);
  EXPECT_EQ(s.system_reserved_bytes, s.page_heap_bytes + s.system_unused_bytes);
  EXPECT_EQ(s.page_heap_bytes, s.small_span_bytes + s.large_in_use_bytes + s.page_heap_free_bytes +
                                   s.page_heap_returned_bytes);
  EXPECT_EQ(s.small_span_bytes, s.central_free_bytes + s.transfer_cache_bytes +
                                    s.small_in_use_bytes + s.span_waste_bytes);
  uint64_t span_bytes = 0;
  for (uint32_t cls = 1; cls < kNumClasses; ++cls) {
    const CentralClassStats& k = s.per_class[cls];
    size_t waste = ClassToPages(cls) * kPageSize % ClassToSize(cls);
    EXPECT_EQ(
        k.span_bytes,
        (k.central_free_objects + k.transfer_objects + k.in_use_objects) * k.size + k.spans * waste)
        << "class " << cls;
    span_bytes += k.span_bytes;
  }
  EXPECT_EQ(span_bytes, s.small_span_bytes);
  EXPECT_GT(s.metadata_bytes, 0u);
  return s;
}

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_CENTRAL_CENTRAL_HEAP_TEST_UTIL_H_
