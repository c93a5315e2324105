#include "allocator/page_heap.h"

#include "allocator/arena.h"
#include "allocator/pagemap.h"
#include "allocator/system.h"

namespace rseqmalloc::internal {
namespace {

// Larger requests cannot name a 48-bit address range.
constexpr size_t kMaxRequestPages = size_t{1} << (kPageNumberBits - 1);

size_t RoundUp(size_t n, size_t align) { return (n + align - 1) / align * align; }

}  // namespace

Span* PageHeap::New(size_t n, uint32_t cls, size_t align_pages) {
  if (n == 0 || align_pages == 0 || (align_pages & (align_pages - 1)) != 0) return nullptr;
  if (n > kMaxRequestPages || align_pages > kMaxRequestPages) return nullptr;
  SpinLockHolder h(&lock_);
  if (align_pages > 1) return NewAligned(n, cls, align_pages);
  Span* span = FindFree(n);
  if (span == nullptr) {
    if (!Grow(n)) return nullptr;
    span = FindFree(n);
    if (span == nullptr) return nullptr;
  }
  span = Carve(span, n);
  if (span == nullptr) return nullptr;
  Register(span, cls);
  return span;
}

// An aligned run is looked for inside every free span, not only in spans
// long enough for any placement (n + align - 1 pages): a loop of
// posix_memalign(1 GiB) + free leaves its freed page between two pieces of
// another state, and asking for a fresh GiB each time mapped 1 GiB per
// iteration.
Span* PageHeap::NewAligned(size_t n, uint32_t cls, size_t align_pages) {
  uintptr_t first = 0;
  Span* span = FindFreeAligned(n, align_pages, &first);
  if (span == nullptr) {
    if (!Grow(n + align_pages - 1)) return nullptr;
    span = FindFreeAligned(n, align_pages, &first);
    if (span == nullptr) return nullptr;
  }
  span = Carve(span, span->num_pages);
  if (span == nullptr || !TrimTo(span, first, n)) return nullptr;
  Register(span, cls);
  return span;
}

void PageHeap::Delete(Span* span) {
  SpinLockHolder h(&lock_);
  if (span->owner != this || span->location != SpanLocation::kInUse) {
    Crash("PageHeap::Delete of a span that is not in use in this heap");
  }
  if (span->size_class == kLargeClass) {
    g_pagemap.SetClass(span->first_page, 0);
    large_pages_ -= span->num_pages;
  } else {
    for (uintptr_t p = span->first_page; p <= span->last_page(); ++p) g_pagemap.SetClass(p, 0);
    small_pages_ -= span->num_pages;
  }
  span->size_class = 0;
  span->freelist = nullptr;
  span->location = SpanLocation::kFreeBacked;
  MergeAndInsert(span);
  EnforceCap();
}

bool PageHeap::ResizeLarge(Span* span, size_t n) {
  if (n == 0 || n > kMaxRequestPages) return false;
  SpinLockHolder h(&lock_);
  if (span->owner != this || span->location != SpanLocation::kInUse ||
      span->size_class != kLargeClass) {
    Crash("PageHeap::ResizeLarge of a span that is not an in-use large block");
  }
  if (n == span->num_pages) return true;
  if (n < span->num_pages) {
    Span* tail = NewSpan();
    if (tail == nullptr) return false;
    tail->owner = this;
    tail->first_page = span->first_page + n;
    tail->num_pages = span->num_pages - n;
    tail->location = SpanLocation::kFreeBacked;
    large_pages_ -= tail->num_pages;
    span->num_pages = n;
    SetBoundaries(span);
    MergeAndInsert(tail);
    EnforceCap();
    return true;
  }
  size_t extra = n - span->num_pages;
  Span* next = FreeSpanAfter(span);
  if (next == nullptr || next->num_pages < extra) {
    // The block ends where the heap does: claim what follows from the system.
    uintptr_t end = span->first_page + span->num_pages;
    size_t have = next == nullptr ? 0 : next->num_pages;
    if (!GrowAt(end + have, extra - have)) return false;
    next = FreeSpanAfter(span);
    if (next == nullptr || next->num_pages < extra) return false;
  }
  RemoveFree(next);
  if (next->num_pages > extra) {
    next->first_page += extra;
    next->num_pages -= extra;
    SetBoundaries(next);
    InsertFree(next);
  } else {
    DeleteSpan(next);
  }
  span->num_pages = n;
  large_pages_ += extra;
  SetBoundaries(span);
  return true;
}

// The free span of this heap that starts right after `span`, if any.
Span* PageHeap::FreeSpanAfter(const Span* span) {
  uintptr_t end = span->first_page + span->num_pages;
  Span* next = g_pagemap.GetSpan(end);
  if (next == nullptr || next->owner != this || next->first_page != end ||
      next->location == SpanLocation::kInUse) {
    return nullptr;
  }
  return next;
}

// Adds [first_page, first_page + n) to the heap when the system can hand out
// exactly those pages (they continue its current chunk).
bool PageHeap::GrowAt(uintptr_t first_page, size_t n) {
  size_t ask = RoundUp(n, kGrowPages);
  void* at = reinterpret_cast<void*>(first_page << kPageShift);
  if (!SystemAllocAt(at, ask << kPageShift)) {
    ask = n;
    if (!SystemAllocAt(at, ask << kPageShift)) return false;
  }
  return AddFreshPages(first_page, ask);
}

void PageHeap::ReleaseAll() {
  SpinLockHolder h(&lock_);
  while (free_backed_pages_ > 0) {
    Span* s = LargestBacked();
    if (s == nullptr || !ReleaseSpan(s)) break;
  }
}

void PageHeap::SetFreeCap(size_t bytes) {
  SpinLockHolder h(&lock_);
  __atomic_store_n(&free_cap_bytes_, bytes, __ATOMIC_RELAXED);
  EnforceCap();
}

size_t PageHeap::free_cap() const { return __atomic_load_n(&free_cap_bytes_, __ATOMIC_RELAXED); }

void PageHeap::GetStats(PageHeapStats* out) {
  SpinLockHolder h(&lock_);
  GetStatsLocked(out);
}

void PageHeap::GetStatsLocked(PageHeapStats* out) const {
  out->total_bytes = total_pages_ << kPageShift;
  out->small_in_use_bytes = small_pages_ << kPageShift;
  out->large_in_use_bytes = large_pages_ << kPageShift;
  out->free_backed_bytes = free_backed_pages_ << kPageShift;
  out->free_returned_bytes = free_returned_pages_ << kPageShift;
  out->released_bytes_total = released_bytes_total_;
  out->free_spans = free_spans_;
  out->long_free_spans = long_backed_.length() + long_returned_.length();
}

Span* PageHeap::FindFree(size_t n) {
  for (size_t len = n; len <= kMaxPages; ++len) {
    if (!backed_[len].empty()) return backed_[len].first();
    if (!returned_[len].empty()) return returned_[len].first();
  }
  Span* best = nullptr;
  for (SpanList* list : {&long_backed_, &long_returned_}) {
    for (Span* s = list->first(); s != nullptr; s = s->next) {
      if (s->num_pages < n) continue;
      if (best == nullptr || s->num_pages < best->num_pages ||
          (s->num_pages == best->num_pages && s->first_page < best->first_page)) {
        best = s;
      }
    }
  }
  return best;
}

Span* PageHeap::FindFreeAligned(size_t n, size_t align_pages, uintptr_t* first) {
  Span* best = nullptr;
  auto consider = [&](Span* s) {
    uintptr_t start = RoundUp(s->first_page, align_pages);
    if (start + n > s->first_page + s->num_pages) return;
    if (best == nullptr || s->num_pages < best->num_pages ||
        (s->num_pages == best->num_pages && s->first_page < best->first_page)) {
      best = s;
      *first = start;
    }
  };
  // Exact lists: the first length with a fit is the best fit among them.
  for (size_t len = n; len <= kMaxPages && best == nullptr; ++len) {
    for (SpanList* list : {&backed_[len], &returned_[len]}) {
      for (Span* s = list->first(); s != nullptr; s = s->next) consider(s);
    }
  }
  if (best != nullptr) return best;
  for (SpanList* list : {&long_backed_, &long_returned_}) {
    for (Span* s = list->first(); s != nullptr; s = s->next) consider(s);
  }
  return best;
}

Span* PageHeap::Carve(Span* span, size_t n) {
  if (span->num_pages > n) {
    Span* rest = NewSpan();
    if (rest == nullptr) return nullptr;  // metadata exhausted; span stays free
    RemoveFree(span);
    rest->owner = this;
    rest->first_page = span->first_page + n;
    rest->num_pages = span->num_pages - n;
    rest->location = span->location;
    span->num_pages = n;
    // The remainder was part of a maximal run of its state, so it has no
    // same-state neighbour to merge with.
    SetBoundaries(rest);
    InsertFree(rest);
  } else {
    RemoveFree(span);
  }
  span->was_returned = span->location == SpanLocation::kFreeReturned;
  span->location = SpanLocation::kInUse;
  SetBoundaries(span);
  return span;
}

// Cuts an in-use span down to [first_page, first_page + n) and frees the
// pieces before and after in the state the span came from. On metadata
// exhaustion the whole span goes back and false is returned.
bool PageHeap::TrimTo(Span* span, uintptr_t first_page, size_t n) {
  SpanLocation state = span->was_returned ? SpanLocation::kFreeReturned : SpanLocation::kFreeBacked;
  uintptr_t end = span->first_page + span->num_pages;
  size_t before = first_page - span->first_page;
  size_t after = end - (first_page + n);
  Span* pieces[2] = {nullptr, nullptr};
  if ((before > 0 && (pieces[0] = NewSpan()) == nullptr) ||
      (after > 0 && (pieces[1] = NewSpan()) == nullptr)) {
    if (pieces[0] != nullptr) DeleteSpan(pieces[0]);
    span->location = state;
    MergeAndInsert(span);
    return false;
  }
  span->first_page = first_page;
  span->num_pages = n;
  SetBoundaries(span);
  if (pieces[0] != nullptr) {
    pieces[0]->first_page = first_page - before;
    pieces[0]->num_pages = before;
  }
  if (pieces[1] != nullptr) {
    pieces[1]->first_page = first_page + n;
    pieces[1]->num_pages = after;
  }
  for (Span* piece : pieces) {
    if (piece == nullptr) continue;
    piece->owner = this;
    piece->location = state;
    MergeAndInsert(piece);
  }
  return true;
}

bool PageHeap::Grow(size_t n) {
  size_t ask = RoundUp(n, kGrowPages);
  void* mem = SystemAlloc(ask << kPageShift);
  if (mem == nullptr && ask > n) {
    ask = n;
    mem = SystemAlloc(ask << kPageShift);
  }
  if (mem == nullptr) return false;
  return AddFreshPages(reinterpret_cast<uintptr_t>(mem) >> kPageShift, ask);
}

// Pages fresh from the system: free, and counted as returned (untouched).
bool PageHeap::AddFreshPages(uintptr_t first, size_t n) {
  // On failure the reservation is lost to this heap; it was never touched,
  // so it costs address space only.
  if (!g_pagemap.Ensure(first, n)) return false;
  Span* span = NewSpan();
  if (span == nullptr) return false;
  span->owner = this;
  span->first_page = first;
  span->num_pages = n;
  span->location = SpanLocation::kFreeReturned;
  total_pages_ += n;
  MergeAndInsert(span);
  return true;
}

void PageHeap::Register(Span* span, uint32_t cls) {
  span->size_class = cls;
  span->freelist = nullptr;
  span->allocated = 0;
  span->carved = 0;
  span->on_list = false;
  if (cls == kLargeClass) {
    g_pagemap.SetClass(span->first_page, kLargeClass);
    large_pages_ += span->num_pages;
  } else {
    for (uintptr_t p = span->first_page; p <= span->last_page(); ++p) {
      g_pagemap.SetSpan(p, span);
      g_pagemap.SetClass(p, cls);
    }
    small_pages_ += span->num_pages;
  }
}

void PageHeap::SetBoundaries(Span* span) {
  g_pagemap.SetSpan(span->first_page, span);
  g_pagemap.SetSpan(span->last_page(), span);
}

void PageHeap::MergeAndInsert(Span* span) {
  Span* prev = g_pagemap.GetSpan(span->first_page - 1);
  if (prev != nullptr && prev->owner == this && prev->location == span->location) {
    RemoveFree(prev);
    span->first_page = prev->first_page;
    span->num_pages += prev->num_pages;
    DeleteSpan(prev);
  }
  Span* next = g_pagemap.GetSpan(span->first_page + span->num_pages);
  if (next != nullptr && next->owner == this && next->location == span->location) {
    RemoveFree(next);
    span->num_pages += next->num_pages;
    DeleteSpan(next);
  }
  SetBoundaries(span);
  InsertFree(span);
}

SpanList* PageHeap::ListFor(const Span* span) {
  bool backed = span->location == SpanLocation::kFreeBacked;
  if (span->num_pages <= kMaxPages) {
    return backed ? &backed_[span->num_pages] : &returned_[span->num_pages];
  }
  return backed ? &long_backed_ : &long_returned_;
}

void PageHeap::InsertFree(Span* span) {
  ListFor(span)->PushFront(span);
  if (span->location == SpanLocation::kFreeBacked) {
    free_backed_pages_ += span->num_pages;
  } else {
    free_returned_pages_ += span->num_pages;
  }
  ++free_spans_;
}

void PageHeap::RemoveFree(Span* span) {
  ListFor(span)->Remove(span);
  if (span->location == SpanLocation::kFreeBacked) {
    free_backed_pages_ -= span->num_pages;
  } else {
    free_returned_pages_ -= span->num_pages;
  }
  --free_spans_;
}

Span* PageHeap::LargestBacked() {
  Span* best = nullptr;
  for (Span* s = long_backed_.first(); s != nullptr; s = s->next) {
    if (best == nullptr || s->num_pages > best->num_pages) best = s;
  }
  if (best != nullptr) return best;
  for (size_t len = kMaxPages; len >= 1; --len) {
    if (!backed_[len].empty()) return backed_[len].first();
  }
  return nullptr;
}

bool PageHeap::ReleaseSpan(Span* span) {
  if (!SystemRelease(span->start(), span->bytes())) return false;
  RemoveFree(span);
  released_bytes_total_ += span->bytes();
  span->location = SpanLocation::kFreeReturned;
  MergeAndInsert(span);
  return true;
}

void PageHeap::EnforceCap() {
  if ((free_backed_pages_ << kPageShift) <= free_cap_bytes_) return;
  uint64_t target = free_cap_bytes_ - free_cap_bytes_ / 4;
  while ((free_backed_pages_ << kPageShift) > target) {
    Span* s = LargestBacked();
    if (s == nullptr || !ReleaseSpan(s)) break;
  }
}

}  // namespace rseqmalloc::internal
