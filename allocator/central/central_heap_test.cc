#include "allocator/central/central_heap.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "allocator/base/size_classes.h"
#include "allocator/central/central_heap_test_util.h"

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

}  // namespace
}  // namespace rseqmalloc::internal
