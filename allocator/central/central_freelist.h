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

struct CentralFreeListStats {
  uint64_t spans;         // slabs of this class
  uint64_t free_objects;  // free in those slabs, carved or not
  uint64_t out_objects;   // handed out of the slabs (to transfer caches or callers)
  uint64_t lock_contended;  // lock acquisitions that had to wait, since the start
};

class CentralFreeList {
 public:
  constexpr CentralFreeList() = default;
  CentralFreeList(const CentralFreeList&) = delete;
  CentralFreeList& operator=(const CentralFreeList&) = delete;

  // Must run once, before any other call, for class cls >= 1.
  void Init(uint32_t cls, PageHeap* heap);

  // Fills out[0..n) and returns how many; 0 only when out of memory.
  int RemoveRange(void** out, int n);

  // Returns objects of this class (each must have come from RemoveRange).
  void InsertRange(void* const* items, int n);

  void GetStats(CentralFreeListStats* out);
  void GetStatsLocked(CentralFreeListStats* out) const;

  void Lock() { lock_.Lock(); }
  void Unlock() { lock_.Unlock(); }

  uint32_t size_class() const { return cls_; }

 private:
  void* PopFrom(Span* span);
  void Release(void* object, Span** to_free, int* num_to_free);

  SpinLock lock_;
  uint32_t cls_ = 0;
  uint32_t object_size_ = 0;
  uint32_t objects_per_span_ = 0;
  uint32_t pages_per_span_ = 0;
  PageHeap* heap_ = nullptr;
  SpanList nonempty_;  // slabs with at least one free object
  uint64_t spans_ = 0;
  uint64_t free_objects_ = 0;
};

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_CENTRAL_CENTRAL_FREELIST_H_
