#include "allocator/central/central_freelist.h"

#include <sched.h>

#include "allocator/pages/pagemap.h"
#include "allocator/base/size_classes.h"
#include "allocator/pages/system.h"

namespace rseqmalloc::internal {
namespace {

// Empty slabs found by one InsertRange are handed to the page heap after the
// list lock is dropped; more than this many are handed over with it held.
constexpr int kMaxDeferredSpans = 16;

// Fresh spans one refill asks the page heap for at once (PageHeap::NewSpans).
constexpr int kMaxFreshSpans = 16;

// The OS page, the unit of madvise: x86-64's base page. On a kernel with
// bigger pages madvise would round a range out over live neighbours.
#if !defined(__x86_64__)
#error "ReleaseInsideFreeObjects assumes 4 KiB OS pages"
#endif
constexpr uintptr_t kOsPage = 4096;
uintptr_t OsPageUp(uintptr_t a) { return (a + kOsPage - 1) & ~(kOsPage - 1); }
uintptr_t OsPageDown(uintptr_t a) { return a & ~(kOsPage - 1); }
// Span::released_pages bits of OS pages first..last (inclusive).
uint8_t PageBits(unsigned first, unsigned last) {
  return static_cast<uint8_t>(((2u << last) - 1) & ~((1u << first) - 1));
}

}  // namespace

void CentralFreeList::Init(uint32_t cls, PageHeap* heap) {
  cls_ = cls;
  object_size_ = static_cast<uint32_t>(ClassToSize(cls));
  pages_per_span_ = ClassToPages(cls);
  objects_per_span_ = static_cast<uint32_t>((pages_per_span_ * kPageSize) / object_size_);
  uses_homes_ = object_size_ <= kHomeMaxObjectBytes;
  static_assert(kMaxReleasablePages <= 8 * sizeof(Span::released_pages));
  os_pages_per_span_ = static_cast<uint32_t>(pages_per_span_ * kPageSize / kOsPage);
  releases_free_pages_ = !HasInnerPages() && os_pages_per_span_ <= kMaxReleasablePages &&
                         objects_per_span_ <= kMaxReleasableSlabObjects;
  heap_ = heap;
}

void* CentralFreeList::PopFrom(Span* span) {
  void* obj = span->freelist;
  if (obj == nullptr && span->released_pages != 0) obj = TakeBackReleasedPage(span);
  if (obj != nullptr) {
    span->freelist = *static_cast<void**>(obj);
  } else {
    // Carve the next untouched object.
    uintptr_t offset = static_cast<uintptr_t>(span->carved) * object_size_;
    obj = reinterpret_cast<void*>(span->start_address() + offset);
    // Released pages of the never-carved tail are in use again: those
    // the object touches (the last one of a slab may reach into a page
    // where no object starts).
    if (span->released_pages != 0) {
      span->released_pages &= static_cast<uint8_t>(
          ~PageBits(static_cast<unsigned>(offset / kOsPage),
                    static_cast<unsigned>((offset + object_size_ - 1) / kOsPage)));
    }
    ++span->carved;
  }
  ++span->allocated;
  --free_objects_;
  if (span->allocated == objects_per_span_ && span->on_list) {
    nonempty_.Remove(span);
    span->on_list = false;
  }
  return obj;
}

// The objects that start in OS page `page` of a slab: [FirstObjectIn,
// ObjectsEndIn), empty for a page of the slab's tail waste.
uint32_t CentralFreeList::FirstObjectIn(unsigned page) const {
  return static_cast<uint32_t>((page * kOsPage + object_size_ - 1) / object_size_);
}

uint32_t CentralFreeList::ObjectsEndIn(unsigned page) const {
  uint32_t end = static_cast<uint32_t>(((page + 1) * kOsPage + object_size_ - 1) / object_size_);
  return end < objects_per_span_ ? end : objects_per_span_;
}

// Puts the free objects of the lowest released page back on the span's
// list (writing their links faults the page in again) and returns the new
// head; nullptr when only pages of the never-carved tail are released (the
// caller carves). Caller holds the lock; span->released_pages != 0.
void* CentralFreeList::TakeBackReleasedPage(Span* span) {
  unsigned page = static_cast<unsigned>(__builtin_ctz(span->released_pages));
  uint32_t first = FirstObjectIn(page), end = ObjectsEndIn(page);
  // Pages are released with all their objects carved or none, and carving
  // goes in address order: this page and every later one are the tail.
  if (first >= span->carved) return nullptr;
  span->released_pages &= static_cast<uint8_t>(~(1u << page));
  ++pages_taken_back_;
  for (uint32_t i = end; i-- > first;) {
    void* obj = reinterpret_cast<void*>(span->start_address() + uintptr_t{i} * object_size_);
    *static_cast<void**>(obj) = span->freelist;
    span->freelist = obj;
  }
  return span->freelist;
}

// A span off the nonempty list becomes the home of slot `home` / stops
// being a home. Caller holds the lock.
void CentralFreeList::MakeHome(Span* span, int home) {
  span->home = static_cast<uint8_t>(home);
  home_[home] = span;
}

void CentralFreeList::Unhome(Span* span) {
  home_[span->home] = nullptr;
  span->home = kNoHome;
}

// The span home slot `home` carves from: its own while it has free
// objects, else the first of the nonempty list, which becomes its home;
// nullptr when the list is empty too. Caller holds the lock.
Span* CentralFreeList::HomeSpan(int home) {
  Span* span = home_[home];
  if (span != nullptr) {
    if (span->allocated < objects_per_span_) return span;
    Unhome(span);  // full: off every list until an object comes back
  }
  span = nonempty_.first();
  if (span == nullptr) return nullptr;
  nonempty_.Remove(span);
  span->on_list = false;
  MakeHome(span, home);
  return span;
}

// Out of memory only: makes a home span of another slot with free objects
// the home of `home` (or finds that `home` got one meanwhile). Caller holds
// the lock.
bool CentralFreeList::AdoptAnotherHome(int home) {
  if (home_[home] != nullptr) return true;
  for (Span* span : home_) {
    if (span == nullptr || span->allocated == objects_per_span_) continue;
    Unhome(span);
    MakeHome(span, home);
    return true;
  }
  return false;
}

int CentralFreeList::RemoveRange(void** out, int n) {
  int home = kNoHome;
  if (uses_homes_) {
    int cpu = sched_getcpu();  // glibc's rseq area, else the vDSO: no system call
    home = cpu < 0 ? 0 : cpu % kHomes;
  }
  return RemoveRangeFor(home, out, n);
}

int CentralFreeList::RemoveRangeFor(int home, void** out, int n) {
  if (!uses_homes_) home = kNoHome;
  int got = 0;
  lock_.Lock();
  __atomic_store_n(&activity_, activity_ + 1, __ATOMIC_RELAXED);
  while (got < n) {
    Span* span = home == kNoHome ? nonempty_.first() : HomeSpan(home);
    if (span == nullptr) {
      // Do not hold this class's lock across the page heap (it may grow the
      // heap or madvise), so other threads can keep freeing into the list.
      // As many spans as the rest of the batch needs come in one call: a
      // class of one or two objects per span would otherwise take both
      // locks again for every span.
      int want = (n - got + static_cast<int>(objects_per_span_) - 1) /
                 static_cast<int>(objects_per_span_);
      if (want > kMaxFreshSpans) want = kMaxFreshSpans;
      lock_.Unlock();
      // A home's fresh span goes next to the CPU's previous ones (page_heap.h,
      // "Locality").
      Span* fresh[kMaxFreshSpans];
      int k = heap_->NewSpans(pages_per_span_, cls_, home == kNoHome ? kNoLocality : home, fresh,
                              want);
      lock_.Lock();
      if (k == 0) {
        // Out of pages: a malloc must not fail while another CPU's home span
        // has objects of the class.
        if (home == kNoHome || !AdoptAnotherHome(home)) break;
        continue;
      }
      // fresh[0] ends first on the list: objects leave in address order.
      for (int i = k - 1; i >= 0; --i) {
        ++spans_;
        free_objects_ += objects_per_span_;
        nonempty_.PushFront(fresh[i]);
        fresh[i]->on_list = true;
      }
      continue;
    }
    out[got++] = PopFrom(span);
  }
  lock_.Unlock();
  return got;
}

void CentralFreeList::Release(void* object, Span** to_free, int* num_to_free) {
  Span* span = g_pagemap.GetSpan(reinterpret_cast<uintptr_t>(object) >> kPageShift);
  if (span == nullptr || span->size_class != cls_ || span->allocated == 0) {
    CrashWithPointer("free(): double free or invalid pointer", object);
  }
  // Two O(1) checks on this batched path (objects reach it only when the
  // transfer cache overflows, never on the fast path): an interior pointer,
  // and the same object freed twice in a row (its two copies drain to the
  // central list together, so the second finds the first at the head).
  uintptr_t offset = reinterpret_cast<uintptr_t>(object) - span->start_address();
  if (offset % ClassToSize(cls_) != 0) {
    CrashWithPointer("free(): invalid pointer (not the start of an object)", object);
  }
  if (object == span->freelist) CrashWithPointer("free(): double free", object);
  // An object of a released page is free (off the list until the page is
  // taken back): the same test catches any second free of it.
  if (span->released_pages >> (offset / kOsPage) & 1) {
    CrashWithPointer("free(): double free", object);
  }
  *static_cast<void**>(object) = span->freelist;
  span->freelist = object;
  --span->allocated;
  ++free_objects_;
  if (span->allocated == 0) {
    if (span->on_list) nonempty_.Remove(span);
    span->on_list = false;
    if (span->home != kNoHome) Unhome(span);
    --spans_;
    free_objects_ -= objects_per_span_;
    if (*num_to_free == kMaxDeferredSpans) {
      heap_->Delete(span);
    } else {
      to_free[(*num_to_free)++] = span;
    }
  } else if (!span->on_list && span->home == kNoHome) {
    nonempty_.PushFront(span);
    span->on_list = true;
  }
}

void CentralFreeList::InsertRange(void* const* items, int n) {
  Span* to_free[kMaxDeferredSpans];
  int num_to_free = 0;
  lock_.Lock();
  __atomic_store_n(&activity_, activity_ + 1, __ATOMIC_RELAXED);
  for (int i = 0; i < n; ++i) Release(items[i], to_free, &num_to_free);
  lock_.Unlock();
  heap_->DeleteSpans(to_free, num_to_free);
}

bool CentralFreeList::HasInnerPages() const { return object_size_ >= kOsPage + sizeof(void*); }

// Walks a span's free list, checking each link against the span: the list
// holds at most carved - allocated objects, each at an object's start
// inside the carved part. A list that says otherwise was written through a
// freed pointer, and releasing what it points to could zero anything (a
// link overwritten with another object of the slab passes: the check
// narrows the damage, it cannot rule it out).
template <typename Visit>
void CentralFreeList::ForEachListed(const Span* span, Visit visit) const {
  uintptr_t begin = span->start_address();
  uintptr_t end = begin + uintptr_t{span->carved} * object_size_;
  uint32_t left = span->carved - span->allocated;
  for (void* obj = span->freelist; obj != nullptr; obj = *static_cast<void**>(obj)) {
    uintptr_t a = reinterpret_cast<uintptr_t>(obj);
    if (left-- == 0 || a < begin || a >= end || (a - begin) % object_size_ != 0) {
      CrashWithPointer("free list corrupted (a write to a freed block?) at", obj);
    }
    visit(a);
  }
}

namespace {

void ReleaseCounted(uintptr_t begin, uintptr_t end, uint64_t* released) {
  if (begin < end && SystemRelease(reinterpret_cast<void*>(begin), end - begin)) {
    *released += end - begin;
  }
}

}  // namespace

// Objects of a page or more: the whole OS pages inside each free object,
// past its link, and those of the never-carved tail. Safe under the lock: a
// free object in a slab's list belongs to this list alone, and nobody reads
// it but PopFrom, which reads only its link. The pages read as zero once
// released and are faulted in again by the first write of whoever gets the
// object next; a slab that empties later goes to the page heap as it is
// (its later release finds those pages gone).
void CentralFreeList::ReleaseInnerPages(Span* span, uint64_t* released) {
  auto release = [released](uintptr_t from, uintptr_t to) {
    ReleaseCounted(OsPageUp(from), OsPageDown(to), released);
  };
  ForEachListed(span, [&](uintptr_t a) { release(a + sizeof(void*), a + object_size_); });
  uintptr_t begin = span->start_address();
  release(begin + uintptr_t{span->carved} * object_size_,
          begin + uintptr_t{pages_per_span_} * kPageSize);  // the never-carved tail
}

// Smaller objects: the OS pages that no live object touches. The free
// objects that start in such a page are taken off the list first (the
// release zeroes their links) and come back when the list runs dry
// (TakeBackReleasedPage); Span::released_pages remembers which pages went.
// A page where both carved and never-carved objects start is kept: carving
// would hand out objects of a page whose free objects are parked.
void CentralFreeList::ReleaseFreePages(Span* span, uint64_t* released) {
  uintptr_t begin = span->start_address();
  uint32_t carved = span->carved;
  uint64_t free_bits[kMaxReleasableSlabObjects / 64] = {};
  auto set = [&free_bits](uint32_t i) { free_bits[i / 64] |= uint64_t{1} << (i % 64); };
  auto is_free = [&free_bits](uint32_t i) { return (free_bits[i / 64] >> (i % 64) & 1) != 0; };
  ForEachListed(span, [&](uintptr_t a) {
    uint32_t i = static_cast<uint32_t>((a - begin) / object_size_);
    if (is_free(i)) CrashWithPointer("free list corrupted (a write to a freed block?) at",
                                     reinterpret_cast<void*>(a));
    set(i);
  });
  for (unsigned p = 0; p < os_pages_per_span_; ++p) {
    if ((span->released_pages >> p & 1) == 0) continue;
    for (uint32_t i = FirstObjectIn(p); i < ObjectsEndIn(p) && i < carved; ++i) set(i);
  }
  unsigned parked = 0, give = 0;
  for (unsigned p = 0; p < os_pages_per_span_; ++p) {
    if (span->released_pages >> p & 1) continue;
    uint32_t first = FirstObjectIn(p), end = ObjectsEndIn(p);
    if (first < carved && end > carved) continue;
    // The carved objects touching the page, from the one over its first byte.
    uint32_t lo = static_cast<uint32_t>(p * kOsPage / object_size_);
    uint32_t hi = static_cast<uint32_t>(((p + 1) * kOsPage - 1) / object_size_ + 1);
    if (hi > carved) hi = carved;
    bool busy = false;
    for (uint32_t i = lo; i < hi && !busy; ++i) busy = !is_free(i);
    if (busy) continue;
    give |= 1u << p;
    if (first < carved) parked |= 1u << p;
  }
  if (parked != 0) {
    void** link = &span->freelist;
    while (*link != nullptr) {
      uintptr_t a = reinterpret_cast<uintptr_t>(*link);
      if (parked >> ((a - begin) / kOsPage) & 1) {
        *link = *static_cast<void**>(*link);
      } else {
        link = static_cast<void**>(*link);
      }
    }
  }
  span->released_pages |= static_cast<uint8_t>(give);
  for (unsigned p = 0; p < os_pages_per_span_;) {  // runs of adjacent pages, one call each
    if ((give >> p & 1) == 0) {
      ++p;
      continue;
    }
    unsigned q = p;
    while (q < os_pages_per_span_ && (give >> q & 1)) ++q;
    ReleaseCounted(begin + p * kOsPage, begin + q * kOsPage, released);
    p = q;
  }
}

bool CentralFreeList::ReleaseInsideFreeObjects(uint64_t seen_activity, uint64_t* released) {
  SpinLockHolder hold(&lock_);
  if (activity_ != seen_activity) return false;
  // A thread that finds the lock held meanwhile wants this class again: the
  // pass stops before the next slab rather than keep it waiting through the
  // madvise calls of every slab, and pages of a class in use would soon be
  // faulted back anyway. What went stays released; the next pass finishes.
  const uint64_t waits = lock_.contended();
  auto visit = [&](Span* span) {
    if (lock_.contended() != waits) return false;
    if (releases_free_pages_) {
      ReleaseFreePages(span, released);
    } else {
      ReleaseInnerPages(span, released);
    }
    return true;
  };
  for (Span* span = nonempty_.first(); span != nullptr; span = span->next) {
    if (!visit(span)) return false;
  }
  for (Span* span : home_) {
    if (span != nullptr && !visit(span)) return false;
  }
  __atomic_store_n(&released_at_activity_, activity_, __ATOMIC_RELAXED);
  return true;
}

void CentralFreeList::GetStats(CentralFreeListStats* out) {
  SpinLockHolder h(&lock_);
  GetStatsLocked(out);
}

void CentralFreeList::GetStatsLocked(CentralFreeListStats* out) const {
  out->spans = spans_;
  out->free_objects = free_objects_;
  out->out_objects = spans_ * objects_per_span_ - free_objects_;
  out->lock_contended = lock_.contended();
  out->pages_taken_back = pages_taken_back_;
}

}  // namespace rseqmalloc::internal
