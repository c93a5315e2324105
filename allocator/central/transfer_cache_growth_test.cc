// The transfer cache's capacity: growth for round trips through the spans
// (classes up to kTransferCacheBurstAboveBytes), growth on bursts of frees
// (bigger classes), idle intervals that halve it, and drains.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>
#include <vector>

#include "allocator/base/size_classes.h"
#include "allocator/central/central_freelist.h"
#include "allocator/central/transfer_cache.h"
#include "allocator/central/transfer_cache_test_util.h"

namespace rseqmalloc::internal {
namespace {

// Frees that overflow into the spans, then a refill that has to read them
// back out: the capacity doubles, and the next round trip of the same size
// stays in the cache.
TEST(TransferCache, GrowsWhenObjectsMakeRoundTripsThroughTheSpans) {
  uint32_t cls = SizeToClass(16);
  static Fixture f(cls);
  f.cache.Drain();  // a cache starts grown; a drain takes it to the base
  int cap = TransferCache::CapacityFor(cls);
  ASSERT_LT(cap, TransferCache::GrownCapacityFor(cls));
  int n = 2 * cap;
  std::vector<void*> objs(n);
  const auto down = [&] { return StatsOf(f.cache).to_central; };
  const auto up = [&] { return StatsOf(f.cache).from_central; };
  ASSERT_EQ(f.cache.RemoveRange(objs.data(), n), n);
  EXPECT_EQ(StatsOf(f.cache).grows, 0u);  // nothing overflowed yet
  EXPECT_EQ(up(), static_cast<uint64_t>(n));  // fresh from the spans
  f.cache.InsertRange(objs.data(), n);
  EXPECT_EQ(StatsOf(f.cache).objects, static_cast<uint64_t>(cap));
  EXPECT_EQ(CentralOut(f.central), static_cast<uint64_t>(cap));  // the rest went back
  EXPECT_EQ(down(), static_cast<uint64_t>(n - cap));

  ASSERT_EQ(f.cache.RemoveRange(objs.data(), n), n);
  EXPECT_EQ(StatsOf(f.cache).capacity, static_cast<uint64_t>(2 * cap));
  EXPECT_EQ(StatsOf(f.cache).grows, 1u);
  EXPECT_EQ(up(), static_cast<uint64_t>(n + n - cap));  // the round trip's way up
  f.cache.InsertRange(objs.data(), n);
  EXPECT_EQ(StatsOf(f.cache).objects, static_cast<uint64_t>(n));
  EXPECT_EQ(CentralOut(f.central), static_cast<uint64_t>(n));  // none went down
  ASSERT_EQ(f.cache.RemoveRange(objs.data(), n), n);
  EXPECT_EQ(CentralOut(f.central), static_cast<uint64_t>(n));
  EXPECT_EQ(StatsOf(f.cache).grows, 1u);
  EXPECT_EQ(down(), static_cast<uint64_t>(n - cap));  // no more round trips
  EXPECT_EQ(up(), static_cast<uint64_t>(n + n - cap));
  EXPECT_EQ(std::set<void*>(objs.begin(), objs.end()).size(), static_cast<size_t>(n));

  // Idle for a whole interval: the objects go back and the capacity halves.
  f.cache.InsertRange(objs.data(), n);
  f.cache.ReturnIdle();  // ends the interval in which it grew
  EXPECT_EQ(StatsOf(f.cache).capacity, static_cast<uint64_t>(2 * cap));
  EXPECT_EQ(f.cache.ReturnIdle(), n);
  EXPECT_EQ(StatsOf(f.cache).capacity, static_cast<uint64_t>(cap));
  EXPECT_EQ(StatsOf(f.cache).objects, 0u);
  EXPECT_EQ(down(), static_cast<uint64_t>(n - cap));  // an idle return is no overflow
  ExpectEveryObjectInItsSpan(f.central);
}

// Frees that overflow without refills from the spans (one CPU frees more
// than any allocates) are not a round trip: no growth. Drain resets growth.
TEST(TransferCache, OneWayOverflowDoesNotGrowAndDrainResets) {
  uint32_t cls = SizeToClass(32);
  static Fixture f(cls);
  f.cache.Drain();  // from the base capacity
  int cap = TransferCache::CapacityFor(cls);
  int n = 3 * cap;
  std::vector<void*> objs(n);
  ASSERT_EQ(f.cache.RemoveRange(objs.data(), n), n);
  f.cache.InsertRange(objs.data(), n);
  ASSERT_EQ(f.cache.RemoveRange(objs.data(), cap), cap);  // all from the cache
  f.cache.InsertRange(objs.data(), cap);
  EXPECT_EQ(StatsOf(f.cache).grows, 0u);
  EXPECT_EQ(StatsOf(f.cache).capacity, static_cast<uint64_t>(cap));

  // Grow to the limit, then drain: back to the first capacity, nothing lost.
  int grown = TransferCache::GrownCapacityFor(cls);
  std::vector<void*> many(grown);
  for (int i = 0; i < 10 && StatsOf(f.cache).capacity < static_cast<uint64_t>(grown); ++i) {
    ASSERT_EQ(f.cache.RemoveRange(many.data(), grown), grown);
    f.cache.InsertRange(many.data(), grown);
  }
  EXPECT_EQ(StatsOf(f.cache).capacity, static_cast<uint64_t>(grown));
  EXPECT_EQ(StatsOf(f.cache).objects, static_cast<uint64_t>(grown));
  f.cache.Drain();
  EXPECT_EQ(StatsOf(f.cache).capacity, static_cast<uint64_t>(cap));
  ExpectEveryObjectInItsSpan(f.central);
}

// A shrink with objects still cached gives back only slot pages no object
// uses: the stack grows down from the end of its slots, so the pages given
// back are the low ones. Every object comes back out, none is lost.
TEST(TransferCache, ShrinkKeepsTheObjectsStillCached) {
  uint32_t cls = SizeToClass(48);
  static Fixture f(cls);
  int grown = TransferCache::GrownCapacityFor(cls);
  ASSERT_GE(grown, 4 * TransferCache::CapacityFor(cls));
  std::vector<void*> many(grown);
  for (int i = 0; i < 10 && StatsOf(f.cache).capacity < static_cast<uint64_t>(grown); ++i) {
    ASSERT_EQ(f.cache.RemoveRange(many.data(), grown), grown);
    f.cache.InsertRange(many.data(), grown);
  }
  ASSERT_EQ(StatsOf(f.cache).capacity, static_cast<uint64_t>(grown));
  ASSERT_EQ(f.cache.RemoveRange(many.data(), grown), grown);  // empty: low water 0

  // x objects stay all interval (the idle ones), y more come after them.
  int x = grown / 8;
  int y = grown / 4;
  f.cache.InsertRange(many.data(), x);
  f.cache.ReturnIdle();  // ends the interval in which it grew; nothing idle
  f.cache.InsertRange(many.data() + x, y);
  EXPECT_EQ(f.cache.ReturnIdle(), x);  // x go to the spans, then the shrink
  ASSERT_EQ(StatsOf(f.cache).capacity, static_cast<uint64_t>(grown / 2));
  ASSERT_EQ(StatsOf(f.cache).objects, static_cast<uint64_t>(y));

  std::vector<void*> out(y);
  ASSERT_EQ(f.cache.RemoveRange(out.data(), y), y);
  std::set<void*> inserted(many.begin(), many.begin() + x + y);
  std::set<void*> got(out.begin(), out.end());
  EXPECT_EQ(got.size(), static_cast<size_t>(y)) << "an object came out twice";
  for (void* p : out) EXPECT_TRUE(inserted.count(p) == 1) << "slot lost to the shrink: " << p;
  f.cache.InsertRange(out.data(), y);
  f.cache.InsertRange(many.data() + x + y, grown - x - y);
  f.cache.Drain();
  ExpectEveryObjectInItsSpan(f.central);
}

// A class over kTransferCacheBurstAboveBytes: its base capacity and batch.
struct BigClass {
  explicit BigClass(size_t size)
      : cls(SizeToClass(size)),
        base(TransferCache::CapacityFor(cls)),
        batch(ClassToBatch(cls)) {}
  uint32_t cls;
  int base;
  int batch;
};

// Frees n objects a batch at a time, as CPU caches overflow.
void FreeInBatches(TransferCache& cache, void* const* objs, int n, int batch) {
  for (int i = 0; i < n; i += batch) cache.InsertRange(objs + i, std::min(batch, n - i));
}

// A burst of big objects (sparse_writes: thousands of 8-128 KiB blocks
// freed together, then allocated again) comes back from the cache: each
// of them is a span of its own, and through the central list every one
// would be a span released to the page heap, merged, then cut again. The
// cache starts at its base capacity; the frees that fill it and those that
// complete the burst before it grows go down, the rest stay.
TEST(TransferCache, ABurstOfBigObjectsComesBackWithoutTheSpans) {
  const BigClass big(128 << 10);
  const uint32_t cls = big.cls;
  const int base = big.base;
  const int batch = big.batch;
  ASSERT_GT(ClassToSize(cls), kTransferCacheBurstAboveBytes);
  static Fixture f(cls);
  ASSERT_LT(base, kTransferCacheBurstObjects);  // some frees go down before the growth
  EXPECT_EQ(StatsOf(f.cache).capacity, static_cast<uint64_t>(base));
  const int n = static_cast<int>((size_t{8} << 20) / ClassToSize(cls));  // 8 MiB
  ASSERT_EQ(n % batch, 0);
  std::vector<void*> objs(static_cast<size_t>(n));
  ASSERT_EQ(f.cache.RemoveRange(objs.data(), n), n);  // fresh from the spans
  FreeInBatches(f.cache, objs.data(), n, batch);
  const int went_down = kTransferCacheBurstObjects - batch - base;
  EXPECT_EQ(StatsOf(f.cache).grows, 1u);
  EXPECT_EQ(StatsOf(f.cache).capacity,
            static_cast<uint64_t>(TransferCache::GrownCapacityFor(cls)));
  EXPECT_EQ(StatsOf(f.cache).to_central, static_cast<uint64_t>(went_down));
  EXPECT_EQ(StatsOf(f.cache).objects, static_cast<uint64_t>(n - went_down));

  std::vector<void*> again(static_cast<size_t>(n));
  ASSERT_EQ(f.cache.RemoveRange(again.data(), n), n);
  EXPECT_EQ(std::set<void*>(objs.begin(), objs.end()),
            std::set<void*>(again.begin(), again.end()));
  EXPECT_EQ(StatsOf(f.cache).from_central, static_cast<uint64_t>(n + went_down));
  // The next burst stays whole.
  FreeInBatches(f.cache, again.data(), n, batch);
  EXPECT_EQ(StatsOf(f.cache).to_central, static_cast<uint64_t>(went_down));
  EXPECT_EQ(StatsOf(f.cache).objects, static_cast<uint64_t>(n));
  f.cache.Drain();
  EXPECT_EQ(StatsOf(f.cache).capacity, static_cast<uint64_t>(base));
  ExpectEveryObjectInItsSpan(f.central);
}

// A server's table holds a few objects of each big class and replaces them
// at random: the count of a class's live objects wanders, and a CPU cache
// of two batches overflows into the transfer cache and refills from it in
// turn. Round trips through the spans happen all the time (they grow a
// small class: GrowsWhenObjectsMakeRoundTripsThroughTheSpans), but never
// 16 frees in a row, so a big class stays at its base capacity and its
// wandering goes back to the spans. Then a burst grows it.
TEST(TransferCache, BigClassesDoNotGrowOnWanderingCounts) {
  const BigClass big(256 << 10);
  ASSERT_GT(ClassToSize(big.cls), kTransferCacheBurstAboveBytes);
  static Fixture f(big.cls);
  const int batch = big.batch;
  constexpr int kMostLive = 12;  // the program's objects of the class, at most
  ASSERT_LT(kMostLive, kTransferCacheBurstObjects);
  std::vector<void*> live;
  std::mt19937 rng(7);
  for (int step = 0; step < 20000; ++step) {
    bool allocate = live.empty() ||
                    (live.size() + batch <= kMostLive && std::bernoulli_distribution(0.5)(rng));
    void* b[kMaxBatch];
    if (allocate) {
      ASSERT_EQ(f.cache.RemoveRange(b, batch), batch);
      live.insert(live.end(), b, b + batch);
    } else {
      std::shuffle(live.begin(), live.end(), rng);
      std::copy(live.end() - batch, live.end(), b);
      live.resize(live.size() - batch);
      f.cache.InsertRange(b, batch);
    }
  }
  TransferCacheStats t = StatsOf(f.cache);
  EXPECT_GT(t.to_central, 1000u);  // it overflowed, and refills read those back:
  EXPECT_GT(t.from_central, 1000u + kMostLive);  // round trips
  EXPECT_EQ(t.grows, 0u);
  EXPECT_EQ(t.capacity, static_cast<uint64_t>(big.base));

  // The same class, 16 objects freed together: it grows.
  std::vector<void*> burst(kTransferCacheBurstObjects);
  ASSERT_EQ(f.cache.RemoveRange(burst.data(), kTransferCacheBurstObjects),
            kTransferCacheBurstObjects);
  FreeInBatches(f.cache, burst.data(), kTransferCacheBurstObjects, batch);
  EXPECT_EQ(StatsOf(f.cache).grows, 1u);
  EXPECT_EQ(StatsOf(f.cache).capacity,
            static_cast<uint64_t>(TransferCache::GrownCapacityFor(big.cls)));
  if (!live.empty()) f.cache.InsertRange(live.data(), static_cast<int>(live.size()));
  f.cache.Drain();
  ExpectEveryObjectInItsSpan(f.central);
}

// A cache of a class up to kTransferCacheBurstAboveBytes starts at its
// grown capacity, so a program's first round trips stay in it; an
// interval with idle objects and no round trip halves it, and a drain
// takes it to the base capacity.
TEST(TransferCache, StartsGrownAndIdleIntervalsShrinkIt) {
  uint32_t cls = SizeToClass(80);
  static Fixture f(cls);
  const int grown = TransferCache::GrownCapacityFor(cls);
  const int cap = TransferCache::CapacityFor(cls);
  ASSERT_GE(grown, 4 * cap);
  EXPECT_EQ(StatsOf(f.cache).capacity, static_cast<uint64_t>(grown));

  std::vector<void*> objs(static_cast<size_t>(grown));
  ASSERT_EQ(f.cache.RemoveRange(objs.data(), grown), grown);  // fresh from the spans
  f.cache.InsertRange(objs.data(), grown);
  EXPECT_EQ(StatsOf(f.cache).objects, static_cast<uint64_t>(grown));  // none went down
  EXPECT_EQ(StatsOf(f.cache).to_central, 0u);

  f.cache.ReturnIdle();  // starts an interval
  EXPECT_EQ(f.cache.ReturnIdle(), grown);  // all stayed through it
  EXPECT_EQ(StatsOf(f.cache).capacity, static_cast<uint64_t>(grown / 2));
  f.cache.Drain();
  EXPECT_EQ(StatsOf(f.cache).capacity, static_cast<uint64_t>(cap));
  ExpectEveryObjectInItsSpan(f.central);
}

}  // namespace
}  // namespace rseqmalloc::internal
