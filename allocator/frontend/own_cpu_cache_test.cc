// CpuCache objects of the tests' own, each over its own slab and a backend
// that hands out slots of a fixed pool and keeps count: no environment
// variable, no central heap. Built into the cpu_cache_test_* binaries (see
// BUILD), beside the tests of the allocator's g_cpu_cache.
#include <sched.h>
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <iterator>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "allocator/base/size_classes.h"
#include "allocator/frontend/cpu_cache.h"
#include "rseq/registration.h"
#include "rseq/slab.h"

namespace rseqmalloc::internal {
namespace {

// A CpuCache of the test's own, over its own slab and a backend that hands
// out slots of a fixed pool and keeps count: no environment variable, no
// central heap. Its budget (4 KiB per id) is so small that classes must
// take capacity from each other on nearly every miss. Two threads allocate
// and free through it while a third drains every id; at the end every pool
// slot must be back in the backend exactly once.
class PoolBackend final : public CpuCacheBackend {
 public:
  static constexpr int kPerClass = 4096;
  static constexpr uint32_t kClasses[] = {1, 2, 5, 9, 17};

  PoolBackend() {
    for (uint32_t cls : kClasses) {
      for (int i = 0; i < kPerClass; ++i) free_[cls].push_back(&storage_[cls][i]);
    }
  }
  int RemoveBatch(uint32_t cls, void** out, int n) override {
    std::lock_guard<std::mutex> hold(mu_);
    int got = 0;
    while (got < n && !free_[cls].empty()) {
      out[got++] = free_[cls].back();
      free_[cls].pop_back();
    }
    return got;
  }
  void ReturnBatch(uint32_t cls, void* const* objects, int n) override {
    std::lock_guard<std::mutex> hold(mu_);
    for (int i = 0; i < n; ++i) free_[cls].push_back(objects[i]);
  }
  void* AllocateMetadata(size_t bytes) override {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return p == MAP_FAILED ? nullptr : p;
  }
  // Every slot of every class back, each once.
  bool AllBackOnce() {
    std::lock_guard<std::mutex> hold(mu_);
    for (uint32_t cls : kClasses) {
      std::vector<void*> sorted = free_[cls];
      std::sort(sorted.begin(), sorted.end());
      if (sorted.size() != kPerClass) return false;
      if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) return false;
    }
    return true;
  }

 private:
  std::mutex mu_;
  std::vector<void*> free_[kNumClasses];
  struct alignas(16) Slot {
    char bytes[16];
  };
  Slot storage_[kNumClasses][kPerClass];
};

// An allocation and a free through a cache of the test's own, as the
// allocator's fast paths do them: the slab on this CPU's id, then the
// cache's Refill or Overflow, then (no rseq here, or the cache gave up) the
// backend itself. *missed (when given) says whether the pop missed.
void* AllocateThrough(rseq::PercpuSlab& slab, CpuCache& cache, PoolBackend& backend, uint32_t cls,
                      bool* missed = nullptr) {
  return slab.Pop(cls, [&]() -> void* {
    if (missed != nullptr) *missed = true;
    void* q = cache.Refill(cls);
    if (q == nullptr) backend.RemoveBatch(cls, &q, 1);
    return q;
  });
}

void FreeThrough(rseq::PercpuSlab& slab, CpuCache& cache, PoolBackend& backend, uint32_t cls,
                 void* p) {
  slab.Push(cls, p, [&] {
    if (!cache.Overflow(cls, p)) backend.ReturnBatch(cls, &p, 1);
  });
}

TEST(CpuCacheObject, SmallCacheOverItsOwnSlabAndBackendLosesNothing) {
  if (rseq::RegisterCurrentThread() == rseq::Registration::kUnavailable) {
    GTEST_SKIP() << "rseq unavailable";
  }
  auto backend = std::make_unique<PoolBackend>();
  rseq::PercpuSlab slab;
  CpuCache cache(&slab, backend.get());
  constexpr uint64_t kBudget = 4096;
  ASSERT_TRUE(cache.Init(kBudget));
  cache.Start(rseq::IndexMode::kCpuId);

  std::atomic<bool> stop{false};
  std::atomic<uint64_t> slab_hits{0};
  auto worker = [&](int t) {
    uint64_t hits = 0;
    std::mt19937 rng(t);
    struct Held {
      void* p;
      uint32_t cls;
    } held[48] = {};
    for (int round = 0; round < 200000; ++round) {
      Held& h = held[rng() % 48];
      if (h.p != nullptr) {
        FreeThrough(slab, cache, *backend, h.cls, h.p);
        h.p = nullptr;
      } else {
        uint32_t cls = PoolBackend::kClasses[rng() % 5];
        bool missed = false;
        void* p = AllocateThrough(slab, cache, *backend, cls, &missed);
        if (!missed) ++hits;
        if (p != nullptr) h = {p, cls};
      }
    }
    for (Held& h : held) {
      if (h.p != nullptr) backend->ReturnBatch(h.cls, &h.p, 1);
    }
    slab_hits.fetch_add(hits);
  };
  std::thread drainer([&] {
    while (!stop.load()) cache.DrainAll();
  });
  std::thread a(worker, 1), b(worker, 2);
  a.join();
  b.join();
  stop.store(true);
  drainer.join();

  uint64_t steals_or_evictions = 0;
  for (int id = 0; id < cache.NumIds(); ++id) {
    CpuCache::IdStats s = cache.StatsOf(id);
    EXPECT_LE(s.capacity_bytes, kBudget) << "id " << id;
    steals_or_evictions += s.steals + s.evictions;
  }
  EXPECT_GT(steals_or_evictions, 0u) << "the small budget never made classes compete";
  ASSERT_TRUE(cache.DrainAll());
  EXPECT_EQ(cache.Totals().cached_bytes, 0u);
  EXPECT_TRUE(backend->AllBackOnce()) << "an object was lost or returned twice";
  // Objects really went through this cache's slab, not only the fallbacks.
  EXPECT_GT(slab_hits.load(), 0u) << "no pop was served by the test's own slab";
  slab.Release();
}

// The budget policy over a cache of the test's own, with a clock the test
// drives: misses that keep finding the budget used up, at a high rate,
// raise it step by step up to the lesser of the maximum and the shared
// growth pool, never beyond; a quiet id gives the growth back; a drain
// resets it; and no object is lost on the way.
std::atomic<int64_t> g_fake_now_ns{1};
std::atomic<int64_t> g_fake_step_ns{1000};
int64_t FakeNowNs() { return g_fake_now_ns.fetch_add(g_fake_step_ns.load()) + g_fake_step_ns.load(); }

// One thread, pinned: rounds over the pool's classes, each taking 64
// objects of one class through the slab and putting them back, so that
// the classes compete for capacity on every round.
void Churn(rseq::PercpuSlab& slab, CpuCache& cache, PoolBackend& backend, int rounds) {
  void* held[64];
  for (int round = 0; round < rounds; ++round) {
    uint32_t cls = PoolBackend::kClasses[round % std::size(PoolBackend::kClasses)];
    for (void*& p : held) p = AllocateThrough(slab, cache, backend, cls);
    for (void* p : held) {
      if (p != nullptr) FreeThrough(slab, cache, backend, cls, p);
    }
  }
}

// Moves the calling thread to `cpu` and keeps it there, so that its id stays.
bool PinTo(int cpu) {
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  return sched_setaffinity(0, sizeof one, &one) == 0 && sched_getcpu() == cpu;
}

bool PinToThisCpu() { return PinTo(sched_getcpu()); }

// The CPUs the process may use, read before any test pins the thread (the
// tests in cpu_cache_test.cc leave it pinned to one).
cpu_set_t InitialCpus() {
  cpu_set_t cpus;
  CPU_ZERO(&cpus);
  sched_getaffinity(0, sizeof cpus, &cpus);
  return cpus;
}
const cpu_set_t g_initial_cpus = InitialCpus();

// Gives the thread back the CPUs it had, so that a pinning test leaves the
// next test (gtest runs them on one thread) every CPU.
class RestoresAffinity {
 public:
  RestoresAffinity() { ok_ = sched_getaffinity(0, sizeof saved_, &saved_) == 0; }
  ~RestoresAffinity() {
    if (ok_) sched_setaffinity(0, sizeof saved_, &saved_);
  }
  RestoresAffinity(const RestoresAffinity&) = delete;
  RestoresAffinity& operator=(const RestoresAffinity&) = delete;

 private:
  cpu_set_t saved_;
  bool ok_ = false;
};

int OnlyUsedId(const CpuCache& cache) {
  int id = -1;
  for (int i = 0; i < cache.NumIds(); ++i) {
    if (cache.StatsOf(i).used) id = i;
  }
  return id;
}

// A cache of the test's own on the one CPU the test thread stays on, over
// the pool backend.
class PinnedCpuCache : public ::testing::Test {
 protected:
  void SetUp() override {
    if (rseq::RegisterCurrentThread() == rseq::Registration::kUnavailable) {
      GTEST_SKIP() << "rseq unavailable";
    }
    ASSERT_TRUE(PinToThisCpu());
    backend = std::make_unique<PoolBackend>();
  }
  RestoresAffinity restores_affinity_;  // constructed before SetUp pins
  std::unique_ptr<PoolBackend> backend;
};

TEST_F(PinnedCpuCache, BudgetGrowsUnderPressureWithinItsBoundsAndShrinksWhenQuiet) {
  for (uint64_t max_budgets : {4, 64}) {
    rseq::PercpuSlab slab;
    CpuCache cache(&slab, backend.get());
    constexpr uint64_t kBase = 4096;
    ASSERT_TRUE(cache.Init(kBase, max_budgets * kBase));
    cache.SetClockForTesting(&FakeNowNs);
    cache.Start(rseq::IndexMode::kCpuId);
    if (!slab.RemoteAvailable()) GTEST_SKIP() << "no membarrier: MaintainAll and drains are off";
    // The bound: the maximum, or the base plus the whole pool when the
    // maximum is beyond it.
    const uint64_t bound = std::min(max_budgets * kBase, kBase + cache.GrowthPool());
    ASSERT_EQ(cache.GrowthPool(), 8 * kBase);

    g_fake_step_ns.store(1000);  // 256 misses in 256 us: a high rate
    uint64_t highest = 0;
    for (int burst = 0; burst < 200; ++burst) {
      Churn(slab, cache, *backend, 20);
      int id = OnlyUsedId(cache);
      ASSERT_GE(id, 0);
      CpuCache::IdStats s = cache.StatsOf(id);
      highest = std::max(highest, s.budget_bytes);
      ASSERT_LE(s.budget_bytes, bound);
      ASSERT_LE(s.capacity_bytes, s.budget_bytes);
      ASSERT_LE(cache.GrowthUsed(), cache.GrowthPool());
    }
    int id = OnlyUsedId(cache);
    ASSERT_GE(id, 0);
    CpuCache::IdStats grown = cache.StatsOf(id);
    EXPECT_GT(grown.budget_raises, 0u) << "budget-limited misses at a high rate never raised it";
    EXPECT_EQ(highest, bound) << "growth stopped before its bound";
    EXPECT_EQ(cache.GrowthUsed(), grown.budget_bytes - kBase);

    // Quiet: each look finds 200 ms gone and no miss; the budget steps down
    // to the base and the pool gets everything back.
    g_fake_step_ns.store(200'000'000);
    for (int pass = 0; pass < 2 * static_cast<int>(max_budgets) + 2; ++pass) cache.MaintainAll();
    CpuCache::IdStats quiet = cache.StatsOf(id);
    EXPECT_EQ(quiet.budget_bytes, kBase);
    EXPECT_GT(quiet.budget_lowers, 0u);
    EXPECT_EQ(cache.GrowthUsed(), 0u);

    // Raised again, then drained: back to the base at once.
    g_fake_step_ns.store(1000);
    Churn(slab, cache, *backend, 400);
    EXPECT_GT(cache.StatsOf(id).budget_bytes, kBase);
    ASSERT_TRUE(cache.DrainAll());
    EXPECT_EQ(cache.GrowthUsed(), 0u);
    Churn(slab, cache, *backend, 1);
    EXPECT_EQ(cache.StatsOf(OnlyUsedId(cache)).budget_bytes, kBase);

    ASSERT_TRUE(cache.DrainAll());
    EXPECT_TRUE(backend->AllBackOnce()) << "an object was lost or returned twice";
    slab.Release();
  }
}

// A class that only frees on an id (a consumer's CPU: its objects come from
// elsewhere) stops growing at kFreeOnlyCapacity and passes the rest on; once
// it also allocates there (an underflow), its overflows grow it further.
TEST_F(PinnedCpuCache, ClassThatOnlyFreesStopsGrowingOneThatAllocatesGoesOn) {
  rseq::PercpuSlab slab;
  CpuCache cache(&slab, backend.get());
  ASSERT_TRUE(cache.Init(256 * 1024));  // room for every class's maximum
  cache.Start(rseq::IndexMode::kCpuId);
  constexpr uint32_t kCls = PoolBackend::kClasses[0];  // 16 B: 2048 slots at most
  ASSERT_GE(CpuCache::MaxCapacity(kCls), 4 * CpuCache::kFreeOnlyCapacity);
  const uint32_t batch = static_cast<uint32_t>(ClassToBatch(kCls));
  auto free_one = [&](void* p) { FreeThrough(slab, cache, *backend, kCls, p); };

  // Freed here, allocated elsewhere (straight from the backend).
  std::vector<void*> objects(PoolBackend::kPerClass / 2);
  for (int round = 0; round < 4; ++round) {
    for (void*& p : objects) ASSERT_EQ(backend->RemoveBatch(kCls, &p, 1), 1);
    for (void* p : objects) free_one(p);
  }
  int id = OnlyUsedId(cache);
  ASSERT_GE(id, 0);
  CpuCache::ClassFill fill = cache.FillOf(id, kCls);
  EXPECT_GE(fill.capacity, CpuCache::kFreeOnlyCapacity / 2) << "it must still pass batches on";
  EXPECT_LE(fill.capacity, CpuCache::kFreeOnlyCapacity + batch)
      << "a class that only frees kept growing";

  // One allocation here that finds the class empty marks it as allocating
  // on this id: from then on its overflows grow it past the bound.
  std::vector<void*> cached;
  for (;;) {
    void* p = slab.Pop(kCls, [] { return static_cast<void*>(nullptr); });
    if (p == nullptr) break;
    cached.push_back(p);
  }
  void* refilled = cache.Refill(kCls);
  ASSERT_NE(refilled, nullptr);
  cached.push_back(refilled);
  for (void* p : cached) free_one(p);
  for (int round = 0; round < 4; ++round) {
    for (void*& p : objects) ASSERT_EQ(backend->RemoveBatch(kCls, &p, 1), 1);
    for (void* p : objects) free_one(p);
  }
  EXPECT_GT(cache.FillOf(id, kCls).capacity, CpuCache::kFreeOnlyCapacity + batch)
      << "a class that allocates here did not grow past the free-only bound";

  if (slab.RemoteAvailable()) {
    ASSERT_TRUE(cache.DrainAll());
    EXPECT_TRUE(backend->AllBackOnce()) << "an object was lost or returned twice";
  }
  slab.Release();
}

// A tiny class that a CPU allocates thousands of in a row, then frees
// (a tree built and torn down), grows past its usual maximum through its
// underflows until the whole batch stays on the CPU; overflows alone never
// take it past that maximum (objects that only pass through a CPU would be
// held there for nothing).
TEST_F(PinnedCpuCache, TinyClassGrowsPastItsMaximumOnlyThroughUnderflows) {
  rseq::PercpuSlab slab;
  CpuCache cache(&slab, backend.get());
  ASSERT_TRUE(cache.Init(256 * 1024));  // room for 16,384 16-byte objects
  cache.Start(rseq::IndexMode::kCpuId);
  constexpr uint32_t kCls = PoolBackend::kClasses[0];  // 16 B
  constexpr int kBatch = 4000;
  ASSERT_GT(static_cast<int>(CpuCache::RunCapacity(kCls)), kBatch);
  ASSERT_LT(static_cast<int>(CpuCache::MaxCapacity(kCls)), kBatch);
  ASSERT_LE(kBatch, PoolBackend::kPerClass);

  std::vector<void*> objects(kBatch);
  int misses_last_round = -1;
  for (int round = 0; round < 40 && misses_last_round != 0; ++round) {
    misses_last_round = 0;
    for (void*& p : objects) {
      bool missed = false;
      p = AllocateThrough(slab, cache, *backend, kCls, &missed);
      ASSERT_NE(p, nullptr);
      misses_last_round += missed ? 1 : 0;
    }
    for (void* p : objects) FreeThrough(slab, cache, *backend, kCls, p);
  }
  int id = OnlyUsedId(cache);
  ASSERT_GE(id, 0);
  EXPECT_EQ(misses_last_round, 0) << "the batch never came to fit on the CPU";
  EXPECT_GE(static_cast<int>(cache.FillOf(id, kCls).capacity), kBatch);
  EXPECT_LE(cache.FillOf(id, kCls).capacity, CpuCache::RunCapacity(kCls));

  // From empty again, the class allocating on this id (one underflow):
  // frees of objects allocated elsewhere (straight from the backend) only
  // overflow. They grow it to the usual maximum, and no further.
  if (!slab.RemoteAvailable()) GTEST_SKIP() << "no membarrier: no drain";
  ASSERT_TRUE(cache.DrainAll());
  void* first = AllocateThrough(slab, cache, *backend, kCls);
  ASSERT_NE(first, nullptr);
  FreeThrough(slab, cache, *backend, kCls, first);
  std::vector<void*> passing(1024);  // the pool keeps these beside a full cache
  for (int round = 0; round < 16; ++round) {
    for (void*& p : passing) ASSERT_EQ(backend->RemoveBatch(kCls, &p, 1), 1);
    for (void* p : passing) FreeThrough(slab, cache, *backend, kCls, p);
    ASSERT_LE(cache.FillOf(id, kCls).capacity, CpuCache::MaxCapacity(kCls))
        << "overflows took the class past its usual maximum";
  }
  EXPECT_EQ(cache.FillOf(id, kCls).capacity, CpuCache::MaxCapacity(kCls))
      << "overflows did not grow the class to its usual maximum";

  ASSERT_TRUE(cache.DrainAll());
  EXPECT_TRUE(backend->AllBackOnce()) << "an object was lost or returned twice";
  slab.Release();
}

// Growth off (the maximum at or below the base): the budget never moves.
TEST_F(PinnedCpuCache, BudgetStaysPutWhenGrowthIsOff) {
  rseq::PercpuSlab slab;
  CpuCache cache(&slab, backend.get());
  ASSERT_TRUE(cache.Init(4096, 2048));
  cache.SetClockForTesting(&FakeNowNs);
  cache.Start(rseq::IndexMode::kCpuId);
  g_fake_step_ns.store(1000);
  Churn(slab, cache, *backend, 2000);
  int id = OnlyUsedId(cache);
  ASSERT_GE(id, 0);
  CpuCache::IdStats s = cache.StatsOf(id);
  EXPECT_EQ(s.budget_bytes, 4096u);
  EXPECT_EQ(s.budget_raises, 0u);
  EXPECT_GT(s.steals + s.evictions, 0u) << "the classes never competed: the test shows nothing";
  if (slab.RemoteAvailable()) {
    ASSERT_TRUE(cache.DrainAll());
    EXPECT_TRUE(backend->AllBackOnce());
  }
  slab.Release();
}


// Out of memory on one id while another id caches objects of the class:
// the refill must find them (oom_test saw `operator new` succeed after
// `malloc` had failed, once the thread had moved to the CPU whose cache
// still held the blocks it fetched there).

TEST(CpuCacheObject, RefillOutOfMemoryTakesWhatAnotherIdCaches) {
  if (rseq::RegisterCurrentThread() == rseq::Registration::kUnavailable) {
    GTEST_SKIP() << "rseq unavailable";
  }
  std::vector<int> cpus;
  for (int cpu = 0; cpu < CPU_SETSIZE && cpus.size() < 2; ++cpu) {
    if (CPU_ISSET(cpu, &g_initial_cpus)) cpus.push_back(cpu);
  }
  if (cpus.size() < 2) GTEST_SKIP() << "needs two CPUs";
  RestoresAffinity restores_affinity;
  auto backend = std::make_unique<PoolBackend>();
  rseq::PercpuSlab slab;
  CpuCache cache(&slab, backend.get());
  ASSERT_TRUE(cache.Init(64 * 1024));
  cache.Start(rseq::IndexMode::kCpuId);
  if (!slab.RemoteAvailable()) GTEST_SKIP() << "no membarrier: no remote drains";
  constexpr uint32_t kCls = PoolBackend::kClasses[0];

  // The test holds every object of the class but 32, which it frees on the
  // first CPU; whatever that CPU's cache passes on to the backend it takes
  // too. Then the first CPU's id holds the class's only free objects.
  std::vector<void*> held(PoolBackend::kPerClass);
  held.resize(backend->RemoveBatch(kCls, held.data(), PoolBackend::kPerClass));
  ASSERT_EQ(held.size(), static_cast<size_t>(PoolBackend::kPerClass));
  ASSERT_TRUE(PinTo(cpus[0]));
  for (int i = 0; i < 32; ++i) {
    FreeThrough(slab, cache, *backend, kCls, held.back());
    held.pop_back();
  }
  void* spill[PoolBackend::kPerClass];
  for (int n; (n = backend->RemoveBatch(kCls, spill, PoolBackend::kPerClass)) > 0;) {
    held.insert(held.end(), spill, spill + n);
  }
  ASSERT_GT(cache.StatsOf(cpus[0]).cached_bytes, 0u) << "nothing stayed cached on the first CPU";

  ASSERT_TRUE(PinTo(cpus[1]));
  void* p = cache.Refill(kCls);
  EXPECT_NE(p, nullptr) << "out of memory while CPU " << cpus[0] << "'s cache holds the class";
  if (p != nullptr) held.push_back(p);

  backend->ReturnBatch(kCls, held.data(), static_cast<int>(held.size()));
  ASSERT_TRUE(cache.DrainAll());
  EXPECT_TRUE(backend->AllBackOnce()) << "an object was lost or returned twice";
  slab.Release();
}

}  // namespace
}  // namespace rseqmalloc::internal
