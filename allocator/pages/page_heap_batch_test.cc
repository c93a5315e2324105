// Several spans per lock hold (PageHeap::NewSpans, DeleteSpans) and the
// heap's own spare Span structs: what a refill of a class with one or two
// objects per span relies on to take each lock once per batch, not once
// per object.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "allocator/pages/arena.h"
#include "allocator/pages/page_heap.h"
#include "allocator/pages/page_heap_test_util.h"
#include "allocator/pages/pagemap.h"

namespace rseqmalloc::internal {
namespace {

// Heaps must outlive their memory, so each test gets its own static heap.
constinit PageHeap g_batch, g_spares, g_grow;

constexpr uint32_t kClass = 9;

TEST(PageHeapBatch, NewSpansHandsOutDisjointRegisteredSpans) {
  // Grow the heap once, so that the batch finds free pages.
  Span* first = g_batch.New(2, kClass);
  ASSERT_NE(first, nullptr);
  Span* out[16];
  ASSERT_EQ(g_batch.NewSpans(2, kClass, kNoLocality, out, 16), 16);
  std::vector<Span*> spans(out, out + 16);
  spans.push_back(first);
  std::sort(spans.begin(), spans.end(),
            [](const Span* a, const Span* b) { return a->first_page < b->first_page; });
  for (size_t i = 0; i < spans.size(); ++i) {
    const Span* s = spans[i];
    EXPECT_EQ(s->num_pages, 2u);
    EXPECT_EQ(s->location, SpanLocation::kInUse);
    for (uintptr_t p = s->first_page; p <= s->last_page(); ++p) {
      EXPECT_EQ(g_pagemap.GetSpan(p), s);
      EXPECT_EQ(g_pagemap.ClassOfAddress(p << kPageShift), kClass);
    }
    if (i > 0) {
      EXPECT_GE(s->first_page, spans[i - 1]->first_page + 2) << "overlap";
    }
  }
  PageHeapStats st;
  g_batch.GetStats(&st);
  EXPECT_EQ(st.small_in_use_bytes, 17 * 2 * kPageSize);
  ExpectBalanced(&g_batch);

  // DeleteSpans frees them all and merges them back into the one free run.
  g_batch.DeleteSpans(out, 16);
  g_batch.Delete(first);
  g_batch.GetStats(&st);
  EXPECT_EQ(st.small_in_use_bytes, 0u);
  EXPECT_EQ(st.free_spans, 2u) << "the pages used (backed) and the rest of the growth (returned)";
  for (Span* s : spans) {
    EXPECT_EQ(g_pagemap.ClassOfAddress(s->first_page << kPageShift), 0u);
  }
  ExpectBalanced(&g_batch);
}

TEST(PageHeapBatch, NewSpansOnAnEmptyHeapGrowsItForOneSpan) {
  Span* out[4];
  // Nothing is free: the batch falls back to New, which grows the heap.
  ASSERT_EQ(g_grow.NewSpans(3, kClass, kNoLocality, out, 4), 1);
  EXPECT_EQ(out[0]->num_pages, 3u);
  // Now the growth's pages are free: the next batch is whole.
  Span* more[4];
  ASSERT_EQ(g_grow.NewSpans(3, kClass, kNoLocality, more, 4), 4);
  EXPECT_EQ(g_grow.NewSpans(3, kClass, kNoLocality, more, 0), 0);
  g_grow.DeleteSpans(more, 4);
  g_grow.DeleteSpans(out, 1);
  g_grow.DeleteSpans(out, 0);  // nothing
  ExpectBalanced(&g_grow);
}

// A cut needs a Span struct for the rest of the free run, a merge frees
// one. Both happen under the heap's lock, so the heap keeps the freed ones
// and the next cuts take them: once warm, a cycle of cuts and merges asks
// the arena (and its lock) for none.
TEST(PageHeapBatch, CutsAndMergesReuseTheHeapsOwnSpanStructs) {
  constexpr int kSpans = 64;
  Span* spans[kSpans];
  auto cycle = [&] {
    ASSERT_EQ(g_spares.NewSpans(1, kClass, kNoLocality, spans, kSpans), kSpans);
    // Every other one first, so that the rest merge with two neighbours.
    for (int i = 0; i < kSpans; i += 2) g_spares.Delete(spans[i]);
    for (int i = 1; i < kSpans; i += 2) g_spares.Delete(spans[i]);
  };
  Span* grow = g_spares.New(1, kClass);  // the heap's first pages
  ASSERT_NE(grow, nullptr);
  cycle();
  ArenaStats before;
  GetArenaStats(&before);
  for (int round = 0; round < 10; ++round) cycle();
  ArenaStats after;
  GetArenaStats(&after);
  EXPECT_EQ(after.spans_made, before.spans_made);
  PageHeapStats st;
  g_spares.GetStats(&st);
  EXPECT_GT(st.spare_spans, 0u);
  g_spares.Delete(grow);
  ExpectBalanced(&g_spares);
}

}  // namespace
}  // namespace rseqmalloc::internal
