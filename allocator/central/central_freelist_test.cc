#include "allocator/central/central_freelist.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "allocator/pages/page_heap.h"
#include "allocator/pages/page_heap_test_util.h"
#include "allocator/pages/pagemap.h"
#include "allocator/base/size_classes.h"

namespace rseqmalloc::internal {
namespace {

constinit PageHeap g_heap;

class CentralFreeListTest : public ::testing::TestWithParam<uint32_t> {};

TEST_P(CentralFreeListTest, ObjectsAreDistinctAlignedAndReturnToThePageHeap) {
  uint32_t cls = GetParam();
  size_t size = ClassToSize(cls);
  static CentralFreeList lists[kNumClasses];
  CentralFreeList& list = lists[cls];
  list.Init(cls, &g_heap);
  size_t per_span = ClassToPages(cls) * kPageSize / size;
  int n = static_cast<int>(per_span * 2 + 3);  // spills into one more slab
  std::vector<void*> objs(n);
  ASSERT_EQ(list.RemoveRange(objs.data(), n), n);

  size_t natural = size & (~size + 1);
  if (natural > kPageSize) natural = kPageSize;
  std::vector<uintptr_t> sorted;
  for (void* p : objs) {
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    EXPECT_EQ(a % natural, 0u);
    EXPECT_EQ(g_pagemap.ClassOfAddress(a), cls);
    EXPECT_EQ(g_pagemap.ClassOfAddress(a + size - 1), cls);
    sorted.push_back(a);
    memset(p, static_cast<int>(cls), size);
  }
  std::sort(sorted.begin(), sorted.end());
  for (size_t i = 1; i < sorted.size(); ++i) ASSERT_GE(sorted[i], sorted[i - 1] + size);

  CentralFreeListStats st;
  list.GetStats(&st);
  size_t spans = (n + per_span - 1) / per_span;
  EXPECT_EQ(st.spans, spans);
  EXPECT_EQ(st.out_objects, static_cast<uint64_t>(n));
  EXPECT_EQ(st.free_objects, spans * per_span - n);

  // Give back in a shuffled order in uneven bites.
  std::reverse(objs.begin() + n / 3, objs.end());
  int done = 0;
  while (done < n) {
    int bite = std::min(n - done, 1 + done % 7);
    list.InsertRange(objs.data() + done, bite);
    done += bite;
  }
  list.GetStats(&st);
  EXPECT_EQ(st.spans, 0u);
  EXPECT_EQ(st.out_objects, 0u);
  EXPECT_EQ(st.free_objects, 0u);
  for (uintptr_t a : sorted) ASSERT_EQ(g_pagemap.ClassOfAddress(a), 0u);
  PageHeapStats ph;
  g_heap.GetStats(&ph);
  EXPECT_EQ(ph.small_in_use_bytes, 0u);
}

INSTANTIATE_TEST_SUITE_P(Classes, CentralFreeListTest,
                         ::testing::Values(1u, 2u, 3u, SizeToClass(100), SizeToClass(1000),
                                           SizeToClass(4096), SizeToClass(6656), SizeToClass(40000),
                                           kNumClasses - 1));

TEST(CentralFreeList, FreshSlabIsCarvedLazily) {
  static CentralFreeList list;
  // The class of small objects with the most pages per span.
  uint32_t cls = 1;
  for (uint32_t c = 1; ClassToSize(c) <= kPageSize; ++c) {
    if (ClassToPages(c) > ClassToPages(cls)) cls = c;
  }
  list.Init(cls, &g_heap);
  ASSERT_GE(ClassToPages(cls), 2u);
  void* p;
  ASSERT_EQ(list.RemoveRange(&p, 1), 1);
  memset(p, 1, ClassToSize(cls));
  Span* span = SpanOf(p);
  ASSERT_NE(span, nullptr);
  EXPECT_EQ(span->carved, 1u);
  // Only the page of the one object handed out is resident.
  EXPECT_LE(ResidentBytes(span->start(), span->bytes()), kPageSize);
  list.InsertRange(&p, 1);
}

TEST(CentralFreeList, ReturnedObjectsAreReusedBeforeCarving) {
  static CentralFreeList list;
  uint32_t cls = SizeToClass(64);
  list.Init(cls, &g_heap);
  // One home slot throughout: RemoveRange would follow the CPU, and a
  // thread that migrated between the calls would carve another home span.
  void* a[4];
  ASSERT_EQ(list.RemoveRangeFor(0, a, 4), 4);
  list.InsertRange(&a[1], 1);
  void* b;
  ASSERT_EQ(list.RemoveRangeFor(0, &b, 1), 1);
  EXPECT_EQ(b, a[1]);
  list.InsertRange(a, 1);
  list.InsertRange(&b, 1);
  list.InsertRange(&a[2], 2);
  CentralFreeListStats st;
  list.GetStats(&st);
  EXPECT_EQ(st.spans, 0u);
}

// A class of one object per span needs a span per object: a batch takes
// them from the page heap together (PageHeap::NewSpans), exactly as many as
// it needs, and hands the objects out in address order as before.
TEST(CentralFreeList, OneObjectSpansComeTogetherInAddressOrder) {
  uint32_t cls = SizeToClass(64 << 10);
  ASSERT_EQ(ClassToPages(cls) * kPageSize / ClassToSize(cls), 1u);
  static constinit PageHeap heap;  // fresh: the spans are cut from one run
  static CentralFreeList list;
  list.Init(cls, &heap);
  void* objs[12];
  ASSERT_EQ(list.RemoveRange(objs, 12), 12);
  for (int i = 1; i < 12; ++i) {
    EXPECT_GT(reinterpret_cast<uintptr_t>(objs[i]), reinterpret_cast<uintptr_t>(objs[i - 1]));
  }
  CentralFreeListStats st;
  list.GetStats(&st);
  EXPECT_EQ(st.spans, 12u);
  EXPECT_EQ(st.free_objects, 0u);
  list.InsertRange(objs, 12);
  list.GetStats(&st);
  EXPECT_EQ(st.spans, 0u);
  ExpectBalanced(&heap);
}

// Two CPUs refilling one small class in turn, one object at a time, carve
// two spans, not one span in alternation (false sharing).
TEST(CentralFreeListHomes, TwoHomesTakingTurnsCarveTwoSpans) {
  static CentralFreeList list;
  uint32_t cls = SizeToClass(16);
  list.Init(cls, &g_heap);
  constexpr int kEach = 100;
  void* got[2][kEach];
  for (int i = 0; i < kEach; ++i) {
    ASSERT_EQ(list.RemoveRangeFor(3, &got[0][i], 1), 1);
    ASSERT_EQ(list.RemoveRangeFor(kHomes - 1, &got[1][i], 1), 1);
  }
  Span* span0 = SpanOf(got[0][0]);
  Span* span1 = SpanOf(got[1][0]);
  EXPECT_NE(span0, span1);
  for (int i = 0; i < kEach; ++i) {
    ASSERT_EQ(SpanOf(got[0][i]), span0);
    ASSERT_EQ(SpanOf(got[1][i]), span1);
    // Carved in order: a run of consecutive objects per home.
    ASSERT_EQ(static_cast<char*>(got[0][i]), static_cast<char*>(got[0][0]) + 16 * i);
  }
  for (auto& g : got) list.InsertRange(g, kEach);
  CentralFreeListStats st;
  list.GetStats(&st);
  EXPECT_EQ(st.spans, 0u);  // emptied home spans went back to the page heap
}

// A home span that fills up is dropped; when an object comes back it joins
// the shared list, where another home finds it before carving a new span.
TEST(CentralFreeListHomes, FullHomeSpanRejoinsTheSharedList) {
  static CentralFreeList list;
  uint32_t cls = SizeToClass(512);
  list.Init(cls, &g_heap);
  int per_span = static_cast<int>(ClassToPages(cls) * kPageSize / ClassToSize(cls));
  std::vector<void*> first(per_span);
  ASSERT_EQ(list.RemoveRangeFor(0, first.data(), per_span), per_span);
  Span* full = SpanOf(first[0]);
  void* next;
  ASSERT_EQ(list.RemoveRangeFor(0, &next, 1), 1);  // home 0 moves on
  EXPECT_NE(SpanOf(next), full);
  list.InsertRange(&first[5], 1);
  void* other;
  ASSERT_EQ(list.RemoveRangeFor(1, &other, 1), 1);
  EXPECT_EQ(other, first[5]);
  // Home 1 owns that span now: home 0 carves its own, not from it.
  void* again;
  ASSERT_EQ(list.RemoveRangeFor(0, &again, 1), 1);
  EXPECT_EQ(SpanOf(again), SpanOf(next));
  list.InsertRange(first.data(), per_span);
  list.InsertRange(&next, 1);
  list.InsertRange(&again, 1);
  CentralFreeListStats st;
  list.GetStats(&st);
  EXPECT_EQ(st.spans, 0u);
  EXPECT_EQ(st.free_objects, 0u);
}

// Classes above kHomeMaxObjectBytes share their spans: their objects span
// whole lines, and a partly carved span per CPU would cost more memory.
TEST(CentralFreeListHomes, LargeClassesShareSpans) {
  static CentralFreeList list;
  uint32_t cls = SizeToClass(2048);
  ASSERT_GT(ClassToSize(cls), kHomeMaxObjectBytes);
  list.Init(cls, &g_heap);
  void* a;
  void* b;
  ASSERT_EQ(list.RemoveRangeFor(0, &a, 1), 1);
  ASSERT_EQ(list.RemoveRangeFor(1, &b, 1), 1);
  EXPECT_EQ(SpanOf(a), SpanOf(b));
  list.InsertRange(&a, 1);
  list.InsertRange(&b, 1);
}

TEST(CentralFreeListDeathTest, ForeignObjectCrashesWithAMessage) {
  static CentralFreeList list;
  list.Init(SizeToClass(32), &g_heap);
  static CentralFreeList other;
  other.Init(SizeToClass(48), &g_heap);
  void* p;
  ASSERT_EQ(other.RemoveRange(&p, 1), 1);
  EXPECT_DEATH(list.InsertRange(&p, 1), "^rseqmalloc: free\\(\\): double free or invalid pointer 0x[0-9a-f]+\n$");
  other.InsertRange(&p, 1);
}

TEST(CentralFreeListDeathTest, InteriorPointerCrashesWithAMessage) {
  static CentralFreeList list;
  list.Init(SizeToClass(48), &g_heap);
  void* p[2];
  ASSERT_EQ(list.RemoveRange(p, 2), 2);
  void* interior = static_cast<char*>(p[0]) + 16;
  EXPECT_DEATH(list.InsertRange(&interior, 1),
               "^rseqmalloc: free\\(\\): invalid pointer \\(not the start of an object\\) "
               "0x[0-9a-f]+\n$");
  list.InsertRange(p, 2);
}

TEST(CentralFreeListDeathTest, BackToBackDoubleFreeCrashesWithAMessage) {
  static CentralFreeList list;
  list.Init(SizeToClass(64), &g_heap);
  void* p[2];
  ASSERT_EQ(list.RemoveRange(p, 2), 2);  // two out, so the span stays live
  void* twice[2] = {p[0], p[0]};
  EXPECT_DEATH(list.InsertRange(twice, 2), "^rseqmalloc: free\\(\\): double free 0x[0-9a-f]+\n$");
  list.InsertRange(p, 2);
}

}  // namespace
}  // namespace rseqmalloc::internal
