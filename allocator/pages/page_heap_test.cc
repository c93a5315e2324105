#include "allocator/pages/page_heap.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <map>
#include <random>
#include <vector>

#include "allocator/pages/page_heap_test_util.h"
#include "allocator/pages/pagemap.h"
#include "allocator/pages/system.h"

namespace rseqmalloc::internal {
namespace {

// Heaps must outlive their memory, so each test gets its own static heap.
// The release policy's tests are in page_heap_release_test.cc.
constinit PageHeap g_basic, g_large, g_coalesce, g_align, g_random, g_owner_a, g_owner_b, g_reuse,
    g_histogram, g_unmap, g_grow, g_grow_two, g_grow_room, g_grow_across;

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

// The report's free-span table: each free span once, in the bucket of its
// length and state, with its pages.
TEST(PageHeap, FreeSpanHistogramCountsEachFreeSpanByLengthAndState) {
  static_assert(FreeSpanBucket(1) == 0 && FreeSpanBucket(2) == 1 && FreeSpanBucket(3) == 2 &&
                FreeSpanBucket(4) == 2 && FreeSpanBucket(5) == 3 && FreeSpanBucket(128) == 7 &&
                FreeSpanBucket(129) == 8);
  // Spans of 1, 3 and 200 pages, each followed by a 1-page span that stays
  // in use, so that freeing them merges nothing.
  std::vector<Span*> keep, freed;
  for (size_t n : {size_t{1}, size_t{3}, size_t{200}}) {
    Span* s = g_histogram.New(n, kLargeClass);
    ASSERT_NE(s, nullptr);
    freed.push_back(s);
    keep.push_back(g_histogram.New(1, kLargeClass));
    ASSERT_NE(keep.back(), nullptr);
  }
  for (Span* s : freed) g_histogram.Delete(s);
  FreeSpanHistogram h;
  g_histogram.GetFreeSpanHistogram(&h);
  for (int b = 0; b < kFreeSpanBuckets; ++b) {
    uint64_t spans = b == 0 || b == 2 || b == 8 ? 1 : 0;
    EXPECT_EQ(h.backed_spans[b], spans) << "bucket " << b;
  }
  EXPECT_EQ(h.backed_pages[0], 1u);
  EXPECT_EQ(h.backed_pages[2], 3u);
  EXPECT_EQ(h.backed_pages[8], 200u);
  // The rest of the growth unit, never touched, is one returned run.
  uint64_t returned = 0;
  for (int b = 0; b < kFreeSpanBuckets; ++b) returned += h.returned_pages[b];
  PageHeapStats st;
  g_histogram.GetStats(&st);
  EXPECT_EQ(returned * kPageSize, st.free_returned_bytes);
  EXPECT_EQ((1 + 3 + 200) * kPageSize, st.free_backed_bytes);
  for (Span* s : keep) g_histogram.Delete(s);
  ExpectBalanced(&g_histogram);
}

// Whether any byte of [p, p + bytes) is still mapped: mincore fails with
// ENOMEM on a range with unmapped pages, and an unmapped range is all holes.
bool AnyPageMapped(void* p, size_t bytes) {
  size_t os_page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  unsigned char vec;
  for (size_t off = 0; off < bytes; off += os_page) {
    if (mincore(static_cast<char*>(p) + off, os_page, &vec) == 0) return true;
  }
  return false;
}

TEST(PageHeap, UnmapFreeUnmapsEveryFreeSpanAndKeepsTheLiveOnes) {
  Span* live = g_unmap.New(4, 7);
  Span* freed = g_unmap.New(6, 7);
  Span* large = g_unmap.New(200, kLargeClass);
  ASSERT_NE(live, nullptr);
  ASSERT_NE(freed, nullptr);
  ASSERT_NE(large, nullptr);
  memset(live->start(), 0x5a, live->bytes());
  void* freed_at = freed->start();
  size_t freed_bytes = freed->bytes();
  void* large_at = large->start();
  size_t large_bytes = large->bytes();
  g_unmap.Delete(freed);
  g_unmap.Delete(large);
  PageHeapStats before;
  g_unmap.GetStats(&before);
  size_t free_pages = (before.free_backed_bytes + before.free_returned_bytes) >> kPageShift;
  ASSERT_GT(free_pages, 0u);

  EXPECT_EQ(g_unmap.UnmapFree(), free_pages);
  PageHeapStats after;
  g_unmap.GetStats(&after);
  EXPECT_EQ(after.total_bytes, 4 * kPageSize);
  EXPECT_EQ(after.free_backed_bytes + after.free_returned_bytes, 0u);
  EXPECT_EQ(after.free_spans, 0u);
  EXPECT_EQ(after.unmapped_bytes_total, free_pages << kPageShift);
  ExpectBalanced(&g_unmap);
  EXPECT_FALSE(AnyPageMapped(freed_at, freed_bytes));
  EXPECT_FALSE(AnyPageMapped(large_at, large_bytes));
  // The live span is untouched, and its neighbours are holes now: freeing
  // it must not merge with pages that are gone.
  for (size_t i = 0; i < live->bytes(); ++i) {
    ASSERT_EQ(static_cast<unsigned char*>(live->start())[i], 0x5a);
  }
  EXPECT_EQ(g_unmap.UnmapFree(), 0u);  // nothing free now
  g_unmap.Delete(live);
  g_unmap.GetStats(&after);
  EXPECT_EQ(after.free_spans, 1u);
  EXPECT_EQ(after.free_backed_bytes, 4 * kPageSize);
  // And the heap grows again afterwards.
  Span* again = g_unmap.New(300, kLargeClass);
  ASSERT_NE(again, nullptr);
  memset(again->start(), 1, again->bytes());
  g_unmap.Delete(again);
  ExpectBalanced(&g_unmap);
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

// A New that finds no fit asks the hook (the transfer caches, in the
// allocator) for spans once before it takes fresh pages; a span the hook
// gives back that fits is cut from, and the heap does not grow.
PageHeap* g_hooked_heap = nullptr;
Span* g_held_for_hook = nullptr;
int g_hook_calls = 0;
size_t GiveTheHeldSpan() {
  ++g_hook_calls;
  if (g_held_for_hook == nullptr) return 0;
  g_hooked_heap->Delete(g_held_for_hook);
  g_held_for_hook = nullptr;
  return 1;
}

TEST(PageHeap, NoFitAsksTheGrowthHookBeforeTakingFreshPages) {
  static PageHeap heap;
  g_hooked_heap = &heap;
  // Everything the heap got from the system is in use: one span held "by a
  // cache", the rest by the program.
  Span* held = heap.New(64, kLargeClass);
  ASSERT_NE(held, nullptr);
  std::vector<Span*> rest;
  for (;;) {
    PageHeapStats s;
    heap.GetStats(&s);
    if (s.free_backed_bytes + s.free_returned_bytes == 0) break;
    Span* one = heap.New(1, kLargeClass);
    ASSERT_NE(one, nullptr);
    rest.push_back(one);
  }
  PageHeapStats before;
  heap.GetStats(&before);
  heap.SetGrowthHook(&GiveTheHeldSpan);
  g_held_for_hook = held;
  uintptr_t held_first = held->first_page;

  Span* s = heap.New(64, kLargeClass);  // no fit: the hook gives the held span
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(g_hook_calls, 1);
  EXPECT_EQ(s->first_page, held_first);
  PageHeapStats after;
  heap.GetStats(&after);
  EXPECT_EQ(after.total_bytes, before.total_bytes);  // no fresh pages
  EXPECT_EQ(after.growth_hook_calls, 1u);
  EXPECT_EQ(after.growth_hook_objects, 1u);

  Span* grown = heap.New(64, kLargeClass);  // nothing left to give: the heap grows
  ASSERT_NE(grown, nullptr);
  EXPECT_EQ(g_hook_calls, 2);
  heap.GetStats(&after);
  EXPECT_GT(after.total_bytes, before.total_bytes);
  EXPECT_EQ(after.growth_hook_objects, 1u);

  heap.Delete(s);
  heap.Delete(grown);
  for (Span* one : rest) heap.Delete(one);
  ExpectBalanced(&heap);
}

// Placement::kRoomToGrow: a block realloc moves because it grows goes to the
// start of the longest free run, where ResizeLarge can then grow it in
// place; best fit would take the small hole.
TEST(PageHeap, AGrowingBlockGoesToTheStartOfTheLongestRun) {
  Span* small = g_grow.New(8, kLargeClass);
  Span* wall = g_grow.New(1, kLargeClass);  // keeps the hole from merging
  Span* big = g_grow.New(600, kLargeClass);
  Span* end = g_grow.New(1, kLargeClass);
  ASSERT_TRUE(small && wall && big && end);
  uintptr_t hole = small->first_page;
  uintptr_t run = big->first_page;
  g_grow.Delete(small);
  g_grow.Delete(big);
  Span* best = g_grow.New(6, kLargeClass);
  ASSERT_NE(best, nullptr);
  EXPECT_EQ(best->first_page, hole) << "best fit takes the 8-page hole";
  g_grow.Delete(best);
  Span* grows = g_grow.New(6, kLargeClass, 1, kNoLocality, Placement::kRoomToGrow);
  ASSERT_NE(grows, nullptr);
  EXPECT_EQ(grows->first_page, run);
  EXPECT_TRUE(g_grow.ResizeLarge(grows, 500)) << "the pages after it are free";
  EXPECT_EQ(grows->first_page, run);
  // No run holds kGrowthRunFactor times the block: best fit after all.
  Span* wide = g_grow.New(2000, kLargeClass, 1, kNoLocality, Placement::kRoomToGrow);
  ASSERT_NE(wide, nullptr);
  EXPECT_EQ(wide->num_pages, 2000u);
  for (Span* s : {grows, wide, wall, end}) g_grow.Delete(s);
  ExpectBalanced(&g_grow);
}

// Two blocks that grow in turn (two threads, each growing a buffer): the
// second to move must not go right after the first, whose growth it would
// stop. It takes the middle of the run, and both keep growing in place. A
// block that does not grow (the wall) keeps the run's start for the first.
TEST(PageHeap, TwoGrowingBlocksShareTheLongestRun) {
  Span* wall = g_grow_two.New(1, kLargeClass);
  Span* run = g_grow_two.New(1000, kLargeClass);
  Span* end = g_grow_two.New(1, kLargeClass);
  ASSERT_TRUE(wall && run && end);
  uintptr_t start = run->first_page;
  g_grow_two.Delete(run);
  Span* a = g_grow_two.New(6, kLargeClass, 1, kNoLocality, Placement::kRoomToGrow);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->first_page, start) << "the block before the run does not grow";
  Span* b = g_grow_two.New(6, kLargeClass, 1, kNoLocality, Placement::kRoomToGrow);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(b->first_page, start + 6 + (1000 - 6 - 6) / 2) << "a and b get the same room";
  EXPECT_TRUE(g_grow_two.ResizeLarge(a, 400)) << "b left a room to grow";
  EXPECT_TRUE(g_grow_two.ResizeLarge(b, 400));
  EXPECT_EQ(a->first_page, start);
  for (Span* s : {a, b, wall, end}) g_grow_two.Delete(s);
  ExpectBalanced(&g_grow_two);
}

// Growing in place takes the room asked for when it is free, and no more
// than is free when it is not: the room never makes a growth fail.
TEST(PageHeap, GrowthInPlaceTakesTheRoomThatIsFree) {
  Span* a = g_grow_room.New(10, kLargeClass);
  Span* gap = g_grow_room.New(30, kLargeClass);
  Span* wall = g_grow_room.New(1, kLargeClass);
  ASSERT_TRUE(a && gap && wall);
  g_grow_room.Delete(gap);
  ASSERT_TRUE(g_grow_room.ResizeLarge(a, 12, 20));
  EXPECT_EQ(a->num_pages, 20u) << "the room was free";
  ASSERT_TRUE(g_grow_room.ResizeLarge(a, 25, 60));
  EXPECT_EQ(a->num_pages, 40u) << "all that was free up to the wall";
  EXPECT_FALSE(g_grow_room.ResizeLarge(a, 41, 60));
  EXPECT_EQ(a->num_pages, 40u);
  for (Span* s : {a, wall}) g_grow_room.Delete(s);
  ExpectBalanced(&g_grow_room);
}

// Resident free pages and returned ones after them do not always merge
// into one free span; growth in place takes both, where it used to stop at
// the first and make realloc move the block.
TEST(PageHeap, GrowthInPlaceTakesResidentAndReturnedPagesAfterIt) {
  Span* a = g_grow_across.New(10, kLargeClass);  // the growth unit's rest stays returned
  Span* b = g_grow_across.New(5, kLargeClass);
  ASSERT_TRUE(a && b);
  g_grow_across.Delete(b);  // 5 resident pages, then the returned rest
  PageHeapStats st;
  g_grow_across.GetStats(&st);
  ASSERT_EQ(st.free_backed_bytes, 5 * kPageSize) << "the freed pages merged with the rest";
  ASSERT_EQ(st.free_spans, 2u);
  EXPECT_TRUE(g_grow_across.ResizeLarge(a, 30)) << "5 resident pages and 15 returned ones";
  EXPECT_EQ(a->num_pages, 30u);
  EXPECT_TRUE(g_grow_across.ResizeLarge(a, 31, 40));
  EXPECT_EQ(a->num_pages, 40u);
  g_grow_across.Delete(a);
  ExpectBalanced(&g_grow_across);
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
