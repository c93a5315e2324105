// The page heap's release policy (see page_heap.h): which free backed spans
// go back to the OS, when, and how without holding the lock across madvise;
// and unmapping free spans when address space runs out.
#include "allocator/base/clock.h"
#include "allocator/pages/arena.h"
#include "allocator/pages/pagemap.h"
#include "allocator/pages/page_heap.h"
#include "allocator/pages/system.h"

namespace rseqmalloc::internal {

uint64_t PageHeap::Now() const {
  return clock_ != nullptr ? clock_() : CoarseMonotonicNs();
}

void PageHeap::PublishDeadlineLocked() {
  uint64_t deadline = age_.empty() ? kNoDeadline : age_.oldest()->free_since_ns + delay_ns_;
  if (next_deadline_ns_ == kNoDeadline && deadline != kNoDeadline) {
    // Sequentially consistent: a maintenance thread that is about to sleep
    // for good stores its state, then reads the deadline; the hook reads
    // that state after this store. One of the two sees the other.
    __atomic_store_n(&next_deadline_ns_, deadline, __ATOMIC_SEQ_CST);
    deadline_appeared_ = true;
    return;
  }
  __atomic_store_n(&next_deadline_ns_, deadline, __ATOMIC_RELAXED);
}

bool PageHeap::TakeDeadlineAppearedLocked() {
  bool appeared = deadline_appeared_;
  deadline_appeared_ = false;
  return appeared;
}

PageHeap::PendingWork PageHeap::SweepDueLocked(uint64_t now) const {
  PendingWork work;
  work.sweep = WantsSweepLocked(now);
  if (work.sweep) work.goal = SweepGoalLocked(now);
  return work;
}

PageHeap::PendingWork PageHeap::AfterFreeLocked(uint64_t now) {
  PendingWork work = SweepDueLocked(now);
  work.deadline_appeared = TakeDeadlineAppearedLocked();
  return work;
}

void PageHeap::DoPendingWork(const PendingWork& work) {
  if (work.sweep) Release(work.goal);
  void (*hook)() = __atomic_load_n(&deadline_hook_, __ATOMIC_ACQUIRE);
  if (work.deadline_appeared && hook != nullptr) hook();
}

void PageHeap::SetDeadlineHook(void (*hook)()) {
  __atomic_store_n(&deadline_hook_, hook, __ATOMIC_RELEASE);
}

bool PageHeap::WantsSweepLocked(uint64_t now) const {
  if ((free_backed_pages_ << kPageShift) > free_cap_bytes_) return true;
  if (age_.empty()) return false;
  if (delay_ns_ == 0) return true;
  // A maintenance thread sweeps on time; a caller steps in only when it is
  // late (descheduled on a busy machine, or gone after a fork).
  uint64_t due = next_deadline_ns_ + (background_sweeps_ ? kLateReleaseNs : 0);
  return now >= due;
}

// Expired spans, plus those expiring within an eighth of the delay (fewer
// sweeps for a trickle of frees); down to 3/4 of the cap when over it.
PageHeap::ReleaseGoal PageHeap::SweepGoalLocked(uint64_t now) const {
  ReleaseGoal goal;
  goal.cause = Cause::kCap;
  uint64_t horizon = now + delay_ns_ / 8;
  if (horizon >= delay_ns_) goal.stamped_before_ns = horizon - delay_ns_ + 1;
  if ((free_backed_pages_ << kPageShift) > free_cap_bytes_) {
    goal.keep_backed_pages = (free_cap_bytes_ - free_cap_bytes_ / 4) >> kPageShift;
  }
  return goal;
}

// Oldest first, as long as the goal asks for more. The spans leave the free
// lists (kReleasing: nobody merges with or allocates them) and wait on
// releasing_, where a fork child finds them.
int PageHeap::TakeForRelease(const ReleaseGoal& goal, uint64_t taken, Span** out, Cause* causes,
                             int max) {
  int n = 0;
  Span* s = age_.oldest();
  while (n < max && s != nullptr) {
    Span* newer = s->newer;
    bool expired = s->free_since_ns < goal.stamped_before_ns;
    bool over = free_backed_pages_ > goal.keep_backed_pages;
    if (!expired && !over && taken >= goal.min_pages) break;
    if (!expired && !over && goal.long_only && s->num_pages <= kMaxPages) {
      s = newer;  // short runs are left to the timed release
      continue;
    }
    RemoveFree(s);
    s->location = SpanLocation::kReleasing;
    releasing_.PushFront(s);
    releasing_pages_ += s->num_pages;
    taken += s->num_pages;
    causes[n] = expired ? Cause::kExpired : goal.cause;
    out[n++] = s;
    s = newer;
  }
  return n;
}

void PageHeap::FinishRelease(Span* const* spans, const Cause* causes, const bool* released, int n,
                             uint64_t now) {
  for (int i = 0; i < n; ++i) {
    Span* s = spans[i];
    releasing_.Remove(s);
    releasing_pages_ -= s->num_pages;
    if (released[i]) {
      released_bytes_[static_cast<int>(causes[i])] += s->bytes();
      s->location = SpanLocation::kFreeReturned;
    } else {
      s->location = SpanLocation::kFreeBacked;  // madvise failed: still resident
      s->free_since_ns = now;                   // and not retried at once
    }
    MergeAndInsert(s);
  }
}

// Called without the lock; takes it around each bite of spans but never
// across the system calls.
uint64_t PageHeap::Release(const ReleaseGoal& goal) {
  constexpr int kBite = 32;
  Span* spans[kBite];
  Cause causes[kBite];
  bool released[kBite];
  uint64_t taken = 0;
  uint64_t bytes = 0;
  for (;;) {
    int n;
    {
      SpinLockHolder h(&lock_);
      n = TakeForRelease(goal, taken, spans, causes, kBite);
    }
    if (n == 0) break;
    bool failed = false;
    for (int i = 0; i < n; ++i) {
      released[i] = SystemRelease(spans[i]->start(), spans[i]->bytes());
      taken += spans[i]->num_pages;
      if (released[i]) bytes += spans[i]->bytes();
      failed |= !released[i];
    }
    uint64_t now = failed ? Now() : 0;
    {
      SpinLockHolder h(&lock_);
      FinishRelease(spans, causes, released, n, now);
    }
    if (failed) break;
  }
  return bytes;
}

uint64_t PageHeap::ReleaseExpired(uint64_t* released) {
  uint64_t now = Now();
  ReleaseGoal goal;
  {
    SpinLockHolder h(&lock_);
    goal = SweepGoalLocked(now);
  }
  uint64_t bytes = Release(goal);
  if (released != nullptr) *released += bytes;
  return next_release_deadline();
}

void PageHeap::ReleaseAll() {
  ReleaseGoal goal;
  goal.keep_backed_pages = 0;
  goal.cause = Cause::kTrim;
  Release(goal);
}

void PageHeap::SetFreeCap(size_t bytes) {
  uint64_t now = Now();
  PendingWork work;
  {
    SpinLockHolder h(&lock_);
    __atomic_store_n(&free_cap_bytes_, bytes, __ATOMIC_RELAXED);
    work = SweepDueLocked(now);
  }
  DoPendingWork(work);
}

size_t PageHeap::free_cap() const { return __atomic_load_n(&free_cap_bytes_, __ATOMIC_RELAXED); }

void PageHeap::SetReleaseDelay(uint64_t ns) {
  SpinLockHolder h(&lock_);
  __atomic_store_n(&delay_ns_, ns, __ATOMIC_RELAXED);
  PublishDeadlineLocked();
}

uint64_t PageHeap::release_delay() const { return __atomic_load_n(&delay_ns_, __ATOMIC_RELAXED); }

void PageHeap::SetBackgroundSweeps(bool on) {
  SpinLockHolder h(&lock_);
  background_sweeps_ = on;
}

void PageHeap::SetClock(Clock clock) {
  SpinLockHolder h(&lock_);
  clock_ = clock;
}

void PageHeap::ReclaimReleasingLocked() {
  while (!releasing_.empty()) {
    Span* s = releasing_.first();
    releasing_.Remove(s);
    releasing_pages_ -= s->num_pages;
    s->location = SpanLocation::kFreeBacked;
    MergeAndInsert(s);
  }
}

// Only after a mapping failed, which under an address-space limit
// (RLIMIT_AS) means the heap's free spans hold the room it needs. They all
// go: any of them may be what the next mapping needs, and a program at its
// limit gains more from address space than from a pool of free pages. The
// munmap runs under the lock, unlike madvise: this path is rare, and a span
// out of the lists but still mapped would be lost to a fork child.
size_t PageHeap::UnmapFree() {
  SpinLockHolder h(&lock_);
  size_t pages = 0;
  SpanList kept;  // spans the kernel would not unmap (vm.max_map_count)
  auto unmap_all = [&](SpanList& list) {
    while (!list.empty()) {
      Span* span = list.first();
      RemoveFree(span);
      if (!SystemUnmap(span->start(), span->bytes())) {
        kept.PushFront(span);
        continue;
      }
      // No page of the hole names a span from now on, interior pages
      // included: their entries may be left from spans long gone, and a
      // later mapping of part of these addresses would find them as its
      // neighbours (the invariant that every page next to a span is a
      // boundary of a live one holds only for memory the heap still has).
      for (uintptr_t page = span->first_page; page <= span->last_page(); ++page) {
        g_pagemap.SetSpan(page, nullptr);
      }
      total_pages_ -= span->num_pages;
      pages += span->num_pages;
      DeleteSpanLocked(span);
    }
  };
  for (size_t n = 1; n <= kMaxPages; ++n) {
    unmap_all(backed_[n]);
    unmap_all(returned_[n]);
  }
  unmap_all(long_backed_);
  unmap_all(long_returned_);
  while (!kept.empty()) {
    Span* span = kept.first();
    kept.Remove(span);
    InsertFree(span);
  }
  unmapped_pages_ += pages;
  return pages;
}

}  // namespace rseqmalloc::internal
