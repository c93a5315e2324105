// What the page heap's tests share: the books' balance, the resident part
// of a range, read from the kernel, and the span a pointer lies in.
#ifndef RSEQMALLOC_ALLOCATOR_PAGES_PAGE_HEAP_TEST_UTIL_H_
#define RSEQMALLOC_ALLOCATOR_PAGES_PAGE_HEAP_TEST_UTIL_H_

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstddef>
#include <vector>

#include "allocator/pages/page_heap.h"
#include "allocator/pages/pagemap.h"

namespace rseqmalloc::internal {

// Every page the heap holds is in use or free, backed or returned.
inline void ExpectBalanced(PageHeap* heap) {
  PageHeapStats s;
  heap->GetStats(&s);
  EXPECT_EQ(s.total_bytes, s.small_in_use_bytes + s.large_in_use_bytes + s.free_backed_bytes +
                               s.free_returned_bytes);
}

inline size_t ResidentBytes(void* p, size_t bytes) {
  size_t os_page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> vec(bytes / os_page);
  EXPECT_EQ(mincore(p, bytes, vec.data()), 0);
  size_t n = 0;
  for (unsigned char v : vec) n += v & 1;
  return n * os_page;
}

// The span the pagemap names for p's page.
inline Span* SpanOf(const void* p) {
  return g_pagemap.GetSpan(reinterpret_cast<uintptr_t>(p) >> kPageShift);
}

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_PAGES_PAGE_HEAP_TEST_UTIL_H_
