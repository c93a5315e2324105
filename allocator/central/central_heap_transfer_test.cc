// The central heap's transfer caches as a whole: one per CPU shard, what
// refills take from the other shards, idle objects going back, and the
// blocks the caches of the big classes give back before the page heap
// grows.
#include <gtest/gtest.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <random>
#include <thread>
#include <vector>

#include "allocator/base/size_classes.h"
#include "allocator/central/central_heap.h"
#include "allocator/central/central_heap_test_util.h"
#include "allocator/central/transfer_cache.h"

namespace rseqmalloc::internal {
namespace {

// Runs the calling thread on `cpu` only; false when it may not.
bool PinTo(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof(set), &set) == 0 && sched_getcpu() == cpu;
}

// The first two CPUs this thread may run on, or fewer.
std::vector<int> TwoAllowedCpus() {
  cpu_set_t set;
  std::vector<int> cpus;
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE && cpus.size() < 2; ++cpu) {
    if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
  }
  return cpus;
}

class RestoreAffinity {
 public:
  RestoreAffinity() { sched_getaffinity(0, sizeof(saved_), &saved_); }
  ~RestoreAffinity() { sched_setaffinity(0, sizeof(saved_), &saved_); }

 private:
  cpu_set_t saved_;
};

// Transfer caches are per CPU shard: objects one CPU freed serve another
// CPU's refill before the central list (nothing strands in a shard), and
// the class's statistics count them as taken from another shard.
TEST(CentralHeap, ObjectsFreedOnOneCpuServeARefillOnAnother) {
  std::vector<int> cpus = TwoAllowedCpus();
  if (cpus.size() < 2) GTEST_SKIP() << "needs two CPUs";
  RestoreAffinity restore;
  ReleaseFreeMemory();  // every transfer cache empty
  uint32_t cls = SizeToClass(208);
  constexpr int kN = 64;
  void* objs[kN];
  ASSERT_TRUE(PinTo(cpus[0]));
  ASSERT_EQ(RemoveBatch(cls, objs, kN), kN);
  InsertBatch(cls, objs, kN);
  CentralStats before = CheckedStats();
  ASSERT_GE(before.per_class[cls].transfer_objects, static_cast<uint64_t>(kN));

  ASSERT_TRUE(PinTo(cpus[1]));
  void* again[kN];
  ASSERT_EQ(RemoveBatch(cls, again, kN), kN);
  CentralStats after = CheckedStats();
  EXPECT_EQ(after.per_class[cls].central_free_objects, before.per_class[cls].central_free_objects);
  EXPECT_EQ(after.per_class[cls].spans, before.per_class[cls].spans);
  EXPECT_EQ(std::set<void*>(again, again + kN), std::set<void*>(objs, objs + kN));
  EXPECT_EQ(after.per_class[cls].transfer_from_other_shards,
            before.per_class[cls].transfer_from_other_shards + kN);
  EXPECT_EQ(after.per_class[cls].transfer_from_central,
            before.per_class[cls].transfer_from_central);  // no trip through the spans
  InsertBatch(cls, again, kN);
}

// Shards that rob each other in a ring: a shard that other CPUs' refills
// emptied (kTransferCacheRingBatches batches or more since its own CPU last
// freed into it) takes its next refills from the central list, not from
// the shard whose objects it would pass the shortfall on to; once its own
// CPU frees into it again, it takes from other shards as before.
TEST(CentralHeap, AShardOthersEmptiedLeavesTheOtherShardsAlone) {
  std::vector<int> cpus = TwoAllowedCpus();
  if (cpus.size() < 2) GTEST_SKIP() << "needs two CPUs";
  RestoreAffinity restore;
  uint32_t cls = SizeToClass(240);
  const int ring = kTransferCacheRingBatches * ClassToBatch(cls);
  const int k = ClassToBatch(cls);
  std::vector<void*> mine(static_cast<size_t>(ring));
  std::vector<void*> theirs(static_cast<size_t>(ring));
  std::vector<void*> kept(static_cast<size_t>(k));

  ASSERT_TRUE(PinTo(cpus[0]));
  ASSERT_EQ(RemoveBatch(cls, mine.data(), ring), ring);
  InsertBatch(cls, mine.data(), ring);  // cpu 0's shard holds them
  ASSERT_TRUE(PinTo(cpus[1]));
  ASSERT_EQ(RemoveBatch(cls, theirs.data(), ring), ring);  // all of cpu 0's
  ASSERT_EQ(RemoveBatch(cls, kept.data(), k), k);
  InsertBatch(cls, kept.data(), k);  // cpu 1's shard holds k

  CentralStats before = CheckedStats();
  ASSERT_TRUE(PinTo(cpus[0]));
  void* got[2];
  ASSERT_EQ(RemoveBatch(cls, got, 1), 1);
  CentralStats after = CheckedStats();
  EXPECT_EQ(after.per_class[cls].transfer_from_other_shards,
            before.per_class[cls].transfer_from_other_shards);
  EXPECT_EQ(after.per_class[cls].transfer_from_central,
            before.per_class[cls].transfer_from_central + 1);
  EXPECT_EQ(after.per_class[cls].transfer_objects, static_cast<uint64_t>(k));  // still cpu 1's

  InsertBatch(cls, got, 1);  // cpu 0 frees into its shard again
  ASSERT_EQ(RemoveBatch(cls, got, 2), 2);  // its own object, then one of cpu 1's
  CentralStats last = CheckedStats();
  EXPECT_EQ(last.per_class[cls].transfer_from_other_shards,
            after.per_class[cls].transfer_from_other_shards + 1);
  EXPECT_EQ(last.per_class[cls].transfer_from_central, after.per_class[cls].transfer_from_central);

  InsertBatch(cls, got, 2);
  InsertBatch(cls, theirs.data(), ring);
}

// A transfer cache that grew for round trips and then sat idle gives its
// objects back while the program keeps allocating other classes, with no
// maintenance thread (this binary has none): passes run from the batch
// calls themselves, about once a second.
TEST(CentralHeap, IdleTransferObjectsGoBackWhileTheProgramAllocates) {
  // One CPU: the growth below is one shard's.
  RestoreAffinity restore;
  ASSERT_TRUE(PinTo(sched_getcpu()));
  uint32_t cls = SizeToClass(16);
  int n = 3 * ClassToBatch(cls) * kTransferCacheBatches;
  std::vector<void*> objs(static_cast<size_t>(n));
  for (int round = 0; round < 3; ++round) {
    ASSERT_EQ(RemoveBatch(cls, objs.data(), n), n);
    InsertBatch(cls, objs.data(), n);
  }
  CentralStats s = CheckedStats();
  ASSERT_EQ(s.per_class[cls].transfer_objects, static_cast<uint64_t>(n));  // it grew

  uint32_t other = SizeToClass(64);
  void* one[1];
  bool emptied = false;
  for (int ms = 0; ms < 10'000 && !emptied; ++ms) {
    ASSERT_EQ(RemoveBatch(other, one, 1), 1);
    InsertBatch(other, one, 1);
    usleep(1000);
    GetCentralStats(&s);
    emptied = s.per_class[cls].transfer_objects == 0;
  }
  EXPECT_TRUE(emptied);
  s = CheckedStats();
  EXPECT_EQ(s.per_class[cls].spans, 0u);
}

// Big classes' transfer caches grow as the small ones' do, and the blocks
// they keep go back to their spans before the page heap takes fresh pages:
// a program that keeps a burst of them cached while it needs memory for
// something else does not grow by that much (docs/design.md, "Big classes
// grow too").
TEST(CentralHeap, BigBlocksCachedAboveGoBackBeforeTheHeapGrows) {
  InitCentralHeap();
  RestoreAffinity restore;
  ASSERT_TRUE(PinTo(sched_getcpu()));  // one shard's cache
  uint32_t cls = SizeToClass(64 * 1024);
  constexpr int kBlocks = 64;  // 4 MiB
  void* objs[kBlocks];
  // Round trips grow a cache that an earlier drain took back to its first
  // capacity (16 blocks of 64 KiB).
  for (int round = 0; round < 4; ++round) {
    for (int got = 0; got < kBlocks;) {
      int k = RemoveBatch(cls, objs + got, kBlocks - got);
      ASSERT_GT(k, 0);
      got += k;
    }
    InsertBatch(cls, objs, kBlocks);
  }
  CentralStats s = CheckedStats();
  ASSERT_GE(s.per_class[cls].transfer_objects, static_cast<uint64_t>(kBlocks));  // all cached
  uint64_t calls = s.growth_hook_calls;
  uint64_t given = s.growth_hook_objects;

  // More than every free page: no free span fits, so the heap must grow.
  size_t bytes = s.page_heap_free_bytes + s.page_heap_returned_bytes + 8 * kMiB;
  void* big = AllocateLarge(bytes, kPageSize);
  ASSERT_NE(big, nullptr);
  s = CheckedStats();
  EXPECT_GT(s.growth_hook_calls, calls);
  EXPECT_GE(s.growth_hook_objects - given, static_cast<uint64_t>(kBlocks));
  EXPECT_EQ(s.per_class[cls].transfer_objects, 0u);
  FreeLarge(big);
}

// The growth hook runs on whichever thread makes the heap grow, while
// other threads take blocks of the same classes from the caches it empties
// and give them back: no block may be handed out twice or lost, and the
// books must balance after.
TEST(CentralHeap, GrowthHookUnderManyThreadsLosesAndSharesNothing) {
  InitCentralHeap();
  constexpr int kThreads = 16;
  constexpr int kIters = 100;
  std::atomic<long> failures{0};
  // The first class the hook asks (classes grow in size).
  uint32_t first_big = 1;
  while (ClassToSize(first_big) <= kGiveBackAboveBytes) ++first_big;
  const uint32_t kFirstBig = first_big;
  ASSERT_LT(kFirstBig, kNumClasses);
  // Blocks of every big class in the caches, for the first growths to take.
  for (uint32_t cls = kFirstBig; cls < kNumClasses; ++cls) {
    void* objs[8];
    int n = RemoveBatch(cls, objs, 8);
    InsertBatch(cls, objs, n);
  }
  static CentralStats before;  // big; keep it off the stack
  GetCentralStats(&before);
  uint64_t given_before = before.growth_hook_objects;
  // Larger than every free page, so that each thread's first large block
  // (at least) makes the heap grow while the others use the caches.
  size_t free_bytes = before.page_heap_free_bytes + before.page_heap_returned_bytes;
  auto worker = [&](int id) {
    std::mt19937 rng(id * 104729 + 3);
    for (int it = 0; it < kIters; ++it) {
      uint32_t cls = kFirstBig + rng() % (kNumClasses - kFirstBig);
      void* objs[8];
      int n = RemoveBatch(cls, objs, 8);
      if (n != 8) failures.fetch_add(1);
      uint64_t tag = (static_cast<uint64_t>(id) << 48) | (static_cast<uint64_t>(it) << 8);
      for (int i = 0; i < n; ++i) *static_cast<uint64_t*>(objs[i]) = tag + i;
      // A large block no free span may fit: the heap grows, and asks.
      size_t large = free_bytes + ((size_t{1} << 20) << (rng() % 4));
      void* big = AllocateLarge(large, kPageSize);
      if (big == nullptr) failures.fetch_add(1);
      if (big != nullptr) static_cast<char*>(big)[large - 1] = 1;
      for (int i = 0; i < n; ++i) {
        if (*static_cast<uint64_t*>(objs[i]) != tag + i) failures.fetch_add(1);
        if (ClassifyPointer(objs[i]) != cls) failures.fetch_add(1);
      }
      InsertBatch(cls, objs, n);
      if (big != nullptr) FreeLarge(big);
    }
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  CentralStats s = CheckedStats();  // the identities hold
  EXPECT_GT(s.growth_hook_objects, given_before);  // the hook gave blocks back meanwhile
  for (uint32_t cls = kFirstBig; cls < kNumClasses; ++cls) {
    EXPECT_EQ(s.per_class[cls].in_use_objects, 0u);
  }
}

}  // namespace
}  // namespace rseqmalloc::internal
