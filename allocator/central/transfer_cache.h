// Transfer cache of one size class and CPU shard: a lock-protected stack of
// free objects in front of the central free list. Batches that one CPU
// frees and another allocates move through here without touching span
// metadata. Each class has one cache per shard of CPUs (central_heap.cc):
// a CPU's overflows go to its shard's cache, and its refills take from it,
// then from the other shards' caches that hold objects (an occupancy word
// per class names them: transfer_shards.h), then from the central list, so
// objects stay near the core that freed them and nothing strands in a
// shard. A shard that the other shards' refills emptied (Robbed) takes
// from the central list instead, until its own CPUs free into it again:
// otherwise shards whose CPUs free and allocate alike rob each other in a
// ring, each taking what the next needs, round after round
// (docs/design.md, "Shards that rob each other in a ring").
//
// Base capacity: up to kTransferCacheBatches (512) batches of the class,
// but at most kTransferCacheMaxBytes (1 MiB) of objects, and never less
// than two batches. So small classes cache up to 16384 objects (a program
// that frees ten thousand 64-byte objects on one CPU and allocates them on
// another moves them without touching a span), and big classes a few
// objects.
//
// Every class may grow its caches, up to kTransferCacheGrownBatches (32768)
// batches or kTransferCacheGrownBytes (16 MiB) of objects, shared out among
// the class's shards. A class of up to kTransferCacheBurstAboveBytes (8
// KiB) starts grown, and when objects make round trips through the span
// lists (since the last growth, frees overflowed into the central list and
// a refill then had to take from it) a shrunk capacity doubles again. A
// bigger class starts at its base capacity and grows, all the way at once,
// only on a burst of frees: kTransferCacheBurstObjects (16) objects put in
// a shard with no refill of that shard between them. A program that holds
// a few of a big class, replaced at random (a server's table), makes round
// trips all the time as its count of live objects wanders, and a grown
// cache then keeps every block the wandering frees (`server` at one
// thread: 26 MiB in the transfer caches against 16). Such a program cannot
// free 16 in a row without holding them; one that frees its blocks
// together can (docs/design.md, "Big classes grow on bursts").
//
// With a grown cache, a program that frees a hundred thousand small blocks
// and allocates as many again (SmartHeap's sh6bench and sh8bench do) moves
// them in batches instead of threading each through its span's free list
// and reading it back out, a cache miss per object; one that
// frees thousands of 8-128 KiB blocks together and allocates them again
// keeps them instead of releasing each one's span to the page heap, which
// merges it, and cutting it again (docs/design.md, "The transfer cache
// grows for round trips", and "Big classes grow too"). Before the page heap
// takes fresh pages, the caches of classes over 1 KiB give all
// their objects back (GiveAll, from the page heap's growth hook), so what
// they keep is never why the heap grows.
// Memory they hold and no CPU asks for goes back to the central free lists
// over time (ReturnIdle, from the maintenance pass), which also halves a
// grown capacity that was not needed and gives back the slot pages it may
// no longer use (the stack grows down from the end of its slots, so the
// low ones); ReleaseFreeMemory drains them. Slot arrays are reserved for
// the grown capacity (32 MiB of address space for all classes with up to
// 4 shards, 129 MiB with 16) and touched only as used. Where the system will not
// reserve that much (a low RLIMIT_AS), the caches are set up without growth
// (central_heap.cc): the base capacities need a few MiB.
//
// RemoveRange serves from the cache first and tops up from the central free
// list; InsertRange fills the cache and sends the overflow to the central
// list. The cache lock is never held while the central list is called.
#ifndef RSEQMALLOC_ALLOCATOR_CENTRAL_TRANSFER_CACHE_H_
#define RSEQMALLOC_ALLOCATOR_CENTRAL_TRANSFER_CACHE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "allocator/central/central_freelist.h"
#include "allocator/base/spinlock.h"

namespace rseqmalloc::internal {

inline constexpr int kTransferCacheBatches = 512;
inline constexpr size_t kTransferCacheMaxBytes = size_t{1} << 20;
inline constexpr int kTransferCacheGrownBatches = 32768;
inline constexpr size_t kTransferCacheGrownBytes = size_t{16} << 20;
inline constexpr size_t kTransferCacheShardGrownBytes = size_t{4} << 20;
// A shard that other shards' refills took this many of its class's batches
// from, since its own CPUs last freed into it, no longer takes from other
// shards (Robbed).
inline constexpr int kTransferCacheRingBatches = 64;
// Classes of objects bigger than this grow on bursts of frees only, of
// this many objects (transfer_cache.h, above).
inline constexpr size_t kTransferCacheBurstAboveBytes = size_t{8} << 10;
inline constexpr int kTransferCacheBurstObjects = 16;

struct TransferCacheStats {
  uint64_t objects;     // cached now
  uint64_t capacity;    // objects it may hold now
  uint64_t grows;       // times the capacity doubled, since the start
  int64_t outstanding;  // handed out by RemoveRange and not yet given back
  uint64_t lock_contended;  // lock acquisitions that had to wait, since the start
  // Objects its refills took from the other shards' caches, since the
  // start: blocks another CPU freed, whose lines that CPU may still hold.
  uint64_t from_other_shards;
  // Since the start: objects its frees sent on to the central list because
  // it was full (not idle returns or drains), and objects its refills had
  // to take from the central list after the other shards (freed ones, or
  // fresh from a new slab). What goes down and comes back up again is the
  // round trip through the spans that growth answers.
  uint64_t to_central;
  uint64_t from_central;
};

class alignas(64) TransferCache {
 public:
  constexpr TransferCache() = default;
  TransferCache(const TransferCache&) = delete;
  TransferCache& operator=(const TransferCache&) = delete;

  // Objects the cache of class cls holds at first (each shard the same),
  // and at most once grown when it is one of `shards` caches of the class
  // (the grown bytes are shared out, down to kTransferCacheShardGrownBytes
  // each).
  static int CapacityFor(uint32_t cls);
  static int GrownCapacityFor(uint32_t cls, int shards = 1);
  // The slots Init needs: GrownCapacityFor, or CapacityFor when the cache
  // may not grow.
  static int SlotsFor(uint32_t cls, int shards, bool may_grow) {
    return may_grow ? GrownCapacityFor(cls, shards) : CapacityFor(cls);
  }

  // slots must hold SlotsFor(cls, shards, may_grow) pointers and outlive
  // the cache.
  void Init(uint32_t cls, CentralFreeList* central, void** slots, int shards = 1,
            bool may_grow = true);
  // Sets `bit` in *occupied while the cache holds objects and clears it
  // while it is empty (under its lock), so a refill that looks for a
  // neighbour with objects reads one word instead of every shard's count.
  // The word is a hint: a stale bit costs a look at an empty cache, a
  // missing one skips a cache whose objects the next refill finds.
  void TrackOccupancy(std::atomic<uint32_t>* occupied, uint32_t bit) {
    occupied_ = occupied;
    occupied_bit_ = bit;
  }

  int RemoveRange(void** out, int n) { return RemoveRange(out, n, nullptr, 0); }
  // The same, taking from the caches of `neighbours` (the class's caches
  // of other CPU shards that hold objects, in the order to ask them) before
  // it goes to the central list. With none to ask, a shortfall counts as a
  // round trip (the capacity may grow).
  int RemoveRange(void** out, int n, TransferCache* const* neighbours, int count);
  void InsertRange(void* const* items, int n);

  // Objects the refills of other shards took from this cache since its own
  // CPUs last freed into it (InsertRange). Read without the lock.
  int LostToOthers() const { return lost_to_others_.load(std::memory_order_relaxed); }
  // Whether this shard's refills should leave the other shards alone: it
  // lost kTransferCacheRingBatches batches to them since its own CPUs last
  // freed into it. Its own CPUs then take objects back at about the rate
  // they free them, and what it lacks is what others took: taking it back
  // from a third shard passes the shortfall on, round after round
  // (docs/design.md, "Shards that rob each other in a ring").
  bool Robbed() const { return ring_objects_ > 0 && LostToOthers() >= ring_objects_; }

  // Sends every cached object to the central free list; the capacity goes
  // back to CapacityFor.
  void Drain();
  // Sends every cached object to the central free list; the capacity
  // stays. Returns how many.
  int GiveAll();
  // Sends the objects that stayed cached all through the interval since
  // the last call (the low-water mark) to the central free list, halves a
  // grown capacity that did not grow in the interval, and starts a new
  // interval. Returns how many objects it sent.
  int ReturnIdle();

  void GetStats(TransferCacheStats* out);
  void GetStatsLocked(TransferCacheStats* out) const;

  void Lock() { lock_.Lock(); }
  void Unlock() { lock_.Unlock(); }

 private:
  // Up to n cached objects, top first; never the central list. Caller
  // holds no lock.
  int TakeCached(void** out, int n);
  int TakeLocked(void** out, int n);
  void GrowForRoundTripLocked();
  // Counts the n objects a free puts in; grows a class that grows on
  // bursts when they complete one.
  void NoteFreesLocked(int n);
  // Raises the capacity (both growth rules end here).
  void GrowLocked(int capacity);
  // Objects the central list gives (n < 0: takes back a shortfall).
  void BookFromCentralLocked(int n);
  int Give(int n);
  // Under the lock; atomic because TakeCached reads count_ without it.
  void SetCount(int count) {
    if (occupied_ != nullptr && (count == 0) != (count_ == 0)) {
      if (count == 0) {
        occupied_->fetch_and(~occupied_bit_, std::memory_order_relaxed);
      } else {
        occupied_->fetch_or(occupied_bit_, std::memory_order_relaxed);
      }
    }
    __atomic_store_n(&count_, count, __ATOMIC_RELAXED);
  }
  void ShrinkLocked(int capacity);
  // The stack grows down from end_: the top is the lowest used slot.
  void** Top() const { return end_ - count_; }

  SpinLock lock_;
  void** slots_ = nullptr;  // GrownCapacityFor slots, ending at end_
  void** end_ = nullptr;
  int count_ = 0;
  int capacity_ = 0;
  int base_capacity_ = 0;
  int grown_capacity_ = 0;
  bool overflowed_ = false;  // frees went to the central list since the last growth
  bool grew_ = false;        // the capacity grew in this interval
  uint64_t grows_ = 0;
  int low_water_ = 0;  // fewest objects cached since the last ReturnIdle
  std::atomic<int> lost_to_others_{0};  // written under the lock
  int64_t outstanding_ = 0;
  uint64_t from_other_shards_ = 0;
  uint64_t to_central_ = 0;
  uint64_t from_central_ = 0;
  CentralFreeList* central_ = nullptr;
  std::atomic<uint32_t>* occupied_ = nullptr;
  uint32_t occupied_bit_ = 0;
  // kTransferCacheRingBatches batches, set by Init. Zero-initialised, so
  // that the caches' arrays stay in .bss (untouched pages, not the file's).
  int ring_objects_ = 0;
  bool grows_on_bursts_ = false;  // by Init: the class is over kTransferCacheBurstAboveBytes
  int freed_since_refill_ = 0;    // objects put in since this shard's last RemoveRange
};

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_CENTRAL_TRANSFER_CACHE_H_
