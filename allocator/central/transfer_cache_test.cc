#include "allocator/central/transfer_cache.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "allocator/central/central_freelist.h"
#include "allocator/central/transfer_cache_test_util.h"
#include "allocator/central/transfer_shards.h"
#include "allocator/pages/page_heap.h"
#include "allocator/base/size_classes.h"

namespace rseqmalloc::internal {
namespace {

TEST(TransferCache, CapacityIsBoundedInBatchesAndBytes) {
  for (uint32_t cls = 1; cls < kNumClasses; ++cls) {
    size_t cap = static_cast<size_t>(TransferCache::CapacityFor(cls));
    size_t batch = static_cast<size_t>(ClassToBatch(cls));
    EXPECT_GE(cap, 2 * batch) << cls;
    EXPECT_LE(cap, kTransferCacheBatches * batch) << cls;
    EXPECT_LE(cap * ClassToSize(cls),
              std::max(kTransferCacheMaxBytes, 2 * batch * ClassToSize(cls)))
        << cls;
  }
}

TEST(TransferCache, GrownCapacityIsBoundedInBatchesAndBytes) {
  for (uint32_t cls = 1; cls < kNumClasses; ++cls) {
    size_t cap = static_cast<size_t>(TransferCache::GrownCapacityFor(cls));
    size_t batch = static_cast<size_t>(ClassToBatch(cls));
    EXPECT_GE(cap, static_cast<size_t>(TransferCache::CapacityFor(cls))) << cls;
    EXPECT_LE(cap, kTransferCacheGrownBatches * batch) << cls;
    EXPECT_LE(cap * ClassToSize(cls),
              std::max(kTransferCacheGrownBytes, 2 * batch * ClassToSize(cls)))
        << cls;
  }
}

TEST(TransferCache, FreedBatchIsServedBackWithoutTouchingSlabs) {
  static Fixture f(SizeToClass(128));
  void* a[32];
  ASSERT_EQ(f.cache.RemoveRange(a, 32), 32);
  CentralFreeListStats c0;
  f.central.GetStats(&c0);
  EXPECT_EQ(c0.out_objects, 32u);
  f.cache.InsertRange(a, 32);
  TransferCacheStats t;
  f.cache.GetStats(&t);
  EXPECT_EQ(t.objects, 32u);
  EXPECT_EQ(t.outstanding, 0);
  void* b[32];
  ASSERT_EQ(f.cache.RemoveRange(b, 32), 32);
  EXPECT_EQ(std::set<void*>(a, a + 32), std::set<void*>(b, b + 32));
  CentralFreeListStats c1;
  f.central.GetStats(&c1);
  EXPECT_EQ(c1.out_objects, 32u);  // the slabs never saw the round trip
  f.cache.InsertRange(b, 32);
  f.cache.Drain();
  f.central.GetStats(&c1);
  EXPECT_EQ(c1.spans, 0u);
}

TEST(TransferCache, OverflowGoesToTheCentralListAndRefillsFromIt) {
  uint32_t cls = SizeToClass(8192);  // up to kTransferCacheBurstAboveBytes: starts grown
  static Fixture f(cls);
  int cap = TransferCache::GrownCapacityFor(cls);  // it starts grown
  int n = cap + 10;
  std::vector<void*> objs(n);
  ASSERT_EQ(f.cache.RemoveRange(objs.data(), n), n);
  EXPECT_EQ(std::set<void*>(objs.begin(), objs.end()).size(), static_cast<size_t>(n));
  f.cache.InsertRange(objs.data(), n);
  TransferCacheStats t;
  f.cache.GetStats(&t);
  EXPECT_EQ(t.objects, static_cast<uint64_t>(cap));
  EXPECT_EQ(t.outstanding, 0);
  CentralFreeListStats c;
  f.central.GetStats(&c);
  EXPECT_EQ(c.out_objects, static_cast<uint64_t>(cap));

  // Asking for more than is cached takes the cache and tops up centrally.
  std::vector<void*> again(n);
  ASSERT_EQ(f.cache.RemoveRange(again.data(), n), n);
  f.cache.GetStats(&t);
  EXPECT_EQ(t.objects, 0u);
  EXPECT_EQ(t.outstanding, n);
  EXPECT_EQ(std::set<void*>(again.begin(), again.end()).size(), static_cast<size_t>(n));
  f.cache.InsertRange(again.data(), n);
  f.cache.Drain();
  f.cache.GetStats(&t);
  EXPECT_EQ(t.objects, 0u);
  f.central.GetStats(&c);
  EXPECT_EQ(c.out_objects, 0u);
  EXPECT_EQ(c.spans, 0u);
}

// Batches are in pop order (element 0 first); the cache is one stack: the
// last batch in is the first out, each in the order it came.
TEST(TransferCache, BatchesComeBackInStackOrder) {
  static Fixture f(SizeToClass(64));
  void* a[4];
  ASSERT_EQ(f.cache.RemoveRange(a, 4), 4);
  f.cache.InsertRange(a, 2);      // a0 a1
  f.cache.InsertRange(a + 2, 2);  // a2 a3, on top
  void* out[4];
  ASSERT_EQ(f.cache.RemoveRange(out, 3), 3);
  EXPECT_EQ(out[0], a[2]);
  EXPECT_EQ(out[1], a[3]);
  EXPECT_EQ(out[2], a[0]);
  ASSERT_EQ(f.cache.RemoveRange(out + 3, 1), 1);
  EXPECT_EQ(out[3], a[1]);
  f.cache.InsertRange(out, 4);
  f.cache.Drain();
}

// Two CPU shards of one class over one central list.
struct TwoShards {
  explicit TwoShards(uint32_t cls)
      : slots(2 * static_cast<size_t>(TransferCache::GrownCapacityFor(cls, 2))) {
    central.Init(cls, &g_heap);
    a.Init(cls, &central, slots.data(), 2);
    b.Init(cls, &central, slots.data() + slots.size() / 2, 2);
  }
  // Drains both shards; every object must be back in its span.
  void ExpectAllBack() {
    a.Drain();
    b.Drain();
    ExpectEveryObjectInItsSpan(central);
  }
  std::vector<void*> slots;
  CentralFreeList central;
  TransferCache a, b;
  TransferCache* others_of_a[1] = {&b};
};

// What one shard's CPU freed serves the other's refill before the central
// list is asked, and nothing is lost or counted twice.
TEST(TransferCache, RefillTakesFromOtherShardsBeforeTheCentralList) {
  static TwoShards s(SizeToClass(96));
  void* objs[48];
  ASSERT_EQ(s.a.RemoveRange(objs, 48), 48);  // from the spans
  EXPECT_EQ(CentralOut(s.central), 48u);
  s.b.InsertRange(objs, 32);  // freed on b's CPUs; objs[32..48) stay live
  void* got[32];
  ASSERT_EQ(s.a.RemoveRange(got, 32, s.others_of_a, 1), 32);
  EXPECT_EQ(CentralOut(s.central), 48u);  // all from b's cache
  EXPECT_EQ(std::set<void*>(got, got + 32), std::set<void*>(objs, objs + 32));
  EXPECT_EQ(StatsOf(s.b).objects, 0u);
  EXPECT_EQ(StatsOf(s.a).outstanding + StatsOf(s.b).outstanding, 48);
  EXPECT_EQ(StatsOf(s.a).from_other_shards, 32u);
  EXPECT_EQ(StatsOf(s.b).from_other_shards, 0u);

  // b holds 8 of them again; a refill of 16 takes those 8, then 8 from the
  // spans.
  s.b.InsertRange(got, 8);
  void* more[16];
  ASSERT_EQ(s.a.RemoveRange(more, 16, s.others_of_a, 1), 16);
  EXPECT_EQ(CentralOut(s.central), 56u);
  EXPECT_EQ(StatsOf(s.a).outstanding + StatsOf(s.b).outstanding, 56);
  EXPECT_EQ(StatsOf(s.a).from_other_shards, 40u);  // the spans' 8 are not
  std::set<void*> live(objs + 32, objs + 48);
  live.insert(got + 8, got + 32);
  live.insert(more, more + 16);
  EXPECT_EQ(live.size(), 56u);  // no object handed out twice

  s.b.InsertRange(more, 16);
  s.a.InsertRange(got + 8, 24);
  s.a.InsertRange(objs + 32, 16);
  s.ExpectAllBack();
}

// A shard counts the objects other shards' refills take from it until its
// own CPUs free into it again; at kTransferCacheRingBatches batches it is
// robbed (central_heap.cc then keeps its refills off the other shards).
TEST(TransferCache, AShardCountsWhatOtherShardsTookUntilItsOwnFree) {
  uint32_t cls = SizeToClass(112);
  static TwoShards s(cls);
  const int ring = kTransferCacheRingBatches * ClassToBatch(cls);
  std::vector<void*> objs(static_cast<size_t>(ring + 8));
  ASSERT_EQ(s.b.RemoveRange(objs.data(), ring + 8), ring + 8);
  s.b.InsertRange(objs.data(), ring + 8);  // b's CPUs freed them
  EXPECT_EQ(s.b.LostToOthers(), 0);

  std::vector<void*> got(static_cast<size_t>(ring));
  ASSERT_EQ(s.a.RemoveRange(got.data(), ring - 1, s.others_of_a, 1), ring - 1);
  EXPECT_EQ(s.b.LostToOthers(), ring - 1);
  EXPECT_FALSE(s.b.Robbed());
  ASSERT_EQ(s.a.RemoveRange(got.data() + ring - 1, 1, s.others_of_a, 1), 1);
  EXPECT_EQ(s.b.LostToOthers(), ring);
  EXPECT_TRUE(s.b.Robbed());
  EXPECT_EQ(s.a.LostToOthers(), 0);  // the taker lost nothing
  EXPECT_FALSE(s.a.Robbed());

  s.b.InsertRange(got.data(), 1);  // b's CPUs free again
  EXPECT_EQ(s.b.LostToOthers(), 0);
  EXPECT_FALSE(s.b.Robbed());
  EXPECT_EQ(std::set<void*>(got.begin(), got.end()).size(), got.size());

  s.a.InsertRange(got.data() + 1, ring - 1);
  s.ExpectAllBack();
}

// A shard whose frees overflowed grows only when the refill that follows
// finds the other shards empty too: objects another CPU freed are no round
// trip through the spans.
TEST(TransferCache, ShardGrowsOnlyWhenTheOtherShardsCannotServe) {
  uint32_t cls = SizeToClass(1024);
  static TwoShards s(cls);
  s.a.Drain();  // from the base capacity
  const int cap = TransferCache::CapacityFor(cls);
  ASSERT_LT(cap, TransferCache::GrownCapacityFor(cls, 2));
  const int k = 16;

  std::vector<void*> objs(static_cast<size_t>(cap + 2 * k));
  ASSERT_EQ(s.a.RemoveRange(objs.data(), cap + 2 * k), cap + 2 * k);
  s.a.InsertRange(objs.data(), cap + k);  // k overflow into the spans
  s.b.InsertRange(objs.data() + cap + k, k);
  ASSERT_EQ(s.a.RemoveRange(objs.data(), cap), cap);  // a's own cache
  ASSERT_EQ(s.a.RemoveRange(objs.data() + cap, k, s.others_of_a, 1), k);  // b's
  EXPECT_EQ(StatsOf(s.a).grows, 0u);
  ASSERT_EQ(s.a.RemoveRange(objs.data() + cap + k, k, s.others_of_a, 1), k);  // the spans'
  EXPECT_EQ(StatsOf(s.a).grows, 1u);
  EXPECT_EQ(StatsOf(s.a).capacity, static_cast<uint64_t>(2 * cap));
  EXPECT_EQ(std::set<void*>(objs.begin(), objs.end()).size(), objs.size());

  s.a.InsertRange(objs.data(), cap + 2 * k);
  s.ExpectAllBack();
}

// Shards share out the grown bytes: each of several shards may grow less,
// but never below kTransferCacheShardGrownBytes of objects (or its base).
TEST(TransferCache, ShardsShareTheGrownBytes) {
  for (uint32_t cls = 1; cls < kNumClasses; ++cls) {
    size_t size = ClassToSize(cls);
    size_t batch = static_cast<size_t>(ClassToBatch(cls));
    for (int shards : {1, 2, 4}) {
      size_t grown = static_cast<size_t>(TransferCache::GrownCapacityFor(cls, shards));
      EXPECT_GE(grown, static_cast<size_t>(TransferCache::CapacityFor(cls))) << cls;
      EXPECT_LE(grown, static_cast<size_t>(TransferCache::GrownCapacityFor(cls, 1))) << cls;
      size_t share = std::max(kTransferCacheGrownBytes / static_cast<size_t>(shards),
                              kTransferCacheShardGrownBytes);
      EXPECT_LE(grown * size, std::max(share, 2 * batch * size)) << cls << " " << shards;
    }
  }
}

// The occupancy bit follows the cache through every way it fills or
// empties: a free, a refill, an overflow, a drain, an idle return.
TEST(TransferCache, OccupancyBitIsSetExactlyWhileObjectsAreCached) {
  uint32_t cls = SizeToClass(256);
  static Fixture f(cls);
  static OccupiedShards occupied;
  const uint32_t kBit = uint32_t{1} << 5;
  occupied.bits.store(uint32_t{1} << 2);  // another shard's bit stays as it is
  f.cache.TrackOccupancy(&occupied.bits, kBit);
  auto bits = [] { return occupied.bits.load(); };

  const int cap = TransferCache::CapacityFor(cls);
  std::vector<void*> objs(static_cast<size_t>(cap + 8));
  ASSERT_EQ(f.cache.RemoveRange(objs.data(), cap + 8), cap + 8);  // from the spans
  EXPECT_EQ(bits(), uint32_t{1} << 2);
  f.cache.InsertRange(objs.data(), 1);
  EXPECT_EQ(bits(), kBit | uint32_t{1} << 2);
  ASSERT_EQ(f.cache.RemoveRange(objs.data(), 1), 1);
  EXPECT_EQ(bits(), uint32_t{1} << 2);
  f.cache.InsertRange(objs.data(), cap + 8);  // fills it, 8 overflow
  EXPECT_EQ(bits(), kBit | uint32_t{1} << 2);
  ASSERT_EQ(f.cache.RemoveRange(objs.data(), cap + 8), cap + 8);  // empties it, tops up
  EXPECT_EQ(bits(), uint32_t{1} << 2);
  f.cache.InsertRange(objs.data(), 16);
  f.cache.Drain();
  EXPECT_EQ(bits(), uint32_t{1} << 2);
  f.cache.InsertRange(objs.data() + 16, 16);
  f.cache.ReturnIdle();  // starts an interval: nothing was idle through one
  EXPECT_EQ(bits(), kBit | uint32_t{1} << 2);
  f.cache.ReturnIdle();  // all 16 stayed cached all through it
  EXPECT_EQ(bits(), uint32_t{1} << 2);
  f.cache.InsertRange(objs.data() + 32, cap + 8 - 32);
  f.cache.Drain();
  EXPECT_EQ(bits(), uint32_t{1} << 2);
  EXPECT_EQ(CentralOut(f.central), 0u);
}

// Many more threads than CPUs move objects of one class through 16 shards
// that share an occupancy word, each operation on a shard picked at random
// (a thread that migrates), refills asking the shards the word names. No
// object may be handed out twice or lost, and once every shard is drained
// the word is clear and every object is back in its span.
TEST(TransferCache, SixteenShardsWithOccupancyLoseAndDuplicateNothing) {
  const uint32_t cls = SizeToClass(64);
  constexpr int kShards = kMaxTransferShards;
  static CentralFreeList central;
  static TransferCache caches[kShards];
  static OccupiedShards occupied;
  const size_t per_shard = static_cast<size_t>(TransferCache::GrownCapacityFor(cls, kShards));
  static std::vector<void*> slots(per_shard * kShards);
  central.Init(cls, &g_heap);
  for (int s = 0; s < kShards; ++s) {
    caches[s].Init(cls, &central, slots.data() + per_shard * static_cast<size_t>(s), kShards);
    caches[s].TrackOccupancy(&occupied.bits, uint32_t{1} << s);
  }

  // A held object's second word names its holder (the first is the span
  // list's link while it is free); an exchange catches two holders.
  constexpr uint64_t kHeld = uint64_t{1} << 32;
  std::atomic<int> duplicates{0}, foreign{0}, short_refills{0};
  auto worker = [&](int id) {
    std::mt19937 rng(static_cast<uint32_t>(id) * 7919u + 1u);
    std::vector<void*> held;
    void* buf[64];
    for (int op = 0; op < 4000; ++op) {
      int shard = static_cast<int>(rng() % kShards);
      int n = 1 + static_cast<int>(rng() % 64);
      if (held.size() < 256 && (rng() & 1)) {
        int ask[kShards - 1];
        int count = ShardsToAsk(occupied.bits.load(std::memory_order_relaxed), shard, ask);
        TransferCache* others[kShards - 1];
        for (int i = 0; i < count; ++i) others[i] = &caches[ask[i]];
        int got = caches[shard].RemoveRange(buf, n, others, count);
        if (got != n) short_refills.fetch_add(1);
        for (int i = 0; i < got; ++i) {
          auto* tag = reinterpret_cast<std::atomic<uint64_t>*>(static_cast<char*>(buf[i]) + 8);
          if (tag->exchange(kHeld | static_cast<uint64_t>(id)) & kHeld) duplicates.fetch_add(1);
          held.push_back(buf[i]);
        }
      } else {
        int give = std::min(n, static_cast<int>(held.size()));
        for (int i = 0; i < give; ++i) {
          buf[i] = held.back();
          held.pop_back();
          auto* tag = reinterpret_cast<std::atomic<uint64_t>*>(static_cast<char*>(buf[i]) + 8);
          if (tag->exchange(0) != (kHeld | static_cast<uint64_t>(id))) foreign.fetch_add(1);
        }
        caches[shard].InsertRange(buf, give);
      }
    }
    for (void* p : held) {
      auto* tag = reinterpret_cast<std::atomic<uint64_t>*>(static_cast<char*>(p) + 8);
      if (tag->exchange(0) != (kHeld | static_cast<uint64_t>(id))) foreign.fetch_add(1);
      caches[id % kShards].InsertRange(&p, 1);
    }
  };
  const int threads = 4 * kShards;
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) pool.emplace_back(worker, t);
  for (auto& t : pool) t.join();

  EXPECT_EQ(duplicates.load(), 0);
  EXPECT_EQ(foreign.load(), 0);
  EXPECT_EQ(short_refills.load(), 0);  // the heap never ran out
  uint64_t stolen = 0;
  for (auto& c : caches) stolen += StatsOf(c).from_other_shards;
  EXPECT_GT(stolen, 0u);  // refills did take from the shards the word named
  int64_t outstanding = 0;
  for (auto& c : caches) outstanding += StatsOf(c).outstanding;
  EXPECT_EQ(outstanding, 0);
  for (auto& c : caches) c.Drain();
  EXPECT_EQ(occupied.bits.load(), 0u);
  EXPECT_EQ(CentralOut(central), 0u);
}

}  // namespace
}  // namespace rseqmalloc::internal
