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
  size_t want = n + align_pages - 1;
  SpinLockHolder h(&lock_);
  Span* span = FindFree(want);
  if (span == nullptr) {
    if (!Grow(want)) return nullptr;
    span = FindFree(want);
    if (span == nullptr) return nullptr;
  }
  span = Carve(span, want);
  if (span == nullptr) return nullptr;
  if (align_pages > 1 && !TrimTo(span, RoundUp(span->first_page, align_pages), n)) {
    return nullptr;
  }
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
  uintptr_t first = reinterpret_cast<uintptr_t>(mem) >> kPageShift;
  // On failure the reservation is lost to this heap; it was never touched,
  // so it costs address space only.
  if (!g_pagemap.Ensure(first, ask)) return false;
  Span* span = NewSpan();
  if (span == nullptr) return false;
  span->owner = this;
  span->first_page = first;
  span->num_pages = ask;
  span->location = SpanLocation::kFreeReturned;
  total_pages_ += ask;
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
