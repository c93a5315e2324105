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
// with backed, returned with returned), found through the pagemap entries of
// the pages just before and after the span. Every page the heap ever got from
// the system belongs to exactly one live span at all times, and the pagemap
// holds that span for each span's first and last page, which is what makes
// the neighbour lookup sound. Memory fresh from the system counts as returned:
// it is not resident until touched.
//
// Release policy (constants below):
//   * Free backed pages are capped at kDefaultFreeCapBytes (16 MiB; see
//     SetFreeCap). When a free pushes the backed total over the cap, the
//     largest backed free spans are returned to the OS with
//     madvise(MADV_DONTNEED) until the total is at most 3/4 of the cap; the
//     slack keeps a program that hovers at the cap from paying a system
//     call on every free. Released spans then coalesce with returned
//     neighbours.
//   * Large frees get no special treatment: a freed 1 MiB+ block is cached
//     like any other span, within the cap, so a program that frees and
//     re-allocates big buffers does not re-fault them every time.
//   * ReleaseAll (malloc_trim) returns every free backed page.
//
// Large spans change length in place (ResizeLarge, for realloc): growth
// takes the free pages after the span, shrinking frees its tail.
//
// Aligned allocations look for an aligned run inside every free span (best
// fit), so freed aligned blocks are found again whatever their neighbours.
//
// Memory comes from the system in multiples of kGrowPages (2 MiB), which
// stays untouched until used. A PageHeap must outlive its memory (use static
// storage): spans of other heaps are recognised by their owner pointer.
#ifndef RSEQMALLOC_ALLOCATOR_PAGE_HEAP_H_
#define RSEQMALLOC_ALLOCATOR_PAGE_HEAP_H_

#include <cstddef>
#include <cstdint>

#include "allocator/size_classes.h"
#include "allocator/span.h"
#include "allocator/spinlock.h"

namespace rseqmalloc::internal {

inline constexpr size_t kMaxPages = 128;  // exact-length lists up to 1 MiB
inline constexpr size_t kGrowPages = (size_t{2} << 20) >> kPageShift;
inline constexpr size_t kDefaultFreeCapBytes = size_t{16} << 20;

struct PageHeapStats {
  uint64_t total_bytes;           // ever obtained from the system
  uint64_t small_in_use_bytes;    // spans holding small objects
  uint64_t large_in_use_bytes;    // spans handed out as large allocations
  uint64_t free_backed_bytes;     // free, possibly resident
  uint64_t free_returned_bytes;   // free, returned to the OS or never touched
  uint64_t released_bytes_total;  // cumulative bytes this heap madvised away
  uint64_t free_spans;
  uint64_t long_free_spans;  // free runs longer than kMaxPages
};

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
  Span* New(size_t n, uint32_t cls, size_t align_pages = 1);

  // Returns an in-use span of this heap; coalesces and applies the cap.
  void Delete(Span* span);

  // Changes the length of an in-use large span to n pages in place:
  // shrinking frees the tail; growing takes the free pages right after the
  // span (or address space the system has not handed out yet, when the span
  // ends where it starts). False, with the span unchanged, when it cannot.
  bool ResizeLarge(Span* span, size_t n);

  // Returns every free backed page to the OS.
  void ReleaseAll();

  void SetFreeCap(size_t bytes);
  size_t free_cap() const;

  void GetStats(PageHeapStats* out);
  void GetStatsLocked(PageHeapStats* out) const;  // caller holds Lock()

  void Lock() { lock_.Lock(); }
  void Unlock() { lock_.Unlock(); }

 private:
  Span* FindFree(size_t n);
  Span* NewAligned(size_t n, uint32_t cls, size_t align_pages);
  Span* FindFreeAligned(size_t n, size_t align_pages, uintptr_t* first);
  Span* FreeSpanAfter(const Span* span);
  bool GrowAt(uintptr_t first_page, size_t n);
  Span* Carve(Span* span, size_t n);
  bool Grow(size_t n);
  bool AddFreshPages(uintptr_t first, size_t n);
  bool TrimTo(Span* span, uintptr_t first_page, size_t n);
  void Register(Span* span, uint32_t cls);
  void SetBoundaries(Span* span);
  void MergeAndInsert(Span* span);
  void InsertFree(Span* span);
  void RemoveFree(Span* span);
  SpanList* ListFor(const Span* span);
  Span* LargestBacked();
  bool ReleaseSpan(Span* span);
  void EnforceCap();

  SpinLock lock_;
  SpanList backed_[kMaxPages + 1];
  SpanList returned_[kMaxPages + 1];
  SpanList long_backed_;
  SpanList long_returned_;
  size_t free_cap_bytes_ = kDefaultFreeCapBytes;
  uint64_t total_pages_ = 0;
  uint64_t small_pages_ = 0;
  uint64_t large_pages_ = 0;
  uint64_t free_backed_pages_ = 0;
  uint64_t free_returned_pages_ = 0;
  uint64_t free_spans_ = 0;
  uint64_t released_bytes_total_ = 0;
};

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_PAGE_HEAP_H_
