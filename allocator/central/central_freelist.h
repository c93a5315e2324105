// Central free list of one size class: the slabs (spans) of that class that
// still have free objects.
//
// A slab's free objects are a singly linked list threaded through the
// objects themselves, plus an uncarved tail: a fresh span is not touched up
// front, objects are carved from its start only as batches ask for them, so
// a slab costs resident memory in proportion to what was handed out.
// A slab whose objects have all come back goes straight back to the page
// heap (which caches or releases its pages by its own policy).
//
// Small classes (objects up to kHomeMaxObjectBytes) carve per CPU: each CPU
// slot (the CPU number modulo kHomes) has a home span that its refills take
// from, off the nonempty list, and no other CPU takes from it while it is
// home. Objects of two CPUs then never share a cache line because their
// refills raced on one span: a 16-byte object handed to CPU 0 next to one
// handed to CPU 1 makes every write by either thread miss in the other's
// cache for as long as both live (glibc's malloc-thread benchmark ran at
// 0.6x of itself, depending on how its two threads' first refills
// interleaved). Objects freed on another CPU and met in the transfer cache
// still cross, as they must. A home span that fills up is dropped (it
// rejoins the nonempty list when an object comes back); one that empties
// goes back to the page heap, home or not. When the page heap has no pages
// left, a refill adopts another slot's home span with free objects rather
// than fail. Cost: up to one partly carved span per small class per slot,
// carved only as handed out.
//
// Lock order: a central free list's lock is taken before the page heap's;
// the list drops its lock while the page heap makes a new slab.
#ifndef RSEQMALLOC_ALLOCATOR_CENTRAL_CENTRAL_FREELIST_H_
#define RSEQMALLOC_ALLOCATOR_CENTRAL_CENTRAL_FREELIST_H_

#include <cstddef>
#include <cstdint>

#include "allocator/pages/page_heap.h"
#include "allocator/pages/span.h"
#include "allocator/base/spinlock.h"

namespace rseqmalloc::internal {

inline constexpr int kHomes = kLocalitySlots;
inline constexpr size_t kHomeMaxObjectBytes = 1024;

struct CentralFreeListStats {
  uint64_t spans;         // slabs of this class
  uint64_t free_objects;  // free in those slabs, carved or not
  uint64_t out_objects;   // handed out of the slabs (to transfer caches or callers)
  uint64_t lock_contended;  // lock acquisitions that had to wait, since the start
  uint64_t pages_taken_back;  // released pages whose objects came back, since the start
};

class alignas(64) CentralFreeList {
 public:
  constexpr CentralFreeList() = default;
  CentralFreeList(const CentralFreeList&) = delete;
  CentralFreeList& operator=(const CentralFreeList&) = delete;

  // Must run once, before any other call, for class cls >= 1.
  void Init(uint32_t cls, PageHeap* heap);

  // Fills out[0..n) and returns how many; 0 only when out of memory.
  // Small classes take from the home span of the CPU the caller runs on.
  int RemoveRange(void** out, int n);
  // The same for an explicit home slot (0 <= home < kHomes, or kNoHome for
  // the shared nonempty list); tests.
  int RemoveRangeFor(int home, void** out, int n);

  // Returns objects of this class (each must have come from RemoveRange).
  void InsertRange(void* const* items, int n);

  // Whether this class's objects are big enough to hold a whole OS page
  // past their first bytes (where a free object keeps its link); smaller
  // objects give back the OS pages that hold only free objects.
  bool HasInnerPages() const;
  bool ReleasesFreePages() const { return releases_free_pages_; }
  // Bumped by every RemoveRange and InsertRange: how the maintenance thread
  // tells that the list has been idle.
  uint64_t activity() const { return __atomic_load_n(&activity_, __ATOMIC_RELAXED); }
  // Whether the free pages were released with activity() at `activity`.
  bool ReleasedAt(uint64_t activity) const {
    return __atomic_load_n(&released_at_activity_, __ATOMIC_RELAXED) == activity;
  }
  // Gives the OS back the free pages of this class's partly used slabs:
  // every whole OS page inside a free object, past its link (HasInnerPages),
  // or every OS page that only free objects touch (smaller classes; their
  // objects come back to the list when it runs dry), and the pages of the
  // never-carved tails; adds the bytes to *released. Does nothing
  // and returns false when the list has had a batch since activity() read
  // `seen_activity`. Holds the lock across the madvise calls (only for
  // lists idle for the release delay, central_heap.h), but stops before
  // the next slab, returning false, once another thread has had to wait
  // for the lock: a class in use again does not wait for the whole pass.
  bool ReleaseInsideFreeObjects(uint64_t seen_activity, uint64_t* released);

  void GetStats(CentralFreeListStats* out);
  void GetStatsLocked(CentralFreeListStats* out) const;

  void Lock() { lock_.Lock(); }
  void Unlock() { lock_.Unlock(); }

  uint32_t size_class() const { return cls_; }

 private:
  void* PopFrom(Span* span);
  void MakeHome(Span* span, int home);
  void Unhome(Span* span);
  Span* HomeSpan(int home);
  bool AdoptAnotherHome(int home);
  void Release(void* object, Span** to_free, int* num_to_free);
  uint32_t FirstObjectIn(unsigned page) const;
  uint32_t ObjectsEndIn(unsigned page) const;
  void* TakeBackReleasedPage(Span* span);
  template <typename Visit>
  void ForEachListed(const Span* span, Visit visit) const;
  void ReleaseInnerPages(Span* span, uint64_t* released);
  void ReleaseFreePages(Span* span, uint64_t* released);

  // Span::released_pages has a bit per OS page; a slab's free objects are
  // marked on the stack while its pages are looked at.
  static constexpr uint32_t kMaxReleasablePages = 8;
  static constexpr uint32_t kMaxReleasableSlabObjects = 2048;

  SpinLock lock_;
  uint32_t cls_ = 0;
  uint32_t object_size_ = 0;
  uint32_t objects_per_span_ = 0;
  uint32_t pages_per_span_ = 0;
  PageHeap* heap_ = nullptr;
  bool uses_homes_ = false;
  uint32_t os_pages_per_span_ = 0;
  bool releases_free_pages_ = false;  // else the pages inside free objects
  SpanList nonempty_;  // slabs with at least one free object, except homes
  Span* home_[kHomes] = {};
  uint64_t spans_ = 0;
  uint64_t free_objects_ = 0;
  uint64_t activity_ = 0;              // written under the lock
  uint64_t released_at_activity_ = 0;  // written under the lock
  uint64_t pages_taken_back_ = 0;
};

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_CENTRAL_CENTRAL_FREELIST_H_
