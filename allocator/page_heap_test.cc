#include "allocator/page_heap.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "allocator/pagemap.h"
#include "allocator/system.h"

namespace rseqmalloc::internal {
namespace {

// Heaps must outlive their memory, so each test gets its own static heap.
constinit PageHeap g_basic, g_large, g_coalesce, g_align, g_cap, g_release, g_random, g_owner_a,
    g_owner_b, g_reuse;

void ExpectBalanced(PageHeap* heap) {
  PageHeapStats s;
  heap->GetStats(&s);
  EXPECT_EQ(s.total_bytes, s.small_in_use_bytes + s.large_in_use_bytes + s.free_backed_bytes +
                               s.free_returned_bytes);
}

size_t ResidentBytes(void* p, size_t bytes) {
  size_t os_page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> vec(bytes / os_page);
  EXPECT_EQ(mincore(p, bytes, vec.data()), 0);
  size_t n = 0;
  for (unsigned char v : vec) n += v & 1;
  return n * os_page;
}

TEST(PageHeap, SmallSpanRegistersEveryPage) {
  Span* s = g_basic.New(3, 5);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->num_pages, 3u);
  EXPECT_EQ(s->location, SpanLocation::kInUse);
  EXPECT_TRUE(s->was_returned);  // fresh memory counts as returned
  for (uintptr_t p = s->first_page; p < s->first_page + 3; ++p) {
    EXPECT_EQ(g_pagemap.GetSpan(p), s);
    EXPECT_EQ(g_pagemap.ClassOfAddress((p << kPageShift) + 100), 5u);
  }
  PageHeapStats st;
  g_basic.GetStats(&st);
  EXPECT_EQ(st.total_bytes, kGrowPages * kPageSize);
  EXPECT_EQ(st.small_in_use_bytes, 3 * kPageSize);
  EXPECT_EQ(st.free_returned_bytes, (kGrowPages - 3) * kPageSize);
  uintptr_t first = s->first_page;
  g_basic.Delete(s);
  for (uintptr_t p = first; p < first + 3; ++p) {
    EXPECT_EQ(g_pagemap.ClassOfAddress(p << kPageShift), 0u);
  }
  ExpectBalanced(&g_basic);
}

TEST(PageHeap, LargeSpanMarksOnlyItsFirstPage) {
  Span* s = g_large.New(10, kLargeClass);
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(g_pagemap.ClassOfAddress(s->start_address()), kLargeClass);
  EXPECT_EQ(g_pagemap.ClassOfAddress(s->start_address() + kPageSize), 0u);
  EXPECT_EQ(g_pagemap.GetSpan(s->first_page), s);
  EXPECT_EQ(g_pagemap.GetSpan(s->last_page()), s);
  PageHeapStats st;
  g_large.GetStats(&st);
  EXPECT_EQ(st.large_in_use_bytes, 10 * kPageSize);
  g_large.Delete(s);
  ExpectBalanced(&g_large);
}

TEST(PageHeap, FreeNeighboursCoalesce) {
  Span* a = g_coalesce.New(4, kLargeClass);
  Span* b = g_coalesce.New(4, kLargeClass);
  Span* c = g_coalesce.New(4, kLargeClass);
  Span* guard = g_coalesce.New(1, kLargeClass);  // keeps c off the fresh remainder
  ASSERT_TRUE(a && b && c && guard);
  uintptr_t first = a->first_page;
  ASSERT_EQ(b->first_page, first + 4);
  ASSERT_EQ(c->first_page, first + 8);
  g_coalesce.Delete(a);
  g_coalesce.Delete(c);
  PageHeapStats st;
  g_coalesce.GetStats(&st);
  EXPECT_EQ(st.free_backed_bytes, 8 * kPageSize);
  uint64_t spans_before = st.free_spans;
  g_coalesce.Delete(b);  // joins a and c into one 12-page span
  Span* merged = g_pagemap.GetSpan(first);
  ASSERT_NE(merged, nullptr);
  EXPECT_EQ(merged->location, SpanLocation::kFreeBacked);
  EXPECT_EQ(merged->first_page, first);
  EXPECT_EQ(merged->num_pages, 12u);
  EXPECT_EQ(g_pagemap.GetSpan(first + 11), merged);
  g_coalesce.GetStats(&st);
  EXPECT_EQ(st.free_spans, spans_before - 1);
  // A 12-page request is now served from exactly that run.
  Span* again = g_coalesce.New(12, kLargeClass);
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(again->first_page, first);
  EXPECT_FALSE(again->was_returned);
  g_coalesce.Delete(again);
  g_coalesce.Delete(guard);
  ExpectBalanced(&g_coalesce);
}

TEST(PageHeap, AlignedAllocationsTrimTheirEnds) {
  for (size_t align : {2, 16, 64, 512}) {
    Span* s = g_align.New(3, kLargeClass, align);
    ASSERT_NE(s, nullptr);
    EXPECT_EQ(s->first_page % align, 0u);
    EXPECT_EQ(s->num_pages, 3u);
    EXPECT_EQ(g_pagemap.GetSpan(s->first_page), s);
    ExpectBalanced(&g_align);
    g_align.Delete(s);
  }
  EXPECT_EQ(g_align.New(1, kLargeClass, 3), nullptr);  // not a power of two
  EXPECT_EQ(g_align.New(0, kLargeClass), nullptr);
  EXPECT_EQ(g_align.New(size_t{1} << 40, kLargeClass), nullptr);  // absurd
  ExpectBalanced(&g_align);
}

TEST(PageHeap, FreedPagesAreReusedFirst) {
  Span* a = g_reuse.New(7, kLargeClass);
  ASSERT_NE(a, nullptr);
  uintptr_t first = a->first_page;
  memset(a->start(), 1, a->bytes());
  g_reuse.Delete(a);
  Span* b = g_reuse.New(7, kLargeClass);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->first_page, first);
  EXPECT_FALSE(b->was_returned);
  g_reuse.Delete(b);
}

TEST(PageHeap, CapReturnsLargestSpansToTheOs) {
  g_cap.SetFreeCap(1 << 20);
  std::vector<Span*> spans;
  for (int i = 0; i < 64; ++i) {
    Span* s = g_cap.New(8, kLargeClass);  // 64 KiB each, 4 MiB in all
    ASSERT_NE(s, nullptr);
    memset(s->start(), 0x77, s->bytes());
    spans.push_back(s);
  }
  std::vector<std::pair<void*, size_t>> ranges;
  for (Span* s : spans) ranges.emplace_back(s->start(), s->bytes());
  for (Span* s : spans) g_cap.Delete(s);
  PageHeapStats st;
  g_cap.GetStats(&st);
  EXPECT_LE(st.free_backed_bytes, size_t{1} << 20);
  EXPECT_GE(st.released_bytes_total, size_t{3} << 20);
  size_t resident = 0;
  for (auto& [p, n] : ranges) resident += ResidentBytes(p, n);
  EXPECT_LE(resident, size_t{1} << 20);
  ExpectBalanced(&g_cap);
}

TEST(PageHeap, ReleaseAllLeavesOneReturnedRun) {
  std::vector<Span*> spans;
  for (int i = 0; i < 40; ++i) {
    Span* s = g_release.New(1 + i % 5, i % 2 ? kLargeClass : 3);
    ASSERT_NE(s, nullptr);
    memset(s->start(), 1, s->bytes());
    spans.push_back(s);
  }
  for (Span* s : spans) g_release.Delete(s);
  PageHeapStats st;
  g_release.GetStats(&st);
  EXPECT_GT(st.free_backed_bytes, 0u);
  g_release.ReleaseAll();
  g_release.GetStats(&st);
  EXPECT_EQ(st.free_backed_bytes, 0u);
  EXPECT_EQ(st.free_returned_bytes, st.total_bytes);
  // Everything came from one 2 MiB growth, so it coalesces back to one run.
  EXPECT_EQ(st.total_bytes, kGrowPages * kPageSize);
  EXPECT_EQ(st.free_spans, 1u);
}

// Spans of different heaps may be adjacent in memory; they must never merge.
TEST(PageHeap, HeapsNeverMergeEachOthersSpans) {
  Span* a = g_owner_a.New(1, kLargeClass);
  Span* b = g_owner_b.New(1, kLargeClass);
  ASSERT_TRUE(a && b);
  g_owner_a.Delete(a);
  g_owner_b.Delete(b);
  g_owner_a.ReleaseAll();
  g_owner_b.ReleaseAll();
  for (PageHeap* h : {&g_owner_a, &g_owner_b}) {
    PageHeapStats st;
    h->GetStats(&st);
    EXPECT_EQ(st.total_bytes, kGrowPages * kPageSize);
    EXPECT_EQ(st.free_returned_bytes, st.total_bytes);
    EXPECT_EQ(st.free_spans, 1u);
  }
}

TEST(PageHeap, RandomWorkloadKeepsSpansDisjointAndBooksBalanced) {
  std::mt19937 rng(12345);
  std::map<uintptr_t, Span*> live;  // first page -> span
  for (int step = 0; step < 4000; ++step) {
    if (live.size() < 50 && (live.empty() || rng() % 3 != 0)) {
      size_t n = 1 + rng() % (rng() % 8 == 0 ? 400 : 20);
      size_t align = rng() % 10 == 0 ? size_t{1} << (rng() % 6) : 1;
      uint32_t cls = rng() % 2 ? kLargeClass : 7;
      Span* s = g_random.New(n, cls, align);
      ASSERT_NE(s, nullptr);
      ASSERT_EQ(s->first_page % align, 0u);
      auto next = live.lower_bound(s->first_page);
      if (next != live.end()) {
        ASSERT_GE(next->first, s->first_page + s->num_pages);
      }
      if (next != live.begin()) {
        auto prev = std::prev(next);
        ASSERT_LE(prev->first + prev->second->num_pages, s->first_page);
      }
      static_cast<char*>(s->start())[0] = 1;
      live[s->first_page] = s;
    } else {
      auto it = live.begin();
      std::advance(it, rng() % live.size());
      g_random.Delete(it->second);
      live.erase(it);
    }
    if (step % 100 == 0) ExpectBalanced(&g_random);
  }
  for (auto& [page, s] : live) g_random.Delete(s);
  g_random.ReleaseAll();
  PageHeapStats st;
  g_random.GetStats(&st);
  EXPECT_EQ(st.free_returned_bytes, st.total_bytes);
  EXPECT_EQ(st.small_in_use_bytes + st.large_in_use_bytes, 0u);
}

}  // namespace
}  // namespace rseqmalloc::internal
