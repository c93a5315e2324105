// The per-CPU front end on its own (this binary keeps glibc's malloc; only
// the allocator's internal entry points are ours). Run with
// RSEQMALLOC_CACHE=cpu and =cid (see BUILD). Caches over slabs and backends
// of the tests' own are in own_cpu_cache_test.cc.
#include "allocator/frontend/cpu_cache.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <random>
#include <thread>
#include <memory>
#include <vector>

#include <gtest/gtest.h>

#include "allocator/central/central_heap.h"
#include "allocator/config/options.h"
#include "allocator/frontend/frontend.h"
#include "rseq/registration.h"
#include "rseq/restarts.h"

namespace rseqmalloc::internal {
namespace {

class CpuCacheTest : public testing::Test {
 protected:
  void SetUp() override {
    EnsureInitialized();
    std::string mode = ActiveModeName();
    if (mode != "cpu" && mode != "cid") GTEST_SKIP() << "per-CPU mode not active: " << mode;
  }
};

uint64_t Evictions() {
  uint64_t n = 0;
  for (int id = 0; id < g_cpu_cache.NumIds(); ++id) n += g_cpu_cache.StatsOf(id).evictions;
  return n;
}

// The same events counted per victim class (the report's columns).
uint64_t ClassEvictions() {
  uint64_t n = 0;
  for (uint32_t cls = 1; cls < kNumClasses; ++cls) n += g_cpu_cache.LossesOf(cls).evictions;
  return n;
}
uint64_t IdSteals() {
  uint64_t n = 0;
  for (int id = 0; id < g_cpu_cache.NumIds(); ++id) n += g_cpu_cache.StatsOf(id).steals;
  return n;
}
uint64_t ClassSteals() {
  uint64_t n = 0;
  for (uint32_t cls = 1; cls < kNumClasses; ++cls) n += g_cpu_cache.LossesOf(cls).steals;
  return n;
}

uint64_t Misses(int id) {
  CpuCache::IdStats s = g_cpu_cache.StatsOf(id);
  return s.underflows + s.overflows;
}

uint64_t InUseObjects() {
  static CentralStats stats;  // large: keep it off the stack
  GetCentralStats(&stats);
  uint64_t n = 0;
  for (uint32_t cls = 1; cls < kNumClasses; ++cls) n += stats.per_class[cls].in_use_objects;
  return n;
}

TEST_F(CpuCacheTest, MissRefillsAndFreeIsCachedOnTheSameId) {
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(sched_getcpu(), &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);  // stay on one CPU
  void* p = Allocate(48);
  ASSERT_NE(p, nullptr);
  Free(p);
  // LIFO on the same id: the next allocation of the class is the same block.
  EXPECT_EQ(Allocate(48), p);
  Free(p);
  EXPECT_GT(g_cpu_cache.Totals().cached_bytes, 0u);
}

TEST_F(CpuCacheTest, CachedBytesStayWithinThePerIdBudget) {
  const uint64_t budget = GetOptions().per_cpu_cache_bytes;
  std::vector<void*> blocks;
  // Far more than the budget in many classes, then free it all: the caches
  // keep at most the budget per id, the rest goes to the transfer caches.
  for (size_t size : {16, 64, 256, 1024, 4096, 16384, 65536}) {
    for (int i = 0; i < 2000; ++i) blocks.push_back(Allocate(size));
  }
  for (void* p : blocks) Free(p);
  EXPECT_LE(g_cpu_cache.Totals().cached_bytes, budget * static_cast<uint64_t>(g_cpu_cache.NumIds()));
}

// Every class the program used sits at capacity, full of objects, and the
// id is at its budget: a class used only now must still get capacity (the
// others go cold, and a miss takes a batch of a cold class's objects), or
// every one of its calls would miss.
TEST_F(CpuCacheTest, FullCachesGiveCapacityToTheClassInUse) {
  if (GetOptions().per_cpu_cache_bytes < (1u << 20)) {
    GTEST_SKIP() << "set up for the default budget (the classes below must fill it)";
  }
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(sched_getcpu(), &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  ASSERT_TRUE(g_cpu_cache.DrainAll());
  // Their capacities together exceed the default budget.
  const size_t sizes[] = {16,   32,   48,   64,    96,    128,   256,   512,    1024,
                          2048, 4096, 8192, 16384, 32768, 65536, 98304, 131072, 262144};
  std::vector<void*> blocks;
  std::vector<std::vector<void*>> reserve;  // kept back, to top each class up exactly
  for (size_t size : sizes) {
    reserve.emplace_back();
    size_t count = std::min<size_t>(2000, std::max<size_t>(64, (8u << 20) / size));
    for (size_t i = 0; i < count; ++i) {
      void* p = Allocate(size);
      ASSERT_NE(p, nullptr);
      (i < count / 4 ? reserve.back() : blocks).push_back(p);
    }
  }
  for (void* p : blocks) Free(p);
  int id = -1;  // the one id this pinned thread used since the drain
  for (int i = 0; i < g_cpu_cache.NumIds(); ++i) {
    if (g_cpu_cache.StatsOf(i).used) id = i;
  }
  ASSERT_GE(id, 0);
  // Fill every class to exactly its capacity: no unused capacity anywhere.
  for (size_t k = 0; k < std::size(sizes); ++k) {
    uint32_t cls = SizeToClass(sizes[k]);
    while (!reserve[k].empty()) {
      CpuCache::ClassFill fill = g_cpu_cache.FillOf(id, cls);
      if (fill.cached == fill.capacity) break;
      Free(reserve[k].back());
      reserve[k].pop_back();
    }
    CpuCache::ClassFill fill = g_cpu_cache.FillOf(id, cls);
    ASSERT_EQ(fill.cached, fill.capacity) << "size " << sizes[k];
  }
  const uint32_t new_cls = SizeToClass(200);  // not used above
  const uint64_t budget = GetOptions().per_cpu_cache_bytes;
  CpuCache::IdStats full = g_cpu_cache.StatsOf(id);
  // Housekeeping may already have taken back some capacity of classes that
  // went cold while the others filled; most of the budget is still held.
  ASSERT_GT(full.capacity_bytes, budget / 2);
  const uint64_t room = budget - full.capacity_bytes;
  const uint64_t evictions_before = Evictions();
  const uint64_t misses_before = Misses(id);
  constexpr int kRounds = 100;
  constexpr int kBurst = 64;
  void* burst[kBurst];
  for (int round = 0; round < kRounds; ++round) {
    for (void*& p : burst) p = Allocate(200);
    for (void* p : burst) Free(p);
  }
  uint64_t misses = Misses(id) - misses_before;
  // Growing to 64 objects takes a few misses (and the other classes need a
  // housekeeping interval to turn cold); with no capacity to be had, most
  // of the 2 * 64 * 100 calls would miss.
  EXPECT_LT(misses, 2u * kBurst * kRounds / 20) << "misses: " << misses;
  EXPECT_GE(g_cpu_cache.FillOf(id, new_cls).capacity, static_cast<uint32_t>(kBurst));
  // Every class holds objects up to its capacity: what the budget had no
  // room for came from cold classes' objects.
  if (room < kBurst * ClassToSize(new_cls)) {
    EXPECT_GT(Evictions(), evictions_before);
  }
  // Per id and per victim class, the same events (this test's thread is
  // the only one allocating).
  EXPECT_EQ(ClassEvictions(), Evictions());
  EXPECT_EQ(ClassSteals(), IdSteals());
  EXPECT_LE(g_cpu_cache.StatsOf(id).capacity_bytes, budget);
  for (auto& r : reserve) {
    for (void* p : r) Free(p);
  }
}

TEST_F(CpuCacheTest, DrainAllEmptiesEveryCache) {
  std::vector<void*> blocks;
  for (int i = 0; i < 500; ++i) blocks.push_back(Allocate(128));
  for (void* p : blocks) Free(p);
  ASSERT_GT(g_cpu_cache.Totals().cached_bytes, 0u);
  ASSERT_TRUE(g_cpu_cache.DrainAll());
  EXPECT_EQ(g_cpu_cache.Totals().cached_bytes, 0u);
  // A drained id works again: headers start from capacity 0.
  void* p = Allocate(128);
  ASSERT_NE(p, nullptr);
  Free(p);
}

// A thread that allocates a batch of small blocks in a row and then frees
// them, round after round, comes to keep all of them on its CPU: a round
// with no miss. Returns the misses of the last round (at most 100 rounds;
// each underflow grows the class by a batch, so the misses fall by about a
// quarter a round). The caller pins the thread.
uint64_t MissesOnceTheBatchSettles(size_t size, int count) {
  // From capacity 0 on every id, so that no other class holds budget.
  if (!g_cpu_cache.DrainAll()) return ~uint64_t{0};
  auto all_misses = [] {
    uint64_t n = 0;
    for (int id = 0; id < g_cpu_cache.NumIds(); ++id) n += Misses(id);
    return n;
  };
  std::vector<void*> blocks(static_cast<size_t>(count));
  uint64_t misses_last_round = 1;
  for (int round = 0; round < 100 && misses_last_round != 0; ++round) {
    uint64_t before = all_misses();
    for (void*& p : blocks) {
      p = Allocate(size);
      if (p == nullptr) return ~uint64_t{0};
    }
    for (void* p : blocks) Free(p);
    misses_last_round = all_misses() - before;
  }
  return misses_last_round;
}

// 80,000 blocks of 16 B, 20,000 of 64 B and 10,000 of 128 B each come to
// stay on the CPU (each batch within the base budget of 1.5 MiB): the slot
// ranges of classes up to 64 B (3 MiB of objects: 196,608 slots of 16 B,
// 49,152 of 64 B, in 4 MiB regions) and up to 128 B (12,288) allow it.
// With the 49,152-slot ranges of 2 MiB regions, every round of the 16-byte
// batch sent a third of it through the transfer cache and back; with the
// 11,264 of 512 KiB regions, the 64-byte one too; and with the 1024 of a
// 128-byte class, the 128-byte one.
TEST_F(CpuCacheTest, SmallClassesKeepTheirBatchOnTheirCpu) {
  if (GetOptions().per_cpu_cache_bytes < 1536 * 1024) {
    GTEST_SKIP() << "the budget is too small for the batches";
  }
  if (!g_cpu_cache.DrainAll()) GTEST_SKIP() << "no membarrier: no drain";
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(sched_getcpu(), &one);
  ASSERT_EQ(sched_setaffinity(0, sizeof one, &one), 0);
  EXPECT_EQ(MissesOnceTheBatchSettles(16, 80000), 0u) << "80,000 x 16 B never came to fit";
  EXPECT_EQ(MissesOnceTheBatchSettles(64, 20000), 0u) << "20,000 x 64 B never came to fit";
  EXPECT_EQ(MissesOnceTheBatchSettles(128, 10000), 0u) << "10,000 x 128 B never came to fit";
}

// 32 threads on 2 cores allocate, stamp, check and free through the per-CPU
// caches while another thread drains every id remotely and a third sends a
// signal storm. A block handed out twice shows as a broken stamp; a block
// lost shows in the central heap's in-use count at the end.
TEST_F(CpuCacheTest, RemoteDrainRacingWithCriticalSectionsLosesNothing) {
  ASSERT_TRUE(g_cpu_cache.DrainAll());
  const uint64_t baseline = InUseObjects();
  const uint64_t restarts_before = rseq::RestartCount();
  constexpr int kThreads = 32;
  constexpr int kMinRounds = 3000;
  std::atomic<bool> stop{false};       // drainer and storm
  std::atomic<bool> enough{false};     // workers: restarts seen (or time up)
  std::atomic<int> broken{0};
  std::atomic<int> ready{0};
  std::vector<pid_t> tids(kThreads);

  struct sigaction sa = {};
  sa.sa_handler = [](int) {};
  sa.sa_flags = SA_RESTART;
  sigaction(SIGUSR1, &sa, nullptr);

  auto worker = [&](int t) {
    tids[t] = static_cast<pid_t>(syscall(SYS_gettid));
    ready.fetch_add(1);
    std::mt19937 rng(t);
    void* held[64] = {};
    size_t sizes[64] = {};
    for (int round = 0; round < kMinRounds || !enough.load(std::memory_order_relaxed);
         ++round) {
      int slot = static_cast<int>(rng() % 64);
      if (held[slot] != nullptr) {
        auto* bytes = static_cast<unsigned char*>(held[slot]);
        for (size_t i = 0; i < sizes[slot]; ++i) {
          if (bytes[i] != static_cast<unsigned char>(t + slot)) {
            broken.fetch_add(1);
            break;
          }
        }
        Free(held[slot]);
        held[slot] = nullptr;
      } else {
        size_t size = size_t{16} << (rng() % 10);  // 16 B .. 8 KiB
        void* p = Allocate(size);
        if (p == nullptr) continue;
        memset(p, t + slot, size);
        held[slot] = p;
        sizes[slot] = size;
      }
    }
    for (void* p : held) Free(p);
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
  std::thread drainer([&] {
    while (!stop.load()) g_cpu_cache.DrainAll();
  });
  std::thread storm([&] {
    while (ready.load() < kThreads) std::this_thread::yield();
    while (!stop.load()) {
      for (pid_t tid : tids) syscall(SYS_tgkill, getpid(), tid, SIGUSR1);
      std::this_thread::yield();
    }
  });
  // Run until critical sections were seen to restart, at most 20 s: the
  // sections are a few instructions, so it takes a while for a signal or a
  // drain's membarrier to land inside one.
  for (int waited_ms = 0; waited_ms < 20000 && rseq::RestartCount() == restarts_before;
       waited_ms += 10) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  enough.store(true);
  for (auto& th : threads) th.join();
  stop.store(true);
  drainer.join();
  storm.join();

  EXPECT_EQ(broken.load(), 0) << "a block was handed out twice";
  ASSERT_TRUE(g_cpu_cache.DrainAll());
  EXPECT_EQ(g_cpu_cache.Totals().cached_bytes, 0u);
  EXPECT_EQ(InUseObjects(), baseline) << "blocks lost or duplicated in the caches";
  // The signal storm and the drain's membarrier interrupt critical sections.
  EXPECT_GT(rseq::RestartCount(), restarts_before);
  // With a small budget (the _small_budget targets) classes keep taking
  // capacity from each other, so eviction ran concurrently with everything
  // above.
  if (GetOptions().per_cpu_cache_bytes <= 128 * 1024) {
    EXPECT_GT(Evictions(), 0u);
  }
}

}  // namespace
}  // namespace rseqmalloc::internal
