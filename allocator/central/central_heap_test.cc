#include "allocator/central/central_heap.h"

#include <gtest/gtest.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include "allocator/base/size_classes.h"
#include "allocator/central/transfer_cache.h"

namespace rseqmalloc::internal {
namespace {

size_t ResidentBytes() {
  FILE* f = fopen("/proc/self/statm", "r");
  if (f == nullptr) return 0;
  unsigned long size = 0, resident = 0;
  if (fscanf(f, "%lu %lu", &size, &resident) != 2) resident = 0;
  fclose(f);
  return resident * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

constexpr size_t kMiB = size_t{1} << 20;

// AddressSanitizer's interceptors (memset) fault in shadow memory, one byte
// per 8 bytes touched, and that shadow stays resident after our pages go.
#if defined(__SANITIZE_ADDRESS__)
constexpr size_t kShadowSlack = 256 * kMiB / 8;
#else
constexpr size_t kShadowSlack = 0;
#endif

// ThreadSanitizer keeps several shadow bytes per byte touched: RSS then says
// nothing about our heap.
#if defined(__SANITIZE_THREAD__)
#define RSEQMALLOC_SKIP_RSS_CHECK() GTEST_SKIP() << "RSS is dominated by TSAN shadow"
#else
#define RSEQMALLOC_SKIP_RSS_CHECK() (void)0
#endif

// Checks the identities documented in central_stats.h; returns the stats.
CentralStats CheckedStats() {
  static CentralStats s;  // big; keep it off the stack
  GetCentralStats(&s);
  EXPECT_EQ(s.system_reserved_bytes, s.page_heap_bytes + s.system_unused_bytes);
  EXPECT_EQ(s.page_heap_bytes, s.small_span_bytes + s.large_in_use_bytes + s.page_heap_free_bytes +
                                   s.page_heap_returned_bytes);
  EXPECT_EQ(s.small_span_bytes, s.central_free_bytes + s.transfer_cache_bytes +
                                    s.small_in_use_bytes + s.span_waste_bytes);
  uint64_t span_bytes = 0;
  for (uint32_t cls = 1; cls < kNumClasses; ++cls) {
    const CentralClassStats& k = s.per_class[cls];
    size_t waste = ClassToPages(cls) * kPageSize % ClassToSize(cls);
    EXPECT_EQ(
        k.span_bytes,
        (k.central_free_objects + k.transfer_objects + k.in_use_objects) * k.size + k.spans * waste)
        << "class " << cls;
    span_bytes += k.span_bytes;
  }
  EXPECT_EQ(span_bytes, s.small_span_bytes);
  EXPECT_GT(s.metadata_bytes, 0u);
  return s;
}

TEST(CentralHeap, InitIsIdempotentAndThreadSafe) {
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) threads.emplace_back([] { InitCentralHeap(); });
  for (auto& t : threads) t.join();
  InitCentralHeap();
  void* p;
  ASSERT_EQ(RemoveBatch(1, &p, 1), 1);
  InsertBatch(1, &p, 1);
}

TEST(CentralHeap, EveryClassRoundTrips) {
  for (uint32_t cls = 1; cls < kNumClasses; ++cls) {
    int n = ClassToBatch(cls);
    std::vector<void*> objs(n);
    ASSERT_EQ(RemoveBatch(cls, objs.data(), n), n) << cls;
    for (void* p : objs) {
      ASSERT_EQ(ClassifyPointer(p), cls);
      ASSERT_EQ(UsableSize(p), ClassToSize(cls));
      memset(p, 0xcd, ClassToSize(cls));
    }
    InsertBatch(cls, objs.data(), n);
  }
  EXPECT_EQ(RemoveBatch(0, nullptr, 1), 0);
  EXPECT_EQ(RemoveBatch(kNumClasses, nullptr, 1), 0);
  CentralStats s = CheckedStats();
  EXPECT_EQ(s.small_in_use_bytes, 0u);
}

int g_global_int;

TEST(CentralHeap, ClassifyPointerTellsOursFromTheRest) {
  int on_stack = 0;
  void* from_libc = malloc(100);
  ASSERT_NE(from_libc, nullptr);
  memset(from_libc, 0, 100);  // GCC 12 warns of a const pointer to unwritten memory
  EXPECT_EQ(ClassifyPointer(nullptr), kNotOurs);
  EXPECT_EQ(ClassifyPointer(&on_stack), kNotOurs);
  EXPECT_EQ(ClassifyPointer(&g_global_int), kNotOurs);
  EXPECT_EQ(ClassifyPointer(from_libc), kNotOurs);
  EXPECT_EQ(ClassifyPointer(reinterpret_cast<void*>(~uintptr_t{0})), kNotOurs);
  EXPECT_EQ(UsableSize(&on_stack), 0u);
  free(from_libc);

  char* big = static_cast<char*>(AllocateLarge(3 * kPageSize + 1, 0));
  ASSERT_NE(big, nullptr);
  EXPECT_EQ(ClassifyPointer(big), kLargeClass);
  EXPECT_EQ(UsableSize(big), 4 * kPageSize);
  EXPECT_EQ(ClassifyPointer(big + 16), kNotOurs);
  EXPECT_EQ(ClassifyPointer(big + kPageSize), kNotOurs);
  EXPECT_EQ(ClassifyPointer(big + 4 * kPageSize - 1), kNotOurs);
  FreeLarge(big);
  EXPECT_EQ(ClassifyPointer(big), kNotOurs);  // a free span

  // A slab whose objects all came back (and left the transfer cache) is a
  // free span again.
  uint32_t cls = SizeToClass(200000);
  void* objs[2];
  ASSERT_EQ(RemoveBatch(cls, objs, 2), 2);
  EXPECT_EQ(ClassifyPointer(objs[0]), cls);
  InsertBatch(cls, objs, 2);
  ReleaseFreeMemory();
  EXPECT_EQ(ClassifyPointer(objs[0]), kNotOurs);
  EXPECT_EQ(ClassifyPointer(objs[1]), kNotOurs);
}

TEST(CentralHeap, LargeAllocationsHonourAlignment) {
  for (size_t align = 0; align <= 4 * kMiB; align = align == 0 ? 1 : align * 2) {
    size_t size = 300000 + align / 3;
    char* p = static_cast<char*>(AllocateLarge(size, align));
    ASSERT_NE(p, nullptr) << align;
    size_t want = align < kPageSize ? kPageSize : align;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % want, 0u) << align;
    EXPECT_GE(UsableSize(p), size);
    EXPECT_LT(UsableSize(p), size + kPageSize);
    memset(p, 0x11, size);
    FreeLarge(p);
  }
  CheckedStats();
}

TEST(CentralHeap, ImpossibleLargeRequestsFailCleanly) {
  EXPECT_EQ(AllocateLarge(SIZE_MAX, 0), nullptr);
  EXPECT_EQ(AllocateLarge(SIZE_MAX - kPageSize, 0), nullptr);
  EXPECT_EQ(AllocateLarge(size_t{1} << 50, 0), nullptr);
  EXPECT_EQ(AllocateLarge(kPageSize, size_t{1} << 60), nullptr);
  EXPECT_EQ(AllocateLarge(kPageSize, 3 * kPageSize), nullptr);  // not a power of two
  void* p = AllocateLarge(0, 0);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(UsableSize(p), kPageSize);
  FreeLarge(p);
}

TEST(CentralHeapDeathTest, FreeLargeOfAnInteriorPointerCrashes) {
  char* p = static_cast<char*>(AllocateLarge(2 * kPageSize, 0));
  ASSERT_NE(p, nullptr);
  EXPECT_DEATH(FreeLarge(p + kPageSize), "^rseqmalloc: free\\(\\): invalid pointer \\(not the start of a live large block\\) 0x[0-9a-f]+\n$");
  FreeLarge(p);
}

// The identities hold with objects held in several layers at once, and
// in_use counts exactly what the caller holds.
TEST(CentralHeap, StatsAddUp) {
  ReleaseFreeMemory();
  uint32_t c1 = SizeToClass(48), c2 = SizeToClass(3000), c3 = SizeToClass(100000);
  void* a[100];
  void* b[20];
  void* c[3];
  ASSERT_EQ(RemoveBatch(c1, a, 100), 100);
  ASSERT_EQ(RemoveBatch(c2, b, 20), 20);
  ASSERT_EQ(RemoveBatch(c3, c, 3), 3);
  InsertBatch(c1, a + 60, 40);  // into the transfer cache
  void* big = AllocateLarge(5 * kMiB, 0);
  ASSERT_NE(big, nullptr);
  CentralStats s = CheckedStats();
  EXPECT_EQ(s.per_class[c1].in_use_objects, 60u);
  EXPECT_EQ(s.per_class[c1].transfer_objects, 40u);
  EXPECT_EQ(s.per_class[c2].in_use_objects, 20u);
  EXPECT_EQ(s.per_class[c3].in_use_objects, 3u);
  EXPECT_EQ(s.small_in_use_bytes,
            60 * ClassToSize(c1) + 20 * ClassToSize(c2) + 3 * ClassToSize(c3));
  EXPECT_EQ(s.large_in_use_bytes, 5 * kMiB);
  InsertBatch(c1, a, 60);
  InsertBatch(c2, b, 20);
  InsertBatch(c3, c, 3);
  FreeLarge(big);
  ReleaseFreeMemory();
  s = CheckedStats();
  EXPECT_EQ(s.small_in_use_bytes + s.transfer_cache_bytes + s.small_span_bytes, 0u);
  EXPECT_EQ(s.large_in_use_bytes, 0u);
  EXPECT_EQ(s.page_heap_free_bytes, 0u);
  EXPECT_EQ(s.page_heap_returned_bytes, s.page_heap_bytes);
}

// 16 threads take batches of random classes, stamp every object with a tag
// unique to (thread, batch), hold a few batches, and check the stamps before
// giving them back. An object handed to two holders at once would carry the
// later holder's stamp when the earlier one checks.
TEST(CentralHeap, SixteenThreadsNeverShareAnObject) {
  constexpr int kThreads = 16;
  constexpr int kIters = 1500;
  constexpr int kHeld = 6;
  std::atomic<long> failures{0};
  std::atomic<long> objects{0};
  auto worker = [&](int id) {
    std::mt19937 rng(id * 7919 + 1);
    struct Held {
      uint32_t cls = 0;
      int n = 0;
      uint64_t tag = 0;
      void* objs[64];
    };
    std::vector<Held> held(kHeld);
    auto stamp_len = [](uint32_t cls) { return std::min<size_t>(ClassToSize(cls), 512); };
    auto check_and_return = [&](Held& h) {
      if (h.n == 0) return;
      size_t len = stamp_len(h.cls);
      for (int i = 0; i < h.n; ++i) {
        const uint64_t* w = static_cast<const uint64_t*>(h.objs[i]);
        for (size_t j = 0; j < len / 8; ++j) {
          if (w[j] != h.tag + static_cast<uint64_t>(i)) {
            failures.fetch_add(1);
            break;
          }
        }
        if (ClassifyPointer(h.objs[i]) != h.cls) failures.fetch_add(1);
      }
      InsertBatch(h.cls, h.objs, h.n);
      h.n = 0;
    };
    for (int it = 0; it < kIters; ++it) {
      Held& h = held[rng() % kHeld];
      check_and_return(h);
      // Mostly small classes, which is where contention is; sometimes any.
      h.cls = 1 + rng() % (rng() % 4 == 0 ? kNumClasses - 1 : 40);
      int want = 1 + static_cast<int>(rng() % (2 * ClassToBatch(h.cls)));
      if (want > 64) want = 64;
      h.n = RemoveBatch(h.cls, h.objs, want);
      if (h.n != want) failures.fetch_add(1);
      h.tag = (static_cast<uint64_t>(id) << 48) | (static_cast<uint64_t>(it) << 8);
      size_t len = stamp_len(h.cls);
      for (int i = 0; i < h.n; ++i) {
        uint64_t* w = static_cast<uint64_t*>(h.objs[i]);
        for (size_t j = 0; j < len / 8; ++j) w[j] = h.tag + static_cast<uint64_t>(i);
      }
      objects.fetch_add(h.n);
      if (it % 64 == 0) std::this_thread::yield();
    }
    for (Held& h : held) check_and_return(h);
  };
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) threads.emplace_back(worker, t);
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(objects.load(), kThreads * kIters);
  CentralStats s = CheckedStats();
  EXPECT_EQ(s.small_in_use_bytes, 0u);
}

// A program that frees everything sees its RSS fall, for large allocations
// (page-heap cap) and small ones (slabs go back, then the cap).
TEST(CentralHeap, RssFallsAfterFreeingLargeAllocations) {
  RSEQMALLOC_SKIP_RSS_CHECK();
  ReleaseFreeMemory();
  size_t rss0 = ResidentBytes();
  std::vector<void*> blocks;
  for (int i = 0; i < 256; ++i) {
    void* p = AllocateLarge(kMiB, 0);
    ASSERT_NE(p, nullptr);
    memset(p, 0x42, kMiB);
    blocks.push_back(p);
  }
  size_t rss1 = ResidentBytes();
  EXPECT_GE(rss1, rss0 + 200 * kMiB);
  for (void* p : blocks) FreeLarge(p);
  size_t rss2 = ResidentBytes();
  CentralStats s = CheckedStats();
  EXPECT_LE(s.page_heap_free_bytes, s.page_heap_free_cap_bytes);
  // Resident: what the page heap says it keeps (within its release delay).
  EXPECT_LE(rss2, rss0 + s.page_heap_free_bytes + 8 * kMiB + kShadowSlack);
  ReleaseFreeMemory();
  EXPECT_LE(ResidentBytes(), rss0 + 8 * kMiB + kShadowSlack);
}

TEST(CentralHeap, RssFallsAfterFreeingSmallObjects) {
  RSEQMALLOC_SKIP_RSS_CHECK();
  ReleaseFreeMemory();
  size_t rss0 = ResidentBytes();
  struct Run {
    uint32_t cls;
    std::vector<void*> objs;
  };
  std::vector<Run> runs = {{SizeToClass(1024), {}}, {SizeToClass(16384), {}}};
  for (Run& r : runs) {
    size_t size = ClassToSize(r.cls);
    size_t count = 128 * kMiB / size;
    r.objs.resize(count);
    size_t got = 0;
    while (got < count) {
      int n = static_cast<int>(std::min<size_t>(count - got, ClassToBatch(r.cls)));
      ASSERT_EQ(RemoveBatch(r.cls, r.objs.data() + got, n), n);
      got += n;
    }
    for (void* p : r.objs) memset(p, 0x24, size);
  }
  size_t rss1 = ResidentBytes();
  EXPECT_GE(rss1, rss0 + 200 * kMiB);
  for (Run& r : runs) {
    for (size_t i = 0; i < r.objs.size(); i += ClassToBatch(r.cls)) {
      int n = static_cast<int>(std::min<size_t>(r.objs.size() - i, ClassToBatch(r.cls)));
      InsertBatch(r.cls, r.objs.data() + i, n);
    }
  }
  size_t rss2 = ResidentBytes();
  CentralStats s = CheckedStats();
  // Left resident: the free pages the page heap keeps for its release
  // delay plus what the transfer caches and central lists hold.
  EXPECT_LE(rss2, rss0 + s.page_heap_free_bytes + s.transfer_cache_bytes + s.central_free_bytes +
                      8 * kMiB + kShadowSlack);
  ReleaseFreeMemory();
  EXPECT_LE(ResidentBytes(), rss0 + 8 * kMiB + kShadowSlack);
}

TEST(CentralHeap, FreeCapOfZeroReleasesOnEveryFree) {
  size_t old_cap = PageHeapFreeCap();
  SetPageHeapFreeCap(0);
  void* p = AllocateLarge(2 * kMiB, 0);
  ASSERT_NE(p, nullptr);
  memset(p, 1, 2 * kMiB);
  FreeLarge(p);
  CentralStats s = CheckedStats();
  EXPECT_EQ(s.page_heap_free_bytes, 0u);
  SetPageHeapFreeCap(old_cap);
  EXPECT_EQ(PageHeapFreeCap(), old_cap);
}

TEST(CentralHeap, ReleaseDelayOfZeroReleasesOnEveryFree) {
  uint64_t old_delay = PageHeapReleaseDelay();
  ReleaseFreeMemory();
  SetPageHeapReleaseDelay(0);
  uint64_t before = CheckedStats().released_expired_bytes;
  void* p = AllocateLarge(2 * kMiB, 0);
  ASSERT_NE(p, nullptr);
  memset(p, 1, 2 * kMiB);
  FreeLarge(p);
  CentralStats s = CheckedStats();
  EXPECT_EQ(s.page_heap_free_bytes, 0u);
  EXPECT_GE(s.released_expired_bytes, before + 2 * kMiB);
  EXPECT_EQ(s.page_heap_next_release_ns, UINT64_MAX);
  SetPageHeapReleaseDelay(old_delay);
  EXPECT_EQ(PageHeapReleaseDelay(), old_delay);
}

// fork_while_locked: another thread keeps the central heap busy while we
// fork with every lock held; the child must be able to allocate. With a
// release delay of 0 that thread returns every large block to the OS as it
// frees it, with the lock dropped around madvise, so some forks catch its
// spans in flight: the child must take them back (after malloc_trim nothing
// free may still count as resident).
TEST(CentralHeap, ForkWhileBusy) {
  uint64_t old_delay = PageHeapReleaseDelay();
  SetPageHeapReleaseDelay(0);
  std::atomic<bool> stop{false};
  std::thread busy([&] {
    void* objs[32];
    while (!stop.load()) {
      int n = RemoveBatch(3, objs, 32);
      InsertBatch(3, objs, n);
      void* p = AllocateLarge(300000, 0);
      if (p != nullptr) FreeLarge(p);
    }
  });
  for (int round = 0; round < 5; ++round) {
    LockAllForFork();
    pid_t pid = fork();
    if (pid == 0) {
      UnlockAllAfterFork(/*child=*/true);
      void* objs[32];
      if (RemoveBatch(3, objs, 32) != 32) _exit(1);
      InsertBatch(3, objs, 32);
      void* p = AllocateLarge(5 * kMiB, 0);
      if (p == nullptr) _exit(2);
      memset(p, 3, 5 * kMiB);
      FreeLarge(p);
      ReleaseFreeMemory();
      CentralStats s;
      GetCentralStats(&s);
      if (s.page_heap_free_bytes != 0) _exit(3);
      _exit(0);
    }
    UnlockAllAfterFork(/*child=*/false);
    ASSERT_GT(pid, 0);
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0);
  }
  stop.store(true);
  busy.join();
  SetPageHeapReleaseDelay(old_delay);
  CheckedStats();
}

// A fork while another thread is in the middle of the idle pass over idle
// classes (which holds its own lock, not one LockAllForFork takes): the
// child, which has no such thread, may still run the pass.
TEST(CentralHeap, ForkChildMayRunTheIdlePassAnotherThreadWasRunning) {
  std::atomic<bool> held{false}, done{false};
  std::thread pass([&] {
    while (!TryLockInsidePassForTesting()) std::this_thread::yield();
    held.store(true);
    while (!done.load()) std::this_thread::yield();
    UnlockInsidePassForTesting();
  });
  while (!held.load()) std::this_thread::yield();
  LockAllForFork();
  pid_t pid = fork();
  if (pid == 0) {
    UnlockAllAfterFork(/*child=*/true);
    if (!TryLockInsidePassForTesting()) _exit(1);
    UnlockInsidePassForTesting();
    _exit(0);
  }
  UnlockAllAfterFork(/*child=*/false);
  done.store(true);
  pass.join();
  ASSERT_GT(pid, 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "the child found the pass's lock held";
}

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
  constexpr uint32_t kFirstBig = 56;  // the 8 KiB class (checked below)
  ASSERT_EQ(ClassToSize(kFirstBig), kPageSize);
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
