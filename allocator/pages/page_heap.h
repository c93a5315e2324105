// The page heap: spans of whole 8 KiB pages.
//
// Free spans are kept in exact-length lists for 1..kMaxPages pages (separate
// lists for backed and returned spans, backed preferred at each length) and
// in two unsorted lists of longer runs searched best-fit (lowest address on a
// tie). Long free runs are few in practice (they coalesce), so the linear
// search is cheap; allocation is first-fit by length otherwise.
//
// Allocation splits the chosen span and keeps the remainder free in the same
// state. Freeing coalesces with free neighbours of the same state (backed
// with backed, returned with returned) and, for a span the program frees,
// with a returned neighbour no longer than itself when the result is long
// (Mergeable in page_heap.cc says why), found through the pagemap entries of
// the pages just before and after the span. Every page the heap ever got from
// the system belongs to exactly one live span at all times, and the pagemap
// holds that span for each span's first and last page, which is what makes
// the neighbour lookup sound. Memory fresh from the system counts as returned:
// it is not resident until touched.
//
// Release policy (page_heap_release.cc; constants below):
//   * A freed span stays backed and is reused first. It is stamped with the
//     time it became free (a merge of backed spans takes the stamp of its
//     biggest part, so a small fresh free does not keep a big old run
//     alive, and lands on the age list where that part was: no walk past
//     the other free spans) and kept on an age list. Spans free for longer
//     than the release delay (default kDefaultReleaseDelayNs, 5 s; SetReleaseDelay)
//     go back to the OS with madvise(MADV_DONTNEED), oldest first, in one
//     sweep that also takes what would expire within the next eighth of the
//     delay, so a steady trickle of frees costs few sweeps. A delay of 0
//     returns every span as soon as it is freed.
//   * Who sweeps: the maintenance thread when one runs (it sleeps until
//     next_release_deadline()); otherwise, and when that thread is more than
//     kLateReleaseNs late, the next New / Delete that finds the deadline
//     passed.
//   * Growth asks the caches above first: when no free span fits, the
//     growth hook (SetGrowthHook; the allocator's gives back the blocks
//     over 1 KiB that its transfer caches keep) runs once, and the
//     spans it frees are looked at again before anything else.
//   * Growth returns long runs first: when no free span fits, the heap
//     must take fresh pages and its free resident pages outnumber the
//     pages in use, backed runs longer than kMaxPages (oldest first, none
//     of which fit) covering the request go back before the heap grows,
//     once per New. Free resident pages up to what is in use are left
//     alone: they are the pool a program of large blocks reuses. Such runs are what a program of large
//     blocks of changing sizes leaves behind; without this its RSS grows by
//     every size it ever used. Short backed spans stay: they are what the
//     size classes reuse, and returning them on every fault was measured to
//     cost 20x on `large` (docs/design.md, "Returning memory").
//   * A cap (SetFreeCap, default kDefaultFreeCapBytes) bounds free backed
//     bytes regardless of age: over it, the oldest go back until 3/4 of
//     the cap remain.
//   * ReleaseAll (malloc_trim) returns every free backed page.
//   * No lock is held across madvise or mmap: the spans to release are
//     taken off the lists (state kReleasing) and merged back as returned
//     after madvise; fresh memory is mapped with the lock dropped.
//   * Out of address space: when the system refuses fresh memory (an
//     RLIMIT_AS the program reached), New unmaps every free span once
//     (UnmapFree, which holds the lock across munmap: a rare path) and
//     tries again. Only then is heap memory ever unmapped.
//
// Locality (page_heap_locality.cc): the spans each CPU carves small objects
// from (CentralFreeList's home spans) are placed by CPU slot. Such a span
// goes where any span would (best fit), unless that touches a span another
// slot is carving next to (its latest span is within kLocalityPages): then
// right after the slot's own previous span while those pages are free, else
// at the start of an aligned, wholly free window of kLocalityPages (64
// KiB), else at the best fit after all (no growth for a window's sake). So
// pages that two CPUs write at the same time are not neighbours: taking
// fresh pages in turn, two CPUs got alternate pages, and two threads each
// cycling through 10,000 blocks of 64 B ran at 0.6x of their speed alone
// (the hardware prefetchers and the coherence of neighbouring lines tie
// their caches together; docs/design.md, "Each CPU's spans together").
// A program with one CPU slot at work sees no change.
//
// Large spans change length in place (ResizeLarge, for realloc): growth
// takes the free pages after the span, shrinking frees its tail.
//
// Aligned allocations look for an aligned run inside every free span (best
// fit), so freed aligned blocks are found again whatever their neighbours.
//
// Memory comes from the system in multiples of kGrowPages (16 MiB; a
// quarter of SystemChunkBytes when a limit makes that smaller), which
// stays untouched until used. A PageHeap must outlive its memory (use static
// storage): spans of other heaps are recognised by their owner pointer.
#ifndef RSEQMALLOC_ALLOCATOR_PAGES_PAGE_HEAP_H_
#define RSEQMALLOC_ALLOCATOR_PAGES_PAGE_HEAP_H_

#include <cstddef>
#include <cstdint>

#include "allocator/base/size_classes.h"
#include "allocator/pages/span.h"
#include "allocator/base/spinlock.h"

namespace rseqmalloc::internal {

inline constexpr size_t kMaxPages = 128;  // exact-length lists up to 1 MiB
inline constexpr size_t kGrowPages = (size_t{16} << 20) >> kPageShift;
inline constexpr size_t kDefaultFreeCapBytes = size_t{1} << 30;
inline constexpr uint64_t kDefaultReleaseDelayNs = 5'000'000'000;
inline constexpr uint64_t kLateReleaseNs = 1'000'000'000;
inline constexpr uint64_t kNoDeadline = UINT64_MAX;
// Placement by CPU slot (Locality, above).
inline constexpr int kLocalitySlots = 64;
inline constexpr int kNoLocality = -1;
inline constexpr size_t kLocalityPages = 8;

struct PageHeapStats {
  uint64_t total_bytes;           // obtained from the system, still mapped
  uint64_t small_in_use_bytes;    // spans holding small objects
  uint64_t large_in_use_bytes;    // spans handed out as large allocations
  uint64_t free_backed_bytes;     // free, possibly resident
  uint64_t free_returned_bytes;   // free, returned to the OS or never touched
  uint64_t released_bytes_total;  // cumulative bytes this heap madvised away:
  uint64_t released_expired_bytes;  //   free longer than the delay
  uint64_t released_growth_bytes;   //   to make room for fresh pages
  uint64_t released_cap_bytes;      //   over the cap
  uint64_t released_trim_bytes;     //   ReleaseAll
  uint64_t growth_hook_calls;       // New asked the caches above for spans before growing
  uint64_t growth_hook_objects;     //   and the free objects they gave back
  uint64_t next_release_ns;         // deadline of the oldest backed span
  uint64_t free_spans;
  uint64_t long_free_spans;  // free runs longer than kMaxPages
  uint64_t unmapped_bytes_total;  // free spans unmapped for want of address space
  uint64_t age_walk_steps;  // spans passed keeping the age list in order, since the start
  uint64_t spare_spans;     // Span structs kept for the next cut (in use for the arena)
};

// Free spans by length, for the statistics report: bucket 0 holds spans of
// 1 page, bucket b spans of 2^(b-1)+1 .. 2^b pages, the last one every span
// longer than kMaxPages. Spans being released at the time are not counted.
inline constexpr int kFreeSpanBuckets = 9;  // 1, 2, 3-4, ..., 65-128, > 128
struct FreeSpanHistogram {
  uint64_t backed_spans[kFreeSpanBuckets];
  uint64_t backed_pages[kFreeSpanBuckets];
  uint64_t returned_spans[kFreeSpanBuckets];
  uint64_t returned_pages[kFreeSpanBuckets];
};
constexpr int FreeSpanBucket(size_t pages) {
  if (pages > kMaxPages) return kFreeSpanBuckets - 1;
  int bucket = 0;
  while ((size_t{1} << bucket) < pages) ++bucket;
  return bucket;
}
static_assert(FreeSpanBucket(kMaxPages) == kFreeSpanBuckets - 2);

// Where New puts a span. kRoomToGrow is for a block that realloc moves
// because it grows: at the start of the longest free run (resident runs
// first) when that run holds kGrowthRunFactor times the block, so that the
// next growths take the pages after it in place; further in when a block
// that grows (Span::grows) ends where the run starts, so that both have
// the same room; otherwise best fit.
enum class Placement { kBestFit, kRoomToGrow };
inline constexpr size_t kGrowthRunFactor = 4;

class PageHeap {
 public:
  constexpr PageHeap() = default;
  PageHeap(const PageHeap&) = delete;
  PageHeap& operator=(const PageHeap&) = delete;

  // Allocates n pages whose first page number is a multiple of align_pages
  // (a power of two) and registers them in the pagemap: a slab of class cls
  // (every page gets the span and class), or a large allocation when
  // cls == kLargeClass (first and last page get the span; the first page's
  // class byte is kLargeClass). nullptr when out of memory or n is absurd.
  // slot (0 <= slot < kLocalitySlots, with align_pages 1): place the span
  // by that CPU slot's previous ones (Locality, above).
  Span* New(size_t n, uint32_t cls, size_t align_pages = 1, int slot = kNoLocality,
            Placement placement = Placement::kBestFit);

  // Returns an in-use span of this heap; coalesces and applies the cap.
  void Delete(Span* span);

  // New for up to `count` spans of n pages of class cls (no alignment),
  // under one hold of the lock while free spans fit; when none fits, one
  // span through New (which may grow the heap). Returns how many went to
  // out[], 0 when out of memory. A refill of a class with one or two
  // objects per span needs several spans at once, and each lock hold is
  // two atomic operations.
  int NewSpans(size_t n, uint32_t cls, int slot, Span** out, int count);

  // Delete for several spans, under one hold of the lock.
  void DeleteSpans(Span* const* spans, int count);

  // Changes the length of an in-use large span to n pages in place:
  // shrinking frees the tail; growing takes the free pages right after the
  // span (or address space the system has not handed out yet, when the span
  // ends where it starts). Growing, it takes up to `room` pages when they
  // are free after it. False, with the span unchanged, when it cannot.
  bool ResizeLarge(Span* span, size_t n, size_t room = 0);

  // Returns every free backed page to the OS.
  void ReleaseAll();

  // Unmaps every free span (New does when the system refuses fresh
  // memory: the address space is what a limit counts). Returns the pages
  // unmapped.
  size_t UnmapFree();

  // Returns the free backed spans whose delay has passed (and those due
  // within the sweep's slack); adds the bytes to *released. Returns the
  // next deadline (kNoDeadline: nothing waits). Takes the lock itself.
  uint64_t ReleaseExpired(uint64_t* released = nullptr);
  // When the oldest free backed span is due (monotonic ns), without a lock.
  uint64_t next_release_deadline() const {
    return __atomic_load_n(&next_deadline_ns_, __ATOMIC_RELAXED);
  }
  // Free backed pages waiting for their delay, without a lock.
  uint64_t waiting_bytes() const {
    return __atomic_load_n(&free_backed_pages_, __ATOMIC_RELAXED) << kPageShift;
  }

  void SetFreeCap(size_t bytes);
  size_t free_cap() const;
  void SetReleaseDelay(uint64_t ns);
  uint64_t release_delay() const;
  // Whether a maintenance thread sweeps (New / Delete then sweep only when
  // it is late).
  void SetBackgroundSweeps(bool on);
  // Monotonic nanoseconds; tests inject their own.
  using Clock = uint64_t (*)();
  void SetClock(Clock clock);
  // Called, without the lock, by the free that gives the heap a release
  // deadline when it had none (the maintenance thread may be asleep).
  void SetDeadlineHook(void (*hook)());
  // Called, without the lock, once by a New that finds no free span and is
  // about to take fresh pages: it may give the heap spans that caches above
  // hold (free objects of the big classes), and returns how many objects
  // it gave back; a New that got some looks for a fit again first.
  using GrowthHook = size_t (*)();
  void SetGrowthHook(GrowthHook hook);

  // Fork child, lock held: spans a thread of the parent was releasing when
  // the process forked go back on the free lists (as backed: whether the
  // madvise happened is unknown).
  void ReclaimReleasingLocked();

  void GetStats(PageHeapStats* out);
  // For tests: whether the age list runs from oldest to newest, links both
  // ways, and holds exactly the free backed spans' pages.
  bool AgeListConsistent();
  void GetFreeSpanHistogram(FreeSpanHistogram* out);  // takes the lock
  void GetStatsLocked(PageHeapStats* out) const;  // caller holds Lock()

  void Lock() { lock_.Lock(); }
  void Unlock() { lock_.Unlock(); }

 private:
  enum class Cause { kExpired, kGrowth, kCap, kTrim };
  struct ReleaseGoal {
    uint64_t stamped_before_ns = 0;            // spans freed before this
    uint64_t keep_backed_pages = UINT64_MAX;   // until at most this many
    uint64_t min_pages = 0;                    // at least this many
    bool long_only = false;  // min_pages from runs longer than kMaxPages only
    Cause cause;
  };
  uint64_t Now() const;
  Span* TryNewLocked(size_t n, uint32_t cls, size_t align_pages, int slot, bool* no_fit,
                     Placement placement = Placement::kBestFit);
  Span* PlaceForSlot(int slot, size_t n, Span* best_fit, uintptr_t* first);
  bool TouchesAnotherSlot(uintptr_t first, size_t n, int slot) const;
  bool CarvingNear(const Span* span) const;
  Span* FreeSpanAt(uintptr_t page, size_t n) const;
  Span* FindWindow();
  bool GrowUnlocked(size_t n);
  // Runs the growth hook (no lock held); the objects it gave back.
  size_t AskCachesForSpans();
  bool WantsSweepLocked(uint64_t now) const;
  ReleaseGoal SweepGoalLocked(uint64_t now) const;
  // What a call leaves to do once the lock is dropped: a sweep that is due,
  // and the deadline hook when a deadline appeared.
  struct PendingWork {
    bool sweep = false;
    bool deadline_appeared = false;
    ReleaseGoal goal;
  };
  PendingWork SweepDueLocked(uint64_t now) const;
  PendingWork AfterFreeLocked(uint64_t now);  // SweepDueLocked and the hook
  void DoPendingWork(const PendingWork& work);
  uint64_t Release(const ReleaseGoal& goal);
  int TakeForRelease(const ReleaseGoal& goal, uint64_t taken, Span** out, Cause* causes, int max);
  void FinishRelease(Span* const* spans, const Cause* causes, const bool* released, int n,
                     uint64_t now);
  void AddBackedPages(uint64_t delta) {
    __atomic_store_n(&free_backed_pages_, free_backed_pages_ + delta, __ATOMIC_RELAXED);
  }
  void PublishDeadlineLocked();
  bool TakeDeadlineAppearedLocked();

  // Cuts up to `count` spans of n pages from the free ones under one hold
  // of the lock, with the sweep of due releases a hold owes. When fewer:
  // *no_fit if nothing free fitted (else metadata ran out); *long_backed
  // whether long resident runs are free beyond what is in use (growth gives
  // those back first).
  int CutFromFree(size_t n, uint32_t cls, size_t align_pages, int slot, Placement placement,
                  Span** out, int count, bool* no_fit, bool* long_backed);
  Span* FindFree(size_t n);
  Span* FindRoomToGrow(size_t n, uintptr_t* first);
  size_t RoomForTheBlockBefore(const Span* run) const;
  static Span* BestLongFit(const SpanList* list, size_t n);
  Span* FindFreeAligned(size_t n, size_t align_pages, uintptr_t* first);
  Span* FreeSpanAfter(const Span* span);
  size_t FreePagesAfter(const Span* span, size_t limit);
  void TakeFreePagesAfter(Span* span, size_t pages);
  bool GrowAt(uintptr_t first_page, size_t n);
  bool ShrinkLargeLocked(Span* span, size_t n, uint64_t now);
  void CheckInUseLargeLocked(const Span* span) const;
  Span* Carve(Span* span, size_t n);
  // Span structs for cuts, merges and fresh pages, which happen under the
  // lock: a merge's struct goes to spare_spans_ and the next cut takes it
  // from there, so neither takes the arena's lock (two more atomic
  // operations each); the arena only hands out new ones. Not bounded: a
  // program that frees 5000 blocks and then allocates them again merges
  // 5000 times, then cuts 5000 times, and the arena's own list of freed
  // structs was not bounded either.
  Span* NewSpanLocked();
  void DeleteSpanLocked(Span* span);
  void DeleteLocked(Span* span, uint64_t now);
  bool AddFreshPages(uintptr_t first, size_t n);
  bool TrimTo(Span* span, uintptr_t first_page, size_t n);
  void Register(Span* span, uint32_t cls);
  void SetBoundaries(Span* span);
  // Coalesces a free span with its free neighbours and files it.
  // absorb_returned: a span the program freed also takes in returned
  // neighbours when the result is long (Mergeable).
  void MergeAndInsert(Span* span, bool absorb_returned = false);
  bool Mergeable(const Span* span, const Span* other, bool absorb_returned) const;
  // Where the merged span's age-list walk starts (AgeHint): the heaviest
  // backed part's old place.
  struct AgeHint {
    bool set = false;
    Span* start = nullptr;  // the span the part followed; null: the oldest end
    size_t pages = 0;       // the heaviest backed part so far
  };
  void TakeInNeighbour(Span* span, Span* other, AgeHint* hint);
  void InsertFree(Span* span, const AgeHint* hint = nullptr);
  void RemoveFree(Span* span);
  // `fresh` (not on any list, with old's state and stamp) takes the free
  // span `old`'s place: old leaves its length list, fresh joins its own,
  // and fresh takes old's place on the age list.
  void ReplaceFree(Span* old, Span* fresh);
  SpanList* ListFor(const Span* span);

  SpinLock lock_;
  Span* spare_spans_ = nullptr;  // linked through Span::next
  size_t spare_count_ = 0;
  SpanList backed_[kMaxPages + 1];
  SpanList returned_[kMaxPages + 1];
  SpanList long_backed_;
  SpanList long_returned_;
  SpanAgeList age_;        // backed free spans, oldest first
  SpanList releasing_;     // taken out for madvise, lock dropped
  size_t free_cap_bytes_ = kDefaultFreeCapBytes;
  uint64_t delay_ns_ = kDefaultReleaseDelayNs;
  uint64_t next_deadline_ns_ = kNoDeadline;
  bool background_sweeps_ = false;
  bool deadline_appeared_ = false;  // since the hook last ran
  void (*deadline_hook_)() = nullptr;
  GrowthHook growth_hook_ = nullptr;
  uint64_t growth_hook_calls_ = 0;    // atomic: the hook runs without the lock
  uint64_t growth_hook_objects_ = 0;
  Clock clock_ = nullptr;  // nullptr: CLOCK_MONOTONIC_COARSE
  uint64_t releasing_pages_ = 0;
  uint64_t total_pages_ = 0;
  uint64_t small_pages_ = 0;
  uint64_t large_pages_ = 0;
  uint64_t free_backed_pages_ = 0;
  uint64_t free_returned_pages_ = 0;
  uint64_t free_spans_ = 0;
  uint64_t released_bytes_[4] = {};  // by Cause
  uint64_t unmapped_pages_ = 0;      // by UnmapFree, since the start
  uintptr_t local_next_[kLocalitySlots] = {};  // page after each slot's last span
};

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_PAGES_PAGE_HEAP_H_
