// PercpuSlab: per-CPU (or per-mm_cid) bounded stacks of pointers, one stack
// per "class" on every id, with the local pop/push as rseq critical sections
// (slab_sections.h) and every other operation -- capacity changes, eviction,
// draining an id from another thread -- done here, behind one interface.
// The allocator's per-CPU caches are one user (one class per size class);
// anything that wants per-CPU free lists of pointers can be another.
//
//   PercpuSlab slab;                       // constant-initialised: misses
//   slab.Init(max_capacity, num_classes);  // reserve the regions
//   slab.Start(IndexMode::kMmCid);         // fast paths go live
//   void* p = slab.Pop(cls, [&] { return Refill(cls); });
//   slab.Push(cls, p, [&] { Overflow(cls, p); });
//
// Layout. One region of 2^kSlabShift bytes per possible id, reserved with
// MAP_NORESERVE and touched only where used, after one zero page. A region
// starts with an 8-byte header per class {uint32 current, uint32 end}, then
// each class's slots [begin, begin + max_capacity), each range preceded by
// one slot that always holds 0 (the begin marker the pop stops at). The
// last slot of every region and the page before the first one also hold 0,
// so a header of 0 -- "no capacity here" -- makes a pop read a 0 and miss,
// and a push find current >= end and fail.
//
// Who writes what. The fast paths write only `current` (one 32-bit store,
// the commit: 32 bits, not 16, because a 32-bit store reaches the next
// section's 32-bit load at once, and a 16-bit one a 16-bit load only after
// ~8 cycles -- the chain every run of pops or pushes waits on; docs/rseq.md,
// rule 9). Capacity (`end`) changes only through Grow / ShrinkUnused /
// Evict / Drain, and the caller must make those exclusive per id (the
// allocator holds a lock per id): Grow and ShrinkUnused are a compare-and-
// swap of the 64-bit header, safe against any section in flight (a section
// that read the old header commits its `current` into the new one; a push
// may then land one slot above a lowered end, which only makes the class
// full for a while). Evict and Drain move objects out, so they first stop
// the class: its header is swapped to 0 and, unless the thread provably runs
// on that id, membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ) makes every
// section in flight restart; a section that had committed after the swap
// left a non-zero header, so the swap repeats until it reads 0 back twice.
//
// Before Start (and for threads whose rseq area is not registered) the fast
// paths read an rseq area nobody ever registers, whose cpu_id is negative:
// every pop misses and every push fails, with no test on the hit path.
#ifndef RSEQ_SLAB_H_
#define RSEQ_SLAB_H_

#include <cstddef>
#include <cstdint>

#include "rseq/pseudocode.h"
#include "rseq/restarts.h"
#include "rseq/slab_sections.h"

namespace rseqmalloc::rseq {

class PercpuSlab {
 public:
  static constexpr int kMaxClasses = 256;

  constexpr PercpuSlab() = default;
  PercpuSlab(const PercpuSlab&) = delete;
  PercpuSlab& operator=(const PercpuSlab&) = delete;

  // Reserves a region for every possible CPU, with max_capacity[c] slots for
  // class c (0: the class is never used). False when the classes do not fit
  // in a region, or the memory cannot be reserved. Call once.
  bool Init(const std::uint32_t* max_capacity, int num_classes);
  // The address space Init reserves on this machine: a region per
  // possible id and a guard page.
  static std::size_t ReservationBytes();
  void Release();  // unmaps (tests)

  // From now on the fast paths use the calling process's rseq areas
  // (glibc's, or ours: registration.h), indexed by `mode`.
  void Start(IndexMode mode);

  // --- Fast paths (inline; Impl = SlabReference in tests) ---------------------
  // The top item of class cls on the thread's id, or miss()'s result.
  template <typename Impl = SlabSections, bool kDelay = false, typename Miss>
  [[gnu::always_inline]] void* Pop(std::size_t cls, Miss miss) const {
    return Impl::template Pop<kDelay>(where_, cls, miss);
  }
  // Puts item on top of class cls on the thread's id, or calls full().
  template <typename Impl = SlabSections, bool kDelay = false, typename Full>
  [[gnu::always_inline]] void Push(std::size_t cls, void* item, Full full) const {
    Impl::template Push<kDelay>(where_, cls, item, full);
  }

  // --- Slow paths ----------------------------------------------------------------
  // The id this thread's sections would use now; negative when its area is
  // unregistered or the slab not started.
  int CurrentId() const;
  // One pop / push that retries aborts, and reports the id it ran on
  // (negative: unregistered). nullptr / false: empty / full there.
  void* PopRetrying(std::size_t cls, int* id) const;
  bool PushRetrying(std::size_t cls, void* item, int* id) const;

  // Up to n items in one section each way (out: top first; in: as many as
  // fit); abort retried. Return how many moved, and where (negative id:
  // unregistered, and nothing moved).
  template <typename Impl = SlabSections, bool kDelay = false>
  int PopBatch(std::size_t cls, void** out, unsigned n, int* id) const {
    for (;;) {
      int k = Impl::template PopBatch<kDelay>(where_, cls, begin_[cls], out, n);
      if (k != internal::kAbortedCode) {
        *id = CurrentId();
        return k;
      }
      internal::NoteRestart();
    }
  }
  template <typename Impl = SlabSections, bool kDelay = false>
  int PushBatch(std::size_t cls, void* const* items, unsigned n, int* id) const {
    for (;;) {
      int k = Impl::template PushBatch<kDelay>(where_, cls, begin_[cls], items, n);
      if (k != internal::kAbortedCode) {
        *id = CurrentId();
        return k;
      }
      internal::NoteRestart();
    }
  }

  // Racy reads, for policy and statistics.
  struct Fill {
    std::uint32_t cached;    // objects on the stack
    std::uint32_t capacity;  // slots it may use (end - begin)
  };
  Fill FillOf(int id, std::size_t cls) const;

  // Capacity changes of class cls on `id`; the caller keeps them exclusive
  // per id. Each returns the slots added or removed.
  std::uint32_t Grow(int id, std::size_t cls, std::uint32_t slots);
  // Removes capacity no object uses (end - current), up to `slots`.
  std::uint32_t ShrinkUnused(int id, std::size_t cls, std::uint32_t slots);

  // Receives objects taken out of the slab, in batches of at most
  // kSinkBatch. It runs with the id locked against the reference
  // implementation (reference.h), so it must not use this slab.
  static constexpr int kSinkBatch = 32;
  using Sink = void (*)(void* context, std::size_t cls, void* const* objects, int n);
  // Lowers class cls on `id` to `capacity` slots; objects above it go to the
  // sink. From any thread. False when it would need a membarrier fence and
  // the kernel has none (nothing changed then).
  bool Evict(int id, std::size_t cls, std::uint32_t capacity, Sink sink, void* context);
  // Every class of `id` to capacity 0 (header 0); every object to the sink;
  // the id's region back to the OS (it reads as zeros until used again).
  bool Drain(int id, Sink sink, void* context);
  // Bytes of the id's region in memory now (mincore; for tests).
  std::size_t ResidentBytes(int id) const;
  // Whether Evict / Drain of an id the caller does not run on can work.
  bool RemoteAvailable() const { return remote_; }

  int num_ids() const { return num_ids_; }
  int num_classes() const { return num_classes_; }
  std::uint32_t begin(std::size_t cls) const { return begin_[cls]; }
  std::uint32_t max_capacity(std::size_t cls) const { return max_[cls]; }
  bool started() const { return __atomic_load_n(&started_, __ATOMIC_ACQUIRE); }

 private:
  std::uint64_t* Header(int id, std::size_t cls) const;
  void** Slots(int id) const;
  // Swaps the headers of `classes` on `id` to 0 so that no section can
  // change them; returns their last values in `last`.
  bool Stop(int id, const std::size_t* classes, int n, std::uint64_t* last);
  void Hand(int id, std::size_t cls, std::uint32_t from, std::uint32_t to, Sink sink,
            void* context) const;

  // The fast paths' view (one cache line): offsets of the rseq area and of
  // the id field from the never-registered area (0 and cpu_id until Start,
  // so every fast path misses), and the regions.
  alignas(64) SlabWhere where_ = {0, kCpuIdOffset, nullptr};

  bool started_ = false;
  bool remote_ = false;
  IndexMode mode_ = IndexMode::kCpuId;
  int num_ids_ = 0;
  int num_classes_ = 0;
  char* mapping_ = nullptr;
  std::size_t mapping_bytes_ = 0;
  std::uint32_t begin_[kMaxClasses] = {};
  std::uint32_t max_[kMaxClasses] = {};
};

}  // namespace rseqmalloc::rseq

#endif  // RSEQ_SLAB_H_
