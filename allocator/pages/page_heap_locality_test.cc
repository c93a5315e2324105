// Placement of the spans CPUs carve small objects from (page_heap.h,
// "Locality"): each CPU slot's spans stay together, apart from every other
// slot's, however the slots' requests interleave in time.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <random>
#include <vector>

#include "allocator/pages/page_heap.h"
#include "allocator/pages/page_heap_test_util.h"
#include "allocator/pages/pagemap.h"

namespace rseqmalloc::internal {
namespace {

constinit PageHeap g_two_slots, g_alone, g_alone_reference, g_holes, g_random_slots;

uintptr_t WindowOf(const Span* s) { return s->first_page / kLocalityPages; }

// Two CPUs that take a fresh 1-page span in turn (the order two threads'
// first refills give): without placement by slot the page heap hands out
// neighbouring pages alternately, and the CPUs' objects end up interleaved
// page by page (measured: two threads each cycling through 10,000 objects of
// 64 B ran at 0.6x of their speed alone, docs/design.md).
TEST(PageHeapLocality, SlotsThatAskInTurnGetRunsOfTheirOwn) {
  std::vector<Span*> spans[2];
  for (int i = 0; i < 32; ++i) {
    for (int slot = 0; slot < 2; ++slot) {
      Span* s = g_two_slots.New(1, 3, 1, slot);
      ASSERT_NE(s, nullptr);
      spans[slot].push_back(s);
    }
  }
  // Each slot fills a window before it starts another: its spans follow
  // one another except once per window.
  for (int slot = 0; slot < 2; ++slot) {
    size_t jumps = 0;
    for (size_t i = 1; i < spans[slot].size(); ++i) {
      if (spans[slot][i]->first_page != spans[slot][i - 1]->first_page + 1) ++jumps;
    }
    EXPECT_LE(jumps, spans[slot].size() / kLocalityPages) << "slot " << slot;
  }
  // No 64 KiB window holds pages of both slots.
  for (const Span* a : spans[0]) {
    for (const Span* b : spans[1]) ASSERT_NE(WindowOf(a), WindowOf(b));
  }
  // A slot's first span starts a window of its own.
  EXPECT_EQ(spans[0][0]->first_page % kLocalityPages, 0u);
  EXPECT_EQ(spans[1][0]->first_page % kLocalityPages, 0u);
  for (auto& list : spans) {
    for (Span* s : list) g_two_slots.Delete(s);
  }
  ExpectBalanced(&g_two_slots);
}

// One CPU slot at work, or none: spans go exactly where they went before
// placement by slot (best fit), whatever the slot.
TEST(PageHeapLocality, OneSlotAloneIsPlacedLikeAnySpan) {
  std::mt19937 rng(11);
  std::vector<Span*> with_slot, without;
  uintptr_t base_a = 0, base_b = 0;  // the two heaps' first pages
  for (int step = 0; step < 4000; ++step) {
    if (!with_slot.empty() && rng() % 3 == 0) {
      size_t i = rng() % with_slot.size();
      g_alone.Delete(with_slot[i]);
      g_alone_reference.Delete(without[i]);
      with_slot[i] = with_slot.back();
      with_slot.pop_back();
      without[i] = without.back();
      without.pop_back();
      continue;
    }
    size_t pages = 1 + rng() % 2;
    Span* a = g_alone.New(pages, 3, 1, 4);
    Span* b = g_alone_reference.New(pages, 3);
    ASSERT_TRUE(a != nullptr && b != nullptr);
    if (base_a == 0) {
      base_a = a->first_page;
      base_b = b->first_page;
    }
    ASSERT_EQ(a->first_page - base_a, b->first_page - base_b) << "step " << step;
    with_slot.push_back(a);
    without.push_back(b);
  }
  for (Span* x : with_slot) g_alone.Delete(x);
  for (Span* x : without) g_alone_reference.Delete(x);
  ExpectBalanced(&g_alone);
  ExpectBalanced(&g_alone_reference);
}

// With no free 64 KiB window anywhere, a slot takes the best fit even next
// to another slot's span, rather than make the heap grow.
TEST(PageHeapLocality, WithoutAFreeWindowASlotTakesAHoleInsteadOfGrowing) {
  std::vector<Span*> fill;
  PageHeapStats st;
  for (;;) {  // the whole first growth in 2-page spans
    Span* s = g_holes.New(2, kLargeClass);
    ASSERT_NE(s, nullptr);
    fill.push_back(s);
    g_holes.GetStats(&st);
    if (st.free_backed_bytes + st.free_returned_bytes == 0) break;
  }
  uint64_t total = st.total_bytes;
  Span* hole = fill[fill.size() / 2];
  uintptr_t hole_page = hole->first_page;
  g_holes.Delete(hole);
  Span* x = g_holes.New(1, 3, 1, 1);
  Span* y = g_holes.New(1, 3, 1, 0);  // borders x, whose slot is carving there
  ASSERT_TRUE(x != nullptr && y != nullptr);
  EXPECT_EQ(x->first_page, hole_page);
  EXPECT_EQ(y->first_page, hole_page + 1);
  g_holes.GetStats(&st);
  EXPECT_EQ(st.total_bytes, total) << "the heap grew although a hole fitted";
  g_holes.Delete(x);
  g_holes.Delete(y);
  for (Span* f : fill) {
    if (f != hole) g_holes.Delete(f);
  }
  ExpectBalanced(&g_holes);
}

// Spans of several pages, requests for four slots and for none, mixed at
// random and freed at random: the pages a slot means to go on from are
// merged into other runs, handed out inside large spans, and their pagemap
// entries left naming records that were merged away; a slot that trusted
// such an entry would get pages twice. Every span stays disjoint from every
// other, checked as the heap goes, and the books balance.
TEST(PageHeapLocality, RandomMixOfSlotsKeepsSpansDisjointAndBooksBalanced) {
  std::mt19937 rng(7);
  std::vector<Span*> live;
  auto check_disjoint = [&] {
    std::vector<std::pair<uintptr_t, uintptr_t>> ranges;
    for (Span* s : live) ranges.push_back({s->first_page, s->first_page + s->num_pages});
    std::sort(ranges.begin(), ranges.end());
    for (size_t i = 1; i < ranges.size(); ++i) ASSERT_LE(ranges[i - 1].second, ranges[i].first);
  };
  for (int step = 0; step < 40000; ++step) {
    if (step % 1000 == 0) check_disjoint();
    if (!live.empty() && rng() % 2 == 0) {
      size_t i = rng() % live.size();
      g_random_slots.Delete(live[i]);
      live[i] = live.back();
      live.pop_back();
      continue;
    }
    int slot = static_cast<int>(rng() % 5) - 1;  // -1: no slot
    size_t pages = 1 + rng() % (slot < 0 ? 12 : 2);
    uint32_t cls = slot < 0 && rng() % 2 == 0 ? kLargeClass : 3;
    Span* s = g_random_slots.New(pages, cls, 1, slot < 0 ? kNoLocality : slot);
    ASSERT_NE(s, nullptr);
    live.push_back(s);
  }
  check_disjoint();
  for (Span* s : live) g_random_slots.Delete(s);
  ExpectBalanced(&g_random_slots);
}

}  // namespace
}  // namespace rseqmalloc::internal
