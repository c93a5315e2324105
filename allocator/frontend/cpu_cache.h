// Per-CPU (or per-mm_cid) caches: the default front end, and only its
// policy. The mechanism -- regions, the rseq pop / push, capacity changes,
// eviction, remote draining with the membarrier fence -- is rseq::PercpuSlab
// (rseq/slab.h); one slab class per size class.
//
// A CpuCache is an object over a slab and a backend (where objects come
// from and go back to, and where its own per-id state is allocated). The
// allocator has one, g_cpu_cache, over g_cpu_slab (the slab its fast paths
// use) and the central heap; a test can build a small one over a slab and a
// fake backend of its own, with its own budget, without environment
// variables (own_cpu_cache_test.cc).
//
// Call tree of the slow paths (the fast paths are in frontend.h):
//   Refill(cls)       pop missed on this id
//     -> register the thread's rseq area on its first miss
//     -> NoteMiss, Grow (capacity policy, below)
//     -> RemoveBatch from the transfer cache, push what fits; when that
//        finds nothing (out of memory): DrainAll, then RemoveBatch again
//   Overflow(cls, p)  push found the class full
//     -> NoteMiss, Grow; if still full: pop a batch, InsertBatch
//   Maintain()        every kMaintainEvery misses of an id, and from the
//                     maintenance thread: cold classes give capacity back
//
// Capacity policy, in O(1) per miss whatever the size mix (constants in
// cpu_cache.cc):
//  * every class starts at capacity 0; a miss grows it by its current
//    capacity (at least 1, at most a batch): 1, 2, 4, ... batch, then by a
//    batch at a time, up to the class's maximum (128 KiB of objects, at
//    least two batches, at most 2048 slots);
//  * an underflow may take a class of up to 128-byte objects further, to
//    its run capacity (the size of its slot range: 3 MiB of objects up to
//    64 B, 12,288 slots up to 128 B), with budget no other class uses: a
//    CPU that allocates thousands of small objects in a row and then frees
//    them keeps the whole batch; overflows never grow a class past its
//    maximum, so objects that only pass through a CPU are not held there;
//  * a refill fetches half the capacity (at least 1, at most kMaxMove), so a
//    class that misses rarely holds few objects;
//  * an overflow grows the class only while it also allocates on that id
//    (an underflow in this or the last interval) or is below
//    kFreeOnlyCapacity (2 * kMaxMove slots): a CPU that only frees a class
//    (a consumer's) passes its objects on in batches instead of hoarding
//    up to the class's maximum while the allocating CPU refills from
//    fresh spans;
//  * the capacity of an id is bounded by its budget, which starts at
//    RSEQMALLOC_PER_CPU_CACHE_BYTES. Past it, a growing class takes
//    capacity from others, looking at no
//    more than kStealScan classes per miss from a round-robin cursor: first
//    capacity no object uses, then, from a class with no miss in the
//    current interval, a batch of cached objects (evicted to the transfer
//    cache);
//  * every kMaintainEvery misses of an id (and from the maintenance thread)
//    the classes that had no miss in the last interval give back half of
//    their unused capacity, and those cold for two intervals half of their
//    objects too; counts start a new interval;
//  * the same look adapts the id's budget: an interval in which at least
//    kRaiseMinMisses misses found the budget used up, at kRaiseRate per
//    second or more, raises it by half the base budget, up to
//    RSEQMALLOC_PER_CPU_CACHE_MAX_BYTES, and within a pool of growth that
//    all ids share (kGrowthPoolBudgets base budgets); an interval of at
//    least kLowerAfterNs with fewer than kLowerRate misses per second
//    lowers it by the same step, down to the base. (Demand spread over
//    many classes at once -- servers, many sizes -- outgrows any fixed
//    budget, and a larger fixed one costs every program memory.)
//  * an id with no slow-path activity for kIdlePeriodNs while others had
//    some is drained whole back to the transfer caches; malloc_trim drains
//    every id.
#ifndef RSEQMALLOC_ALLOCATOR_FRONTEND_CPU_CACHE_H_
#define RSEQMALLOC_ALLOCATOR_FRONTEND_CPU_CACHE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "allocator/base/size_classes.h"
#include "rseq/pseudocode.h"
#include "rseq/slab.h"

namespace rseqmalloc::internal {

// The slab the fast paths pop from and push to. Until g_cpu_cache.Start
// every pop misses and every push fails, so the fast paths are valid before
// initialisation and in every mode.
extern rseq::PercpuSlab g_cpu_slab;

// Shared by every front end's statistics.
struct FrontEndTotals {
  uint64_t cached_bytes;
  uint64_t hits;    // counted by thread caches only (a count per call would
                    // cost the per-CPU fast paths an instruction)
  uint64_t misses;  // refills and overflows that found the cache empty / full
};

// What a CpuCache stands on. Slow paths only: a virtual call per batch.
class CpuCacheBackend {
 public:
  // Up to n objects of class cls into out; how many (0: none to be had).
  virtual int RemoveBatch(uint32_t cls, void** out, int n) = 0;
  // Objects the cache gives back (each had come from RemoveBatch).
  virtual void ReturnBatch(uint32_t cls, void* const* objects, int n) = 0;
  // Zeroed memory for the per-id state, never freed; nullptr on failure.
  virtual void* AllocateMetadata(size_t bytes) = 0;

 protected:
  ~CpuCacheBackend() = default;
};

class CpuCache {
 public:
  constexpr CpuCache(rseq::PercpuSlab* slab, CpuCacheBackend* backend)
      : slab_(slab), backend_(backend) {}
  CpuCache(const CpuCache&) = delete;
  CpuCache& operator=(const CpuCache&) = delete;

  // Reserves the slab and the per-id state, with a capacity budget per id
  // (RSEQMALLOC_PER_CPU_CACHE_BYTES for the allocator's) that may grow up
  // to max_budget_bytes (..._MAX_BYTES; at most budget_bytes: never). False
  // when it cannot (no memory); the allocator then uses thread caches.
  bool Init(uint64_t budget_bytes, uint64_t max_budget_bytes = 0);
  // Turns the fast paths on.
  void Start(rseq::IndexMode mode);

  // Slow paths after a miss / an overflow. nullptr / false when the thread
  // cannot use rseq: the caller falls back to a thread cache.
  void* Refill(uint32_t cls);
  bool Overflow(uint32_t cls, void* p);

  // Returns every cached object of `id` (or of every id) to the backend.
  // False when remote draining is unavailable.
  bool DrainId(int id);
  bool DrainAll();
  // Capacity housekeeping of every used id (cold classes give back).
  void MaintainAll();
  // Drains the ids idle for a whole period, when a period has passed since
  // the last look (from any thread). Returns how many.
  int DrainIdleIfDue();

  FrontEndTotals Totals() const;

  struct IdStats {
    bool used;
    uint64_t cached_bytes;
    uint64_t capacity_bytes;
    uint64_t underflows;  // refills that found the class empty
    uint64_t overflows;   // frees that found it full
    uint64_t steals;      // capacity taken from another class without objects
    uint64_t evictions;   // batches of another class's objects evicted
    uint64_t budget_bytes;   // the id's budget now
    uint64_t budget_raises;  // times it grew (its lowerings: budget_lowers)
    uint64_t budget_lowers;
  };
  // One id's figures (a racy snapshot, for reports).
  IdStats StatsOf(int id) const;
  // Misses of one class over every id, since the start.
  uint64_t ClassMisses(uint32_t cls) const;
  // Over every id, since the start: how often the class lost unused
  // capacity to another class, and how many batches of its cached objects
  // were evicted for another class.
  struct ClassLosses {
    uint64_t steals;
    uint64_t evictions;
  };
  ClassLosses LossesOf(uint32_t cls) const;
  // pthread_atfork: every id's slow-path lock, in id order.
  void LockForFork();
  void UnlockAfterFork();
  // The most capacity a class grows to through any miss, and through
  // underflows (its slot range; larger for classes of up to 128 B).
  static uint32_t MaxCapacity(uint32_t cls);
  static uint32_t RunCapacity(uint32_t cls);
  // Where a class that only frees on an id stops growing (cpu_cache.cc).
  static constexpr uint32_t kFreeOnlyCapacity = 256;
  // Objects cached and capacity (both in objects) of one class on one id.
  using ClassFill = rseq::PercpuSlab::Fill;
  ClassFill FillOf(int id, uint32_t cls) const;
  int NumIds() const { return num_ids_; }
  // Budget above the base, summed over ids, and the most it may reach.
  uint64_t GrowthUsed() const { return growth_used_bytes_.load(std::memory_order_relaxed); }
  uint64_t GrowthPool() const { return growth_pool_bytes_; }

  // The clock the budget policy reads (tests: a fake one).
  using Clock = int64_t (*)();
  void SetClockForTesting(Clock clock) { clock_ = clock; }

 private:
  struct IdState;  // cpu_cache.cc

  static void ToBackend(void* self, size_t cls, void* const* objects, int n);
  uint64_t EvictTo(int id, uint32_t cls, uint32_t capacity);
  uint64_t Steal(int id, IdState& state, uint32_t for_cls, uint64_t bytes);
  void GrowAfterMiss(int id, IdState& state, uint32_t cls, bool underflow);
  void Maintain(int id, IdState& state);
  void AdaptBudget(IdState& state);
  void ResetBudget(IdState& state);
  static int64_t PreciseNowNs();
  void NoteMiss(int id, IdState& state, uint32_t cls);
  int CurrentIdOrRegister() const;
  int MaybeDrainIdle();

  rseq::PercpuSlab* slab_;
  CpuCacheBackend* backend_;
  IdState* ids_ = nullptr;
  int num_ids_ = 0;
  uint64_t budget_bytes_ = 0;
  uint64_t max_budget_bytes_ = 0;
  uint64_t growth_pool_bytes_ = 0;
  bool prefetch_refills_ = false;  // the CPU has PREFETCHW (prefetch.h)
  std::atomic<uint64_t> growth_used_bytes_{0};
  Clock clock_ = &PreciseNowNs;
  std::atomic<int64_t> next_idle_scan_ns_{0};
  // Per victim class: capacity stolen, batches evicted (LossesOf).
  std::atomic<uint64_t> class_steals_[kNumClasses] = {};
  std::atomic<uint64_t> class_evictions_[kNumClasses] = {};
};

// The allocator's: g_cpu_slab over the central heap.
extern CpuCache g_cpu_cache;

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_FRONTEND_CPU_CACHE_H_
