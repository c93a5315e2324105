// Giving back the OS pages of free objects in partly used slabs
// (CentralFreeList::ReleaseInsideFreeObjects): the pages inside free
// objects of a page or more, the pages only free objects touch for smaller
// ones, and what comes of it (objects coming back, double frees caught,
// corrupted lists refused, concurrent batches, a waiting thread).
#include "allocator/central/central_freelist.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "allocator/base/size_classes.h"
#include "allocator/pages/page_heap.h"
#include "allocator/pages/page_heap_test_util.h"

namespace rseqmalloc::internal {
namespace {

constinit PageHeap g_heap;

// A list of class cls, set up afresh. The parameterised tests below use
// disjoint classes, and each gives back every object it takes.
CentralFreeList& FreshList(uint32_t cls) {
  static CentralFreeList lists[kNumClasses];
  lists[cls].Init(cls, &g_heap);
  return lists[cls];
}

// Bytes of the whole 4 KiB pages in [from, to).
size_t InnerBytes(uintptr_t from, uintptr_t to) {
  uintptr_t begin = (from + 4095) & ~uintptr_t{4095}, end = to & ~uintptr_t{4095};
  return begin < end ? end - begin : 0;
}

class ReleaseInsideTest : public ::testing::TestWithParam<uint32_t> {};

// Slabs of objects bigger than a page, each with some objects live: the
// pages inside the free ones (past each link) go back to the OS, the live
// ones and every link stay, and the free objects all come back, once each.
TEST_P(ReleaseInsideTest, FreeObjectsGiveBackTheirInnerPagesOnly) {
  uint32_t cls = GetParam();
  size_t size = ClassToSize(cls);
  CentralFreeList& list = FreshList(cls);
  ASSERT_TRUE(list.HasInnerPages());
  size_t per_span = ClassToPages(cls) * kPageSize / size;
  ASSERT_GE(per_span, 2u);
  int n = static_cast<int>(per_span * 3);
  std::vector<void*> objs(n);
  ASSERT_EQ(list.RemoveRange(objs.data(), n), n);
  for (void* p : objs) memset(p, 0x5a, size);
  // One object of each slab stays live, so that no slab empties.
  std::vector<void*> live, freed;
  std::set<Span*> spans;
  for (void* p : objs) (spans.insert(SpanOf(p)).second ? live : freed).push_back(p);
  ASSERT_EQ(spans.size(), 3u);
  list.InsertRange(freed.data(), static_cast<int>(freed.size()));

  size_t expected = 0;
  for (void* p : freed) {
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    expected += InnerBytes(a + sizeof(void*), a + size);
  }
  for (Span* span : spans) {  // carved whole: only the tail after the last object
    expected += InnerBytes(span->start_address() + per_span * size,
                           span->start_address() + span->bytes());
  }
  ASSERT_GT(expected, 0u);

  uint64_t stale = list.activity() - 1;
  uint64_t released = 0;
  EXPECT_FALSE(list.ReleaseInsideFreeObjects(stale, &released));
  EXPECT_EQ(released, 0u);
  EXPECT_FALSE(list.ReleasedAt(list.activity()));
  ASSERT_TRUE(list.ReleaseInsideFreeObjects(list.activity(), &released));
  EXPECT_EQ(released, expected);
  EXPECT_TRUE(list.ReleasedAt(list.activity()));

  for (void* p : freed) {
    uintptr_t a = reinterpret_cast<uintptr_t>(p);
    uintptr_t begin = (a + sizeof(void*) + 4095) & ~uintptr_t{4095};
    if (begin + 4096 <= a + size) {
      EXPECT_EQ(ResidentBytes(reinterpret_cast<void*>(begin), 4096), 0u) << p;
      EXPECT_EQ(*reinterpret_cast<const char*>(begin), 0) << p;  // reads as zero
    }
  }
  for (void* p : live) {
    const unsigned char* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < size; i += 512) ASSERT_EQ(b[i], 0x5a) << p;
    ASSERT_EQ(b[size - 1], 0x5a) << p;
  }

  // Every free object comes back once (the links survived), and is usable.
  std::vector<void*> again(freed.size());
  ASSERT_EQ(list.RemoveRange(again.data(), static_cast<int>(again.size())),
            static_cast<int>(again.size()));
  EXPECT_EQ(std::set<void*>(again.begin(), again.end()),
            std::set<void*>(freed.begin(), freed.end()));
  for (void* p : again) memset(p, 0x33, size);
  EXPECT_FALSE(list.ReleasedAt(list.activity()));  // the batches count as activity
  list.InsertRange(again.data(), static_cast<int>(again.size()));
  list.InsertRange(live.data(), static_cast<int>(live.size()));
  CentralFreeListStats st;
  list.GetStats(&st);
  EXPECT_EQ(st.spans, 0u);
}

INSTANTIATE_TEST_SUITE_P(Classes, ReleaseInsideTest,
                         ::testing::Values(SizeToClass(6656), SizeToClass(10240),
                                           SizeToClass(8192), SizeToClass(20480)));

class ReleaseFreePagesTest : public ::testing::TestWithParam<uint32_t> {};

// Slabs of objects too small to hold a page: an OS page that only free (or
// never carved) objects touch goes back to the OS, pages a live object
// touches stay, and so does a page with both carved and never-carved object
// starts. Every free object comes back once, live ones keep their bytes,
// and freeing an object of a released page again is a double free.
TEST_P(ReleaseFreePagesTest, PagesOfFreeObjectsOnlyGoBackAndTheirObjectsReturn) {
  uint32_t cls = GetParam();
  size_t size = ClassToSize(cls);
  CentralFreeList& list = FreshList(cls);
  ASSERT_FALSE(list.HasInnerPages());
  size_t per_span = ClassToPages(cls) * kPageSize / size;
  size_t span_bytes = ClassToPages(cls) * kPageSize;
  // Two slabs carved whole and a third carved to a little past its middle,
  // all from one home so that they are carved in order.
  int n = static_cast<int>(per_span * 2 + per_span / 2 + 1);
  std::vector<void*> objs(n);
  ASSERT_EQ(list.RemoveRangeFor(0, objs.data(), n), n);
  for (void* p : objs) memset(p, 0x5a, size);
  std::vector<Span*> spans;
  for (void* p : objs) {
    if (std::find(spans.begin(), spans.end(), SpanOf(p)) == spans.end()) spans.push_back(SpanOf(p));
  }
  ASSERT_EQ(spans.size(), 3u);
  // Live: the first object of every slab, and the last object of the first.
  std::vector<void*> live, freed;
  std::set<uintptr_t> live_at;
  for (void* p : objs) {
    uintptr_t a = reinterpret_cast<uintptr_t>(p), base = SpanOf(p)->start_address();
    bool keep = a == base || (SpanOf(p) == spans[0] && a == base + (per_span - 1) * size);
    (keep ? live : freed).push_back(p);
    if (keep) live_at.insert(a);
  }
  list.InsertRange(freed.data(), static_cast<int>(freed.size()));

  // The oracle: which OS pages may go.
  std::vector<uintptr_t> gone, kept;
  for (Span* span : spans) {
    uintptr_t base = span->start_address();
    size_t carved = 0;
    for (void* p : objs) carved += SpanOf(p) == span;
    for (uintptr_t page = base; page < base + span_bytes; page += 4096) {
      bool touched_by_live = false, carved_start = false, uncarved_start = false;
      for (size_t i = 0; i < per_span; ++i) {
        uintptr_t a = base + i * size;
        if (a < page + 4096 && a + size > page && live_at.count(a)) touched_by_live = true;
        if (a >= page && a < page + 4096) (i < carved ? carved_start : uncarved_start) = true;
      }
      (touched_by_live || (carved_start && uncarved_start) ? kept : gone).push_back(page);
    }
  }
  ASSERT_FALSE(gone.empty());

  CentralFreeListStats before;
  list.GetStats(&before);
  uint64_t released = 0;
  ASSERT_TRUE(list.ReleaseInsideFreeObjects(list.activity(), &released));
  EXPECT_EQ(released, gone.size() * 4096);
  for (uintptr_t page : gone) {
    EXPECT_EQ(ResidentBytes(reinterpret_cast<void*>(page), 4096), 0u) << page;
  }
  CentralFreeListStats after;
  list.GetStats(&after);
  EXPECT_EQ(after.free_objects, before.free_objects);  // released objects are still free
  EXPECT_EQ(after.spans, before.spans);
  for (void* p : live) {
    const unsigned char* b = static_cast<const unsigned char*>(p);
    for (size_t i = 0; i < size; ++i) ASSERT_EQ(b[i], 0x5a) << p;
  }
  // A second look releases nothing more (the released pages are known).
  uint64_t again_released = 0;
  list.InsertRange(nullptr, 0);  // counts as activity
  ASSERT_TRUE(list.ReleaseInsideFreeObjects(list.activity(), &again_released));
  EXPECT_EQ(again_released, 0u);

  // Every free object comes back once: the freed ones and the never carved.
  std::set<uintptr_t> expected;
  for (Span* span : spans) {
    for (size_t i = 0; i < per_span; ++i) {
      uintptr_t a = span->start_address() + i * size;
      if (!live_at.count(a)) expected.insert(a);
    }
  }
  std::vector<void*> back(expected.size());
  std::set<uintptr_t> got;
  for (size_t i = 0; i < back.size(); ++i) {  // one at a time: across the slabs
    ASSERT_EQ(list.RemoveRangeFor(0, &back[i], 1), 1);
    ASSERT_TRUE(got.insert(reinterpret_cast<uintptr_t>(back[i])).second) << back[i];
  }
  EXPECT_EQ(got, expected);
  list.GetStats(&after);
  EXPECT_GT(after.pages_taken_back, 0u);
  for (void* p : back) memset(p, 0x33, size);
  list.InsertRange(back.data(), static_cast<int>(back.size()));
  list.InsertRange(live.data(), static_cast<int>(live.size()));
  list.GetStats(&after);
  EXPECT_EQ(after.spans, 0u);
}

INSTANTIATE_TEST_SUITE_P(Classes, ReleaseFreePagesTest,
                         ::testing::Values(SizeToClass(16), SizeToClass(48), SizeToClass(256),
                                           SizeToClass(1024), SizeToClass(2816), SizeToClass(3584),
                                           SizeToClass(4096)));

// Many more threads than CPUs take and give back batches of small objects
// in rounds, keeping every slab's first object to the end, while another
// thread releases the free pages of the list whenever it holds still, and
// surely between rounds; each round takes more objects than the lists
// hold, so released pages come back while the others take and give back.
// Each object has one owner at a time (the owner's stamp survives until it
// gives the object back), and once everything is back no object is out:
// nothing lost, nothing twice.
TEST(CentralFreeList, ReleasingFreePagesUnderConcurrentBatchesLosesNothing) {
  for (size_t size : {size_t{48}, size_t{256}, size_t{2816}}) {
    static CentralFreeList lists[3];
    CentralFreeList& list = lists[size == 48 ? 0 : size == 256 ? 1 : 2];
    list.Init(SizeToClass(size), &g_heap);
    constexpr int kThreads = 8;
    constexpr int kRounds = 12;
    constexpr int kPerRound = 400;
    std::atomic<int> done{0};
    std::atomic<int> bad_stamps{0};
    std::barrier between(kThreads + 1);
    uint64_t released = 0, releases = 0, sure_releases = 0;
    std::thread releaser([&] {
      for (int round = 0; round < kRounds; ++round) {
        while (done.load(std::memory_order_acquire) < kThreads * (round + 1)) {
          uint64_t r = 0;
          if (list.ReleaseInsideFreeObjects(list.activity(), &r)) {
            ++releases;
            released += r;
          }
          std::this_thread::yield();
        }
        between.arrive_and_wait();
        uint64_t r = 0;
        sure_releases += list.ReleaseInsideFreeObjects(list.activity(), &r) ? 1 : 0;
        released += r;
        between.arrive_and_wait();
      }
    });
    std::vector<std::thread> workers;
    for (int t = 0; t < kThreads; ++t) {
      workers.emplace_back([&, t] {
        std::mt19937_64 rng(t);
        std::vector<std::pair<void*, uint64_t>> held, pinned;
        uint64_t serial = 0;
        auto give_back = [&](std::vector<std::pair<void*, uint64_t>>& from, size_t keep) {
          std::shuffle(from.begin(), from.end(), rng);
          while (from.size() > keep) {
            void* back[64];
            int n = 0;
            int bite = 1 + static_cast<int>(rng() % 64);
            while (n < bite && from.size() > keep) {
              auto [p, stamp] = from.back();
              from.pop_back();
              uint64_t a, b;
              memcpy(&a, static_cast<char*>(p) + 8, sizeof(a));
              memcpy(&b, static_cast<char*>(p) + 16, sizeof(b));
              if (a != stamp || b != stamp) bad_stamps.fetch_add(1);
              back[n++] = p;
            }
            list.InsertRange(back, n);
          }
        };
        for (int round = 0; round < kRounds; ++round) {
          int taken = 0;
          while (taken < kPerRound) {
            void* batch[64];
            int got = list.RemoveRange(batch, 1 + static_cast<int>(rng() % 64));
            for (int i = 0; i < got; ++i, ++taken) {
              uint64_t stamp = (uint64_t(t) << 48) | ++serial;
              memcpy(static_cast<char*>(batch[i]) + 8, &stamp, sizeof(stamp));
              memcpy(static_cast<char*>(batch[i]) + 16, &stamp, sizeof(stamp));
              (batch[i] == SpanOf(batch[i])->start() ? pinned : held).emplace_back(batch[i], stamp);
            }
            if (taken % 128 < 32) give_back(held, held.size() / 2);  // some traffic back
          }
          give_back(held, 0);
          done.fetch_add(1, std::memory_order_release);
          between.arrive_and_wait();
          between.arrive_and_wait();
        }
        give_back(pinned, 0);
      });
    }
    for (auto& w : workers) w.join();
    releaser.join();
    EXPECT_EQ(bad_stamps.load(), 0) << size;
    EXPECT_EQ(sure_releases, uint64_t{kRounds}) << size;
    EXPECT_GT(released, 0u) << size;
    CentralFreeListStats st;
    list.GetStats(&st);
    EXPECT_GT(st.pages_taken_back, 0u) << size;  // pages went, and came back to the batches
    // Nothing is out. (A slab may stay, wholly free: two refills of one
    // home that both went to the page heap leave one fresh slab listed.)
    EXPECT_EQ(st.out_objects, 0u) << size;
    std::printf("%zu B: %lu releases while batches ran, %lu bytes released, %lu pages taken back\n",
                size, static_cast<unsigned long>(releases), static_cast<unsigned long>(released),
                static_cast<unsigned long>(st.pages_taken_back));
  }
}

// One try of the test below on two fresh lists: kSlabs slabs each, carved
// whole and kept by their first objects. lists[1] measures what a whole
// pass releases; lists[0]'s pass runs while another thread takes and drops
// the lock over and over. Returns whether that pass stopped early; either
// way the next pass releases the rest, and nothing is counted twice.
bool PassWithAThreadAtTheLock(CentralFreeList (&lists)[2]) {
  const uint32_t cls = SizeToClass(256);
  const size_t per_span = ClassToPages(cls) * kPageSize / ClassToSize(cls);
  constexpr int kSlabs = 1000;
  std::vector<void*> live[2];
  for (int l = 0; l < 2; ++l) {
    lists[l].Init(cls, &g_heap);
    std::vector<void*> objs(per_span * kSlabs);
    EXPECT_EQ(lists[l].RemoveRangeFor(0, objs.data(), static_cast<int>(objs.size())),
              static_cast<int>(objs.size()));
    std::vector<void*> freed;
    for (void* p : objs) (p == SpanOf(p)->start() ? live[l] : freed).push_back(p);
    EXPECT_EQ(live[l].size(), size_t{kSlabs});
    lists[l].InsertRange(freed.data(), static_cast<int>(freed.size()));
  }
  uint64_t whole = 0;
  EXPECT_TRUE(lists[1].ReleaseInsideFreeObjects(lists[1].activity(), &whole));
  EXPECT_GT(whole, 0u);

  CentralFreeList& list = lists[0];
  std::atomic<bool> started{false}, stop{false};
  std::thread waiter([&] {
    while (!stop.load(std::memory_order_relaxed)) {
      list.Lock();  // waits whenever the pass holds the lock
      list.Unlock();
      started.store(true, std::memory_order_relaxed);
      std::this_thread::yield();
    }
  });
  while (!started.load(std::memory_order_relaxed)) std::this_thread::yield();
  uint64_t part = 0;
  bool finished = list.ReleaseInsideFreeObjects(list.activity(), &part);
  stop.store(true);
  waiter.join();
  if (!finished) {
    EXPECT_LT(part, whole);
  }
  uint64_t rest = 0;
  EXPECT_TRUE(list.ReleaseInsideFreeObjects(list.activity(), &rest));
  EXPECT_EQ(part + rest, whole);
  std::printf("the waited-for pass released %lu of %lu bytes\n",
              static_cast<unsigned long>(part), static_cast<unsigned long>(whole));
  for (int l = 0; l < 2; ++l) {
    lists[l].InsertRange(live[l].data(), static_cast<int>(live[l].size()));
    CentralFreeListStats st;
    lists[l].GetStats(&st);
    EXPECT_EQ(st.out_objects, 0u);
  }
  return !finished;
}

// The idle pass holds the list's lock across its madvise calls, but a
// thread that has to wait for that lock stops it before the next slab: the
// pass returns false having released part of what it would have, and the
// next pass releases the rest (the released pages are not counted twice).
// The waiting thread may not get a CPU while a pass runs (two tests run at
// once on two cores), and then the pass rightly finishes: the test tries
// up to kTries times, each on fresh lists, and needs one stopped pass.
TEST(CentralFreeList, IdlePassStopsForAThreadThatWaitsForTheLock) {
  constexpr int kTries = 20;
  static CentralFreeList lists[kTries][2];
  int tries = 0;
  bool stopped = false;
  while (!stopped && tries < kTries) stopped = PassWithAThreadAtTheLock(lists[tries++]);
  EXPECT_TRUE(stopped) << "no pass stopped for the waiting thread in " << kTries << " tries";
  std::printf("a pass stopped at try %d\n", tries);
}

// Objects up to a page (plus a link) hold no whole page past their link.
TEST(CentralFreeList, SmallClassesHaveNoInnerPages) {
  static CentralFreeList small, page, bigger;
  small.Init(SizeToClass(1024), &g_heap);
  page.Init(SizeToClass(4096), &g_heap);
  bigger.Init(SizeToClass(4097), &g_heap);
  EXPECT_FALSE(small.HasInnerPages());
  EXPECT_FALSE(page.HasInnerPages());
  EXPECT_TRUE(bigger.HasInnerPages());
  // Every class gives back its free pages one way or the other: the
  // smaller ones fit the per-slab page mark and the stack bitmap.
  static CentralFreeList all[kNumClasses];
  for (uint32_t cls = 1; cls < kNumClasses; ++cls) {
    all[cls].Init(cls, &g_heap);
    EXPECT_NE(all[cls].HasInnerPages(), all[cls].ReleasesFreePages()) << ClassToSize(cls);
  }
}

// A free object's link overwritten through a freed pointer (here: made to
// point at a live object) stops the release with a message, instead of
// zeroing the pages of whatever the list now leads to.
TEST(CentralFreeListDeathTest, ReleaseInsideCrashesOnACorruptedFreeList) {
  static CentralFreeList list;
  list.Init(SizeToClass(10240), &g_heap);
  void* a[3];
  ASSERT_EQ(list.RemoveRange(a, 3), 3);
  ASSERT_EQ(SpanOf(a[0]), SpanOf(a[2]));
  list.InsertRange(&a[1], 1);
  *static_cast<void**>(a[1]) = a[2];
  uint64_t released = 0;
  EXPECT_DEATH(list.ReleaseInsideFreeObjects(list.activity(), &released), "free list corrupted");
  *static_cast<void**>(a[1]) = nullptr;
  list.InsertRange(a, 1);
  list.InsertRange(&a[2], 1);
}

// An object whose page went back to the OS is free; freeing it again is
// caught, not linked in twice.
TEST(CentralFreeListDeathTest, FreeingAnObjectOfAReleasedPageAgainCrashes) {
  static CentralFreeList list;
  list.Init(SizeToClass(256), &g_heap);
  size_t per_span = kPageSize / 256;
  std::vector<void*> objs(per_span);
  ASSERT_EQ(list.RemoveRangeFor(0, objs.data(), static_cast<int>(per_span)),
            static_cast<int>(per_span));
  // Keep the first object; the second OS page holds free objects only.
  list.InsertRange(objs.data() + 1, static_cast<int>(per_span - 1));
  uint64_t released = 0;
  ASSERT_TRUE(list.ReleaseInsideFreeObjects(list.activity(), &released));
  ASSERT_EQ(released, 4096u);
  void* again = objs[per_span - 1];
  EXPECT_DEATH(list.InsertRange(&again, 1), "^rseqmalloc: free\\(\\): double free 0x[0-9a-f]+\n$");
  std::vector<void*> back(per_span - 1);
  ASSERT_EQ(list.RemoveRangeFor(0, back.data(), static_cast<int>(back.size())),
            static_cast<int>(back.size()));
  list.InsertRange(back.data(), static_cast<int>(back.size()));
  list.InsertRange(objs.data(), 1);
}

}  // namespace
}  // namespace rseqmalloc::internal
