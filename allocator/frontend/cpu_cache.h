// Per-CPU (or per-mm_cid) caches: the default front end, and only its
// policy. The mechanism -- regions, the rseq pop / push, capacity changes,
// eviction, remote draining with the membarrier fence -- is rseq::PercpuSlab
// (rseq/slab.h); one slab class per size class.
//
// Call tree of the slow paths (the fast paths are in frontend.h):
//   Refill(cls)       pop missed on this id
//     -> register the thread's rseq area on its first miss
//     -> NoteMiss, Grow (capacity policy, below)
//     -> RemoveBatch from the transfer cache, push what fits
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
//  * a refill fetches half the capacity (at least 1, at most a batch), so a
//    class that misses rarely holds few objects;
//  * the capacity of an id is bounded by RSEQMALLOC_PER_CPU_CACHE_BYTES.
//    Past it, a growing class takes capacity from others, looking at no
//    more than kStealScan classes per miss from a round-robin cursor: first
//    capacity no object uses, then, from a class with no miss in the
//    current interval, a batch of cached objects (evicted to the transfer
//    cache);
//  * every kMaintainEvery misses of an id (and from the maintenance thread)
//    the classes that had no miss in the last interval give back half of
//    their unused capacity, and those cold for two intervals half of their
//    objects too; counts start a new interval;
//  * an id with no slow-path activity for kIdlePeriodNs while others had
//    some is drained whole back to the transfer caches; malloc_trim drains
//    every id.
#ifndef RSEQMALLOC_ALLOCATOR_FRONTEND_CPU_CACHE_H_
#define RSEQMALLOC_ALLOCATOR_FRONTEND_CPU_CACHE_H_

#include <cstddef>
#include <cstdint>

#include "allocator/size_classes.h"
#include "rseq/pseudocode.h"
#include "rseq/slab.h"

namespace rseqmalloc::internal {

// The slab the fast paths pop from and push to. Until CpuCache::Start every
// pop misses and every push fails, so the fast paths are valid before
// initialisation and in every mode.
extern rseq::PercpuSlab g_cpu_slab;

// Shared by every front end's statistics.
struct FrontEndTotals {
  uint64_t cached_bytes;
  uint64_t hits;    // counted by thread caches only (a count per call would
                    // cost the per-CPU fast paths an instruction)
  uint64_t misses;  // refills and overflows that found the cache empty / full
};

class CpuCache {
 public:
  // Reserves the slab. False when it cannot (no memory); the caller then
  // uses thread caches.
  static bool Init();
  // Turns the per-CPU fast paths on.
  static void Start(rseq::IndexMode mode);

  // Slow paths after a miss / an overflow. nullptr / false when the thread
  // cannot use rseq: the caller falls back to a thread cache.
  static void* Refill(uint32_t cls);
  static bool Overflow(uint32_t cls, void* p);

  // Returns every cached object of `id` (or of every id) to the transfer
  // caches. False when remote draining is unavailable.
  static bool DrainId(int id);
  static bool DrainAll();
  // Capacity housekeeping of every used id (cold classes give back).
  static void MaintainAll();
  // Drains the ids idle for a whole period, when a period has passed since
  // the last look (from any thread). Returns how many.
  static int DrainIdleIfDue();

  static FrontEndTotals Totals();

  struct IdStats {
    bool used;
    uint64_t cached_bytes;
    uint64_t capacity_bytes;
    uint64_t underflows;  // refills that found the class empty
    uint64_t overflows;   // frees that found it full
    uint64_t steals;      // capacity taken from another class without objects
    uint64_t evictions;   // batches of another class's objects evicted
  };
  // One id's figures (a racy snapshot, for reports).
  static IdStats StatsOf(int id);
  // Misses of one class over every id, since the start.
  static uint64_t ClassMisses(uint32_t cls);
  // Over every id, since the start: how often the class lost unused
  // capacity to another class, and how many batches of its cached objects
  // were evicted for another class.
  struct ClassLosses {
    uint64_t steals;
    uint64_t evictions;
  };
  static ClassLosses LossesOf(uint32_t cls);
  // pthread_atfork: every id's slow-path lock, in id order.
  static void LockForFork();
  static void UnlockAfterFork();
  static uint16_t MaxCapacity(uint32_t cls);
  // Objects cached and capacity (both in objects) of one class on one id.
  using ClassFill = rseq::PercpuSlab::Fill;
  static ClassFill FillOf(int id, uint32_t cls);
  static int NumIds();
};

FrontEndTotals GetCpuCacheTotals();

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_FRONTEND_CPU_CACHE_H_
