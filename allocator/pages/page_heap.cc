#include "allocator/pages/page_heap.h"

#include <algorithm>
#include <cstring>

#include "allocator/pages/arena.h"
#include "allocator/pages/pagemap.h"
#include "allocator/pages/system.h"

namespace rseqmalloc::internal {
namespace {

// Larger requests cannot name a 48-bit address range.
constexpr size_t kMaxRequestPages = size_t{1} << (kPageNumberBits - 1);

size_t RoundUp(size_t n, size_t align) { return (n + align - 1) / align * align; }

// kGrowPages, or a quarter of a chunk when a limit makes chunks smaller.
size_t GrowPages() {
  size_t quarter = (SystemChunkBytes() / 4) >> kPageShift;
  return quarter < kGrowPages ? quarter : kGrowPages;
}

}  // namespace

Span* PageHeap::New(size_t n, uint32_t cls, size_t align_pages, int slot, Placement placement) {
  if (n == 0 || align_pages == 0 || (align_pages & (align_pages - 1)) != 0) return nullptr;
  if (slot < kNoLocality || slot >= kLocalitySlots || align_pages > 1) slot = kNoLocality;
  if (n > kMaxRequestPages || align_pages > kMaxRequestPages) return nullptr;
  size_t need = align_pages > 1 ? n + align_pages - 1 : n;
  bool asked_caches = false;
  bool released_for_growth = false;
  bool unmapped_for_growth = false;
  for (;;) {
    Span* span = nullptr;
    bool no_fit = false;
    bool long_backed = false;
    if (CutFromFree(n, cls, align_pages, slot, placement, &span, 1, &no_fit, &long_backed) == 1) {
      return span;
    }
    if (!no_fit) return nullptr;  // metadata exhausted
    if (!asked_caches) {
      // Free objects of the big classes that caches above keep are spans
      // this heap could cut from (docs/design.md, "Big classes grow too").
      asked_caches = true;
      if (AskCachesForSpans() > 0) continue;
    }
    if (!released_for_growth && long_backed) {
      // No free span fits: before fresh pages are touched, as many pages of
      // the oldest long backed runs go back (they could not serve this).
      released_for_growth = true;
      ReleaseGoal growth;
      growth.min_pages = need;
      growth.long_only = true;
      growth.cause = Cause::kGrowth;
      Release(growth);
      continue;  // released runs may coalesce into a fit
    }
    if (GrowUnlocked(need)) continue;
    // The system refused: under an address-space limit the free spans hold
    // the room a fresh mapping needs (UnmapFree says why all of them).
    if (unmapped_for_growth || UnmapFree() == 0) return nullptr;
    unmapped_for_growth = true;
  }
}

int PageHeap::CutFromFree(size_t n, uint32_t cls, size_t align_pages, int slot,
                          Placement placement, Span** out, int count, bool* no_fit,
                          bool* long_backed) {
  uint64_t now = next_release_deadline() != kNoDeadline ? Now() : 0;
  PendingWork work;
  int got = 0;
  lock_.Lock();
  while (got < count) {
    Span* span = TryNewLocked(n, cls, align_pages, slot, no_fit, placement);
    if (span == nullptr) break;
    out[got++] = span;
  }
  // Free resident pages up to what is in use are the reuse pool; only
  // beyond that does growth give old long runs back first.
  *long_backed = !long_backed_.empty() && free_backed_pages_ > small_pages_ + large_pages_;
  if (got > 0 && now != 0) work = SweepDueLocked(now);
  lock_.Unlock();
  if (got > 0) DoPendingWork(work);
  return got;
}

// An aligned run is looked for inside every free span, not only in spans
// long enough for any placement (n + align - 1 pages): a loop of
// posix_memalign(1 GiB) + free leaves its freed page between two pieces of
// another state, and asking for a fresh GiB each time mapped 1 GiB per
// iteration.
Span* PageHeap::TryNewLocked(size_t n, uint32_t cls, size_t align_pages, int slot,
                             bool* no_fit, Placement placement) {
  uintptr_t first = 0;
  Span* span;
  if (align_pages > 1) {
    span = FindFreeAligned(n, align_pages, &first);
  } else if (placement == Placement::kRoomToGrow) {
    span = FindRoomToGrow(n, &first);
  } else {
    span = FindFree(n);
    if (span != nullptr) first = span->first_page;
  }
  if (slot != kNoLocality) span = PlaceForSlot(slot, n, span, &first);
  if (span == nullptr) {
    *no_fit = true;
    return nullptr;
  }
  if (align_pages > 1 || first != span->first_page) {
    span = Carve(span, span->num_pages);
    if (span == nullptr || !TrimTo(span, first, n)) return nullptr;
  } else {
    span = Carve(span, n);
    if (span == nullptr) return nullptr;
  }
  Register(span, cls);
  span->grows = placement == Placement::kRoomToGrow;
  span->placed_for = slot == kNoLocality ? kNoHome : static_cast<uint8_t>(slot);
  if (slot != kNoLocality) local_next_[slot] = span->first_page + n;
  return span;
}

void PageHeap::Delete(Span* span) { DeleteSpans(&span, 1); }

void PageHeap::DeleteSpans(Span* const* spans, int count) {
  if (count <= 0) return;
  uint64_t now = Now();
  PendingWork work;
  {
    SpinLockHolder h(&lock_);
    for (int i = 0; i < count; ++i) DeleteLocked(spans[i], now);
    work = AfterFreeLocked(now);
  }
  DoPendingWork(work);
}

void PageHeap::DeleteLocked(Span* span, uint64_t now) {
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
  span->free_since_ns = now;
  MergeAndInsert(span, /*absorb_returned=*/true);
}

int PageHeap::NewSpans(size_t n, uint32_t cls, int slot, Span** out, int count) {
  if (count <= 0) return 0;
  if (count > 1 && n > 0 && n <= kMaxRequestPages) {
    if (slot < kNoLocality || slot >= kLocalitySlots) slot = kNoLocality;
    bool no_fit = false;
    bool long_backed = false;
    int got = CutFromFree(n, cls, 1, slot, Placement::kBestFit, out, count, &no_fit, &long_backed);
    if (got > 0) return got;
  }
  // Nothing free fits (or one span was asked for): New grows the heap.
  Span* span = New(n, cls, 1, slot);
  if (span == nullptr) return 0;
  out[0] = span;
  return 1;
}

Span* PageHeap::NewSpanLocked() {
  Span* span = spare_spans_;
  if (span == nullptr) return NewSpan();
  spare_spans_ = span->next;
  --spare_count_;
  memset(static_cast<void*>(span), 0, sizeof(*span));
  return span;
}

void PageHeap::DeleteSpanLocked(Span* span) {
  span->next = spare_spans_;
  spare_spans_ = span;
  ++spare_count_;
}

bool PageHeap::ResizeLarge(Span* span, size_t n, size_t room) {
  if (n == 0 || n > kMaxRequestPages) return false;
  if (n < span->num_pages) {
    // Shrinking frees a tail: stamp it, and sweep afterwards like Delete.
    uint64_t now = Now();
    PendingWork work;
    {
      SpinLockHolder h(&lock_);
      if (!ShrinkLargeLocked(span, n, now)) return false;
      work = AfterFreeLocked(now);
    }
    DoPendingWork(work);
    return true;
  }
  SpinLockHolder h(&lock_);
  CheckInUseLargeLocked(span);
  if (n == span->num_pages) return true;
  size_t extra = n - span->num_pages;
  size_t want = room > n ? room - span->num_pages : extra;
  size_t free_after = FreePagesAfter(span, want);
  if (free_after < extra) {
    // The block ends where the heap does: claim what follows from the system.
    uintptr_t end = span->first_page + span->num_pages + free_after;
    if (!GrowAt(end, extra - free_after)) return false;
    free_after = FreePagesAfter(span, want);
    if (free_after < extra) return false;
  }
  TakeFreePagesAfter(span, std::min(free_after, want));
  span->grows = true;
  return true;
}

// Free pages right after `span`, counted up to `limit`. They may be more
// than one free span: resident pages and returned ones next to them do not
// always merge (Mergeable), and a growth that stopped at the first span
// moved the block, where the pages it needed were free.
size_t PageHeap::FreePagesAfter(const Span* span, size_t limit) {
  size_t pages = 0;
  for (const Span* s = FreeSpanAfter(span); s != nullptr && pages < limit; s = FreeSpanAfter(s)) {
    pages += s->num_pages;
  }
  return pages;
}

// Adds the next `pages` free pages after the in-use large `span` to it.
void PageHeap::TakeFreePagesAfter(Span* span, size_t pages) {
  while (pages > 0) {
    Span* next = FreeSpanAfter(span);
    size_t bite = std::min(pages, next->num_pages);
    RemoveFree(next);
    if (next->num_pages > bite) {
      next->first_page += bite;
      next->num_pages -= bite;
      SetBoundaries(next);
      InsertFree(next);
    } else {
      DeleteSpanLocked(next);
    }
    span->num_pages += bite;
    large_pages_ += bite;
    pages -= bite;
  }
  SetBoundaries(span);
}

void PageHeap::CheckInUseLargeLocked(const Span* span) const {
  if (span->owner != this || span->location != SpanLocation::kInUse ||
      span->size_class != kLargeClass) {
    Crash("PageHeap::ResizeLarge of a span that is not an in-use large block");
  }
}

bool PageHeap::ShrinkLargeLocked(Span* span, size_t n, uint64_t now) {
  CheckInUseLargeLocked(span);
  Span* tail = NewSpanLocked();
  if (tail == nullptr) return false;
  tail->owner = this;
  tail->first_page = span->first_page + n;
  tail->num_pages = span->num_pages - n;
  tail->location = SpanLocation::kFreeBacked;
  tail->free_since_ns = now;
  large_pages_ -= tail->num_pages;
  span->num_pages = n;
  SetBoundaries(span);
  MergeAndInsert(tail, /*absorb_returned=*/true);
  return true;
}

// The free span of this heap that starts right after `span`, if any.
Span* PageHeap::FreeSpanAfter(const Span* span) {
  uintptr_t end = span->first_page + span->num_pages;
  Span* next = g_pagemap.GetSpan(end);
  if (next == nullptr || next->owner != this || next->first_page != end ||
      (next->location != SpanLocation::kFreeBacked &&
       next->location != SpanLocation::kFreeReturned)) {
    return nullptr;
  }
  return next;
}

// Adds [first_page, first_page + n) to the heap when the system can hand out
// exactly those pages (they continue its current chunk).
bool PageHeap::GrowAt(uintptr_t first_page, size_t n) {
  size_t ask = RoundUp(n, GrowPages());
  void* at = reinterpret_cast<void*>(first_page << kPageShift);
  if (!SystemAllocAt(at, ask << kPageShift)) {
    ask = n;
    if (!SystemAllocAt(at, ask << kPageShift)) return false;
  }
  if (AddFreshPages(first_page, ask)) return true;
  // The pagemap could not cover the pages: they were nobody's, so they go
  // back rather than stay mapped and lost.
  SystemUnmap(at, ask << kPageShift);
  return false;
}

void PageHeap::GetStats(PageHeapStats* out) {
  SpinLockHolder h(&lock_);
  GetStatsLocked(out);
}

void PageHeap::GetStatsLocked(PageHeapStats* out) const {
  out->total_bytes = total_pages_ << kPageShift;
  out->unmapped_bytes_total = unmapped_pages_ << kPageShift;
  out->small_in_use_bytes = small_pages_ << kPageShift;
  out->large_in_use_bytes = large_pages_ << kPageShift;
  out->free_backed_bytes = (free_backed_pages_ + releasing_pages_) << kPageShift;
  out->free_returned_bytes = free_returned_pages_ << kPageShift;
  out->released_expired_bytes = released_bytes_[static_cast<int>(Cause::kExpired)];
  out->released_growth_bytes = released_bytes_[static_cast<int>(Cause::kGrowth)];
  out->released_cap_bytes = released_bytes_[static_cast<int>(Cause::kCap)];
  out->released_trim_bytes = released_bytes_[static_cast<int>(Cause::kTrim)];
  out->released_bytes_total = out->released_expired_bytes + out->released_growth_bytes +
                              out->released_cap_bytes + out->released_trim_bytes;
  out->next_release_ns = next_deadline_ns_;
  out->free_spans = free_spans_;
  out->long_free_spans = long_backed_.length() + long_returned_.length();
  out->age_walk_steps = age_.walk_steps();
  out->spare_spans = spare_count_;
  out->growth_hook_calls = __atomic_load_n(&growth_hook_calls_, __ATOMIC_RELAXED);
  out->growth_hook_objects = __atomic_load_n(&growth_hook_objects_, __ATOMIC_RELAXED);
}

void PageHeap::SetGrowthHook(GrowthHook hook) {
  __atomic_store_n(&growth_hook_, hook, __ATOMIC_RELEASE);
}

size_t PageHeap::AskCachesForSpans() {
  GrowthHook hook = __atomic_load_n(&growth_hook_, __ATOMIC_ACQUIRE);
  if (hook == nullptr) return 0;
  size_t objects = hook();
  __atomic_fetch_add(&growth_hook_calls_, 1, __ATOMIC_RELAXED);
  __atomic_fetch_add(&growth_hook_objects_, objects, __ATOMIC_RELAXED);
  return objects;
}

bool PageHeap::AgeListConsistent() {
  SpinLockHolder h(&lock_);
  uint64_t pages = 0;
  const Span* older = nullptr;
  for (const Span* s = age_.oldest(); s != nullptr; older = s, s = s->newer) {
    if (s->older != older || s->location != SpanLocation::kFreeBacked) return false;
    if (older != nullptr && older->free_since_ns > s->free_since_ns) return false;
    pages += s->num_pages;
  }
  return pages == free_backed_pages_;
}

void PageHeap::GetFreeSpanHistogram(FreeSpanHistogram* out) {
  *out = {};
  auto add = [](uint64_t* spans, uint64_t* pages, size_t length, uint64_t count) {
    int b = FreeSpanBucket(length);
    spans[b] += count;
    pages[b] += count * length;
  };
  SpinLockHolder h(&lock_);
  for (size_t len = 1; len <= kMaxPages; ++len) {
    add(out->backed_spans, out->backed_pages, len, backed_[len].length());
    add(out->returned_spans, out->returned_pages, len, returned_[len].length());
  }
  for (const Span* s = long_backed_.first(); s != nullptr; s = s->next) {
    add(out->backed_spans, out->backed_pages, s->num_pages, 1);
  }
  for (const Span* s = long_returned_.first(); s != nullptr; s = s->next) {
    add(out->returned_spans, out->returned_pages, s->num_pages, 1);
  }
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
    Span* rest = NewSpanLocked();
    if (rest == nullptr) return nullptr;  // metadata exhausted; span stays free
    rest->owner = this;
    rest->first_page = span->first_page + n;
    rest->num_pages = span->num_pages - n;
    rest->location = span->location;
    rest->free_since_ns = span->free_since_ns;
    ReplaceFree(span, rest);
    span->num_pages = n;
    // The remainder was part of a maximal run of its state, so it has no
    // same-state neighbour to merge with.
    SetBoundaries(rest);
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
  if ((before > 0 && (pieces[0] = NewSpanLocked()) == nullptr) ||
      (after > 0 && (pieces[1] = NewSpanLocked()) == nullptr)) {
    if (pieces[0] != nullptr) DeleteSpanLocked(pieces[0]);
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
    piece->free_since_ns = span->free_since_ns;
    MergeAndInsert(piece);
  }
  return true;
}

// Maps fresh memory with the lock dropped: the system call may take a
// while and other threads need not wait for it.
bool PageHeap::GrowUnlocked(size_t n) {
  size_t ask = RoundUp(n, GrowPages());
  // A block as big as a step of growth gets its own pages: it may be used
  // sparsely, where huge pages would make 2 MiB resident per touch.
  PageUse use = n >= GrowPages() ? PageUse::kBigBlock : PageUse::kHeap;
  void* mem = SystemAlloc(ask << kPageShift, use);
  if (mem == nullptr && ask > n) {
    ask = n;
    mem = SystemAlloc(ask << kPageShift, use);
  }
  if (mem == nullptr) return false;
  {
    SpinLockHolder h(&lock_);
    if (AddFreshPages(reinterpret_cast<uintptr_t>(mem) >> kPageShift, ask)) return true;
  }
  // The pagemap could not cover the pages (its leaves are mapped too): the
  // fresh range goes back, and a range of exactly n pages needs less.
  SystemUnmap(mem, ask << kPageShift);
  if (ask == n) return false;
  mem = SystemAlloc(n << kPageShift, use);
  if (mem == nullptr) return false;
  SpinLockHolder h(&lock_);
  if (AddFreshPages(reinterpret_cast<uintptr_t>(mem) >> kPageShift, n)) return true;
  SystemUnmap(mem, n << kPageShift);
  return false;
}

// Pages fresh from the system: free, and counted as returned (untouched).
bool PageHeap::AddFreshPages(uintptr_t first, size_t n) {
  // On failure the caller still owns the range.
  if (!g_pagemap.Ensure(first, n)) return false;
  Span* span = NewSpanLocked();
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
  span->released_pages = 0;
  span->on_list = false;
  span->home = kNoHome;
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

}  // namespace rseqmalloc::internal
