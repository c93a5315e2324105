// Placement of spans by CPU slot (page_heap.h, "Locality").
#include "allocator/pages/page_heap.h"
#include "allocator/pages/pagemap.h"

namespace rseqmalloc::internal {

// best_fit (at *first) unless it touches a span another slot is carving
// next to; then the free pages right after the slot's previous span, an
// aligned window, or best_fit after all. Caller holds the lock.
Span* PageHeap::PlaceForSlot(int slot, size_t n, Span* best_fit, uintptr_t* first) {
  if (best_fit == nullptr || !TouchesAnotherSlot(*first, n, slot)) return best_fit;
  Span* span = FreeSpanAt(local_next_[slot], n);
  if (span != nullptr) {
    *first = span->first_page;
    return span;
  }
  if (n <= kLocalityPages && (span = FindWindow()) != nullptr) {
    *first = (span->first_page + kLocalityPages - 1) / kLocalityPages * kLocalityPages;
    return span;
  }
  *first = best_fit->first_page;
  return best_fit;
}

// Whether pages [first, first + n) would border a span placed for another
// slot that is still carving there.
bool PageHeap::TouchesAnotherSlot(uintptr_t first, size_t n, int slot) const {
  for (uintptr_t page : {first - 1, first + n}) {
    const Span* s = g_pagemap.GetSpan(page);
    if (s == nullptr || s->owner != this || s->location != SpanLocation::kInUse) continue;
    if (s->placed_for == kNoHome || s->placed_for == slot) continue;
    // The page before or after a span is always some span's boundary, so
    // this entry is current.
    if (CarvingNear(s)) return true;
  }
  return false;
}

// Whether the slot s was placed for took its latest span within
// kLocalityPages after s's start (s itself, or a span just past it): a
// slot that has moved on, or a thread that migrated away, leaves its old
// spans free to border.
bool PageHeap::CarvingNear(const Span* s) const {
  uintptr_t next = local_next_[s->placed_for];
  return next > s->first_page && next <= s->first_page + s->num_pages + kLocalityPages;
}

// The free span that starts at page and holds n pages, or nullptr. The
// pagemap entry of a page that is no longer a span's first may name a
// record merged into a neighbour (in the arena's free pool, with its old
// fields); a record whose last page's entry points back to it is live: a
// merge rewrites the entry of the merged run's last page, and a record
// taken in from the right had that page as its own last one.
Span* PageHeap::FreeSpanAt(uintptr_t page, size_t n) const {
  if (page == 0) return nullptr;
  Span* s = g_pagemap.GetSpan(page);
  if (s == nullptr || s->owner != this || s->first_page != page || s->num_pages < n) {
    return nullptr;
  }
  if (s->location != SpanLocation::kFreeBacked && s->location != SpanLocation::kFreeReturned) {
    return nullptr;
  }
  return g_pagemap.GetSpan(s->last_page()) == s ? s : nullptr;
}

// The best-fitting free run that surely holds an aligned window of
// kLocalityPages (a window no slot has a page in, being wholly free):
// 2 * kLocalityPages - 1 pages hold one wherever they start, so it is
// FindFree's best fit for that length, and no exact-length list is walked
// (the long runs are searched as FindFree always does). Shorter runs
// that happen to hold one are left alone: walking every 8-page hole for
// each window would cost more than the window saves.
Span* PageHeap::FindWindow() { return FindFree(2 * kLocalityPages - 1); }

}  // namespace rseqmalloc::internal
