// Transfer cache of one size class: a lock-protected stack of free objects
// in front of the central free list. Batches that one CPU frees and another
// allocates move through here without touching span metadata.
//
// Capacity: up to kTransferCacheBatches (512) batches of the class, but at
// most kTransferCacheMaxBytes (1 MiB) of objects, and never less than two
// batches. So small classes cache up to 16384 objects (a program that frees
// ten thousand 64-byte objects on one CPU and allocates them on another
// moves them without touching a span), and big classes a few objects; all
// 96 caches together hold at most about 93 MiB (193,926 slots, 1.5 MiB of
// slot arrays, touched only as used). Memory they hold and no CPU asks for
// goes back to the central free lists over time (ReturnIdle, from the
// maintenance pass), and ReleaseFreeMemory drains them.
//
// RemoveRange serves from the cache first and tops up from the central free
// list; InsertRange fills the cache and sends the overflow to the central
// list. The cache lock is never held while the central list is called.
#ifndef RSEQMALLOC_ALLOCATOR_CENTRAL_TRANSFER_CACHE_H_
#define RSEQMALLOC_ALLOCATOR_CENTRAL_TRANSFER_CACHE_H_

#include <cstddef>
#include <cstdint>

#include "allocator/central/central_freelist.h"
#include "allocator/base/spinlock.h"

namespace rseqmalloc::internal {

inline constexpr int kTransferCacheBatches = 512;
inline constexpr size_t kTransferCacheMaxBytes = size_t{1} << 20;

struct TransferCacheStats {
  uint64_t objects;     // cached now
  uint64_t capacity;    // objects it may hold
  int64_t outstanding;  // handed out by RemoveRange and not yet given back
  uint64_t lock_contended;  // lock acquisitions that had to wait, since the start
};

class alignas(64) TransferCache {
 public:
  constexpr TransferCache() = default;
  TransferCache(const TransferCache&) = delete;
  TransferCache& operator=(const TransferCache&) = delete;

  // Objects the cache of class cls can hold.
  static int CapacityFor(uint32_t cls);

  // slots must hold CapacityFor(cls) pointers and outlive the cache.
  void Init(uint32_t cls, CentralFreeList* central, void** slots);

  int RemoveRange(void** out, int n);
  void InsertRange(void* const* items, int n);

  // Sends every cached object to the central free list.
  void Drain();
  // Sends the objects that stayed cached all through the interval since
  // the last call (the low-water mark) to the central free list, and starts
  // a new interval. Returns how many.
  int ReturnIdle();

  void GetStats(TransferCacheStats* out);
  void GetStatsLocked(TransferCacheStats* out) const;

  void Lock() { lock_.Lock(); }
  void Unlock() { lock_.Unlock(); }

 private:
  int Give(int n);

  SpinLock lock_;
  void** slots_ = nullptr;
  int count_ = 0;
  int capacity_ = 0;
  int low_water_ = 0;  // fewest objects cached since the last Plunder
  int64_t outstanding_ = 0;
  CentralFreeList* central_ = nullptr;
};

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_CENTRAL_TRANSFER_CACHE_H_
