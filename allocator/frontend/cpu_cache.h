// Per-CPU (or per-mm_cid) caches: the default front end.
//
// One slab region of 2^kSlabShift bytes per possible id, reserved up front
// and touched lazily. Region layout (rseq/pseudocode.h): one 4-byte header
// per class {uint16 current, uint16 end}, then pointer slots; class c owns
// slots [Begin(c), Begin(c) + MaxCapacity(c)). malloc pops and free pushes
// with one rseq critical section each: no lock, no atomic read-modify-write.
//
// Capacity policy (the constants are in cpu_cache.cc):
//  * every class starts with capacity 0 (end == begin), so an id that is
//    never used costs no memory beyond its untouched reservation;
//  * a miss or an overflow grows the class by one batch, up to
//    MaxCapacity(c), while the id's capacity in bytes stays within
//    RSEQMALLOC_PER_CPU_CACHE_BYTES; past the budget it takes unused capacity
//    (end - current) from the class holding the most, and when that is not
//    enough and the class is in sustained demand (a share of the id's recent
//    misses) it evicts: the class with the most capacity gives up at least a
//    batch of it, and the objects above its new end go to the transfer cache;
//    a refill takes only what fits;
//  * an id whose slow path has not run for kIdlePeriodNs while others ran is
//    drained whole back to the transfer cache (DrainId), so a CPU (or cid)
//    the process stopped using does not strand memory; malloc_trim drains
//    every id.
//
// DrainId works on another id's region without running there: it swaps each
// header to 0 (both checks then fail: 0 <= begin, 0 >= end), forces every
// in-flight critical section of the process to restart with
// membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ), and repeats until no
// section committed after the swap (a commit always leaves a non-zero
// header). The last swapped-out `current` then says exactly which slots hold
// objects. Without that membarrier command, remote draining is off.
#ifndef RSEQMALLOC_ALLOCATOR_FRONTEND_CPU_CACHE_H_
#define RSEQMALLOC_ALLOCATOR_FRONTEND_CPU_CACHE_H_

#include <cstddef>
#include <cstdint>

#include "allocator/size_classes.h"
#include "rseq/primitives.h"

namespace rseqmalloc::internal {

inline constexpr unsigned kSlabShift = 18;

// Shared by every front end's statistics.
struct FrontEndTotals {
  uint64_t cached_bytes;
  uint64_t hits;
  uint64_t misses;
};

// Fast-path state, constant after CpuCacheInit.
extern void* g_slab;
extern uint16_t g_class_begin[kNumClasses];
// Hits since the thread's last slow path (folded into the totals there).
// __thread, not thread_local: no TLS wrapper call on the fast path.
extern __thread uint64_t tls_cpu_cache_hits __attribute__((tls_model("initial-exec")));

class CpuCache {
 public:
  // Reserves the slab for every possible id. False when it cannot (no
  // memory); the caller then uses thread caches.
  static bool Init();

  // Fast path: one attempt. On a miss *id is the id it ran on, negative
  // when the thread is unregistered, rseq::kAborted after an abort.
  template <rseq::IndexMode kMode>
  __attribute__((always_inline)) static void* Pop(uint32_t cls, int* id) {
    void* p = rseq::RseqOps::PopOnce<kMode>(g_slab, kSlabShift, cls, g_class_begin[cls], id);
    if (__builtin_expect(p != nullptr, 1)) ++tls_cpu_cache_hits;
    return p;
  }

  template <rseq::IndexMode kMode>
  __attribute__((always_inline)) static bool Push(uint32_t cls, void* p, int* id) {
    bool done = rseq::RseqOps::PushOnce<kMode>(g_slab, kSlabShift, cls, p, id);
    if (__builtin_expect(done, 1)) ++tls_cpu_cache_hits;
    return done;
  }

  // Slow paths after a miss / an overflow (`fast_id`: what the fast path
  // reported). nullptr / false when the thread cannot use rseq: the caller
  // falls back to a thread cache.
  template <rseq::IndexMode kMode>
  static void* Refill(uint32_t cls, int fast_id);
  template <rseq::IndexMode kMode>
  static bool Overflow(uint32_t cls, void* p, int fast_id);

  // Returns every cached object of `id` (or of every id) to the transfer
  // caches. False when remote draining is unavailable.
  static bool DrainId(int id);
  static bool DrainAll();

  static FrontEndTotals Totals();

  struct IdStats {
    bool used;
    uint64_t cached_bytes;
    uint64_t capacity_bytes;
    uint64_t misses;
  };
  // One id's figures (a racy snapshot, for reports).
  static IdStats StatsOf(int id);
  // pthread_atfork: every id's slow-path lock, in id order.
  static void LockForFork();
  static void UnlockAfterFork();
  static uint16_t MaxCapacity(uint32_t cls);
  // Objects cached and capacity (both in objects) of one class on one id.
  struct ClassFill {
    uint32_t cached;
    uint32_t capacity;
  };
  static ClassFill FillOf(int id, uint32_t cls);
  // Times a class's cached objects were evicted to give capacity to another.
  static uint64_t EvictionCount();
  static int NumIds();
};

FrontEndTotals GetCpuCacheTotals();

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_FRONTEND_CPU_CACHE_H_
