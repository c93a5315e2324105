// The page heap's free spans: finding one for a request, and filing one
// that became free (merged with its free neighbours, on its length list and,
// when resident, on the age list). Callers hold the heap's lock.
#include "allocator/pages/page_heap.h"
#include "allocator/pages/pagemap.h"

namespace rseqmalloc::internal {

// Best fit by length; at one length backed before returned (no fault).
Span* PageHeap::FindFree(size_t n) {
  for (size_t len = n; len <= kMaxPages; ++len) {
    if (!backed_[len].empty()) return backed_[len].first();
    if (!returned_[len].empty()) return returned_[len].first();
  }
  Span* backed = BestLongFit(&long_backed_, n);
  Span* returned = BestLongFit(&long_returned_, n);
  if (backed == nullptr) return returned;
  if (returned == nullptr || backed->num_pages <= returned->num_pages) return backed;
  return returned;
}

// A growing block moved to the best fit ran into its neighbour again a
// few growths later: a buffer grown to 16 MiB in 4 KiB steps moved at
// 14 MiB and copied it, every time (glibc grows at the top of its heap and
// copies nothing). The longest run leaves it room; resident runs first,
// so that the growths do not fault. When the run starts where a block that
// grows ends (two threads, each growing a buffer), the newcomer put at its
// start stopped that block, which moved past it and stopped the newcomer
// in turn: two buffers grown in turn to 16 MiB copied 15-37 MiB. Sharing
// the run leaves both room.
Span* PageHeap::FindRoomToGrow(size_t n, uintptr_t* first) {
  for (const SpanList* list : {&long_backed_, &long_returned_}) {
    Span* longest = nullptr;
    for (Span* s = list->first(); s != nullptr; s = s->next) {
      if (longest == nullptr || s->num_pages > longest->num_pages) longest = s;
    }
    if (longest != nullptr && longest->num_pages >= kGrowthRunFactor * n) {
      *first = longest->first_page + RoomForTheBlockBefore(longest);
      return longest;
    }
  }
  Span* span = FindFree(n);
  if (span != nullptr) *first = span->first_page;
  return span;
}

// The pages of the free `run` left to the block that ends where it starts,
// when that block grows: both then have as much room (the block's size and
// these pages, the rest of the run), or, when the block is the bigger, half
// the run each.
size_t PageHeap::RoomForTheBlockBefore(const Span* run) const {
  const Span* before = g_pagemap.GetSpan(run->first_page - 1);
  if (before == nullptr || before->owner != this ||
      before->first_page + before->num_pages != run->first_page ||
      before->location != SpanLocation::kInUse || before->size_class != kLargeClass ||
      !before->grows) {
    return 0;
  }
  if (run->num_pages <= before->num_pages) return run->num_pages / 2;
  return (run->num_pages - before->num_pages) / 2;
}

Span* PageHeap::BestLongFit(const SpanList* list, size_t n) {
  Span* best = nullptr;
  for (Span* s = list->first(); s != nullptr; s = s->next) {
    if (s->num_pages < n) continue;
    if (best == nullptr || s->num_pages < best->num_pages ||
        (s->num_pages == best->num_pages && s->first_page < best->first_page)) {
      best = s;
    }
  }
  return best;
}

// Whether `other` (a neighbour of the free span `span`) merges with it:
// same state, or a returned run no longer than a span the program freed,
// absorbed by it when the result is long. The whole then counts as resident
// (its returned pages cost nothing until touched and go back again with
// it). Without this, returned pieces between resident runs fragmented the
// heap of `large` with 8 threads: each big request found no fit, gave pages
// back and faulted fresh ones (0.05-0.08 of tcmalloc). A bigger returned
// neighbour, such as the untouched rest of a growth unit, stays apart: a
// small free must not make megabytes of fresh pages count as resident.
bool PageHeap::Mergeable(const Span* span, const Span* other, bool absorb_returned) const {
  if (other == nullptr || other->owner != this) return false;
  // A neighbour's entry must name a span that touches this one: after
  // UnmapFree, a fresh mapping may border pages the heap gave up.
  if (other->first_page + other->num_pages != span->first_page &&
      other->first_page != span->first_page + span->num_pages) {
    return false;
  }
  if (other->location == span->location) return true;
  return absorb_returned && span->location == SpanLocation::kFreeBacked &&
         other->location == SpanLocation::kFreeReturned && other->num_pages <= span->num_pages &&
         span->num_pages + other->num_pages > kMaxPages;
}

// Takes the free neighbour `other` into `span`. Backed parts: the whole
// keeps the stamp of its biggest part (on a tie, the part already in span),
// and goes on the age list where that part was (a returned part has no
// stamp).
void PageHeap::TakeInNeighbour(Span* span, Span* other, AgeHint* hint) {
  if (span->location == SpanLocation::kFreeBacked &&
      other->location == SpanLocation::kFreeBacked) {
    // The walk must not start at a span that leaves the list.
    if (hint->set && hint->start == other) hint->start = other->older;
    if (other->num_pages > hint->pages) {
      *hint = {true, other->older, other->num_pages};
      span->free_since_ns = other->free_since_ns;
    }
  }
  RemoveFree(other);
  if (other->first_page < span->first_page) span->first_page = other->first_page;
  span->num_pages += other->num_pages;
  DeleteSpanLocked(other);
}

void PageHeap::MergeAndInsert(Span* span, bool absorb_returned) {
  // Unset (walk from the newest end) while the span itself weighs most.
  AgeHint hint;
  hint.pages = span->num_pages;
  Span* prev = g_pagemap.GetSpan(span->first_page - 1);
  if (Mergeable(span, prev, absorb_returned)) TakeInNeighbour(span, prev, &hint);
  Span* next = g_pagemap.GetSpan(span->first_page + span->num_pages);
  if (Mergeable(span, next, absorb_returned)) TakeInNeighbour(span, next, &hint);
  SetBoundaries(span);
  InsertFree(span, &hint);
}

SpanList* PageHeap::ListFor(const Span* span) {
  bool backed = span->location == SpanLocation::kFreeBacked;
  if (span->num_pages <= kMaxPages) {
    return backed ? &backed_[span->num_pages] : &returned_[span->num_pages];
  }
  return backed ? &long_backed_ : &long_returned_;
}

void PageHeap::InsertFree(Span* span, const AgeHint* hint) {
  ListFor(span)->PushFront(span);
  if (span->location == SpanLocation::kFreeBacked) {
    AddBackedPages(span->num_pages);
    if (hint != nullptr && hint->set) {
      age_.InsertAfterWalkFrom(span, hint->start);
    } else {
      age_.Insert(span);
    }
    PublishDeadlineLocked();
  } else {
    free_returned_pages_ += span->num_pages;
  }
  ++free_spans_;
}

void PageHeap::ReplaceFree(Span* old, Span* fresh) {
  ListFor(old)->Remove(old);
  ListFor(fresh)->PushFront(fresh);
  if (old->location == SpanLocation::kFreeBacked) {
    AddBackedPages(fresh->num_pages - old->num_pages);
    age_.Replace(old, fresh);
  } else {
    free_returned_pages_ += fresh->num_pages - old->num_pages;
  }
}

void PageHeap::RemoveFree(Span* span) {
  ListFor(span)->Remove(span);
  if (span->location == SpanLocation::kFreeBacked) {
    AddBackedPages(-span->num_pages);
    age_.Remove(span);
    PublishDeadlineLocked();
  } else {
    free_returned_pages_ -= span->num_pages;
  }
  --free_spans_;
}

}  // namespace rseqmalloc::internal
