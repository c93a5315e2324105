// A span: a run of whole pages owned by the page heap, either free or handed
// out as one large allocation or as a slab of small objects of one class.
// Span structs live in the metadata arena, never in the pages they describe,
// so returning a free span's pages to the OS loses nothing.
#ifndef RSEQMALLOC_ALLOCATOR_PAGES_SPAN_H_
#define RSEQMALLOC_ALLOCATOR_PAGES_SPAN_H_

#include <cstddef>
#include <cstdint>

#include "allocator/base/size_classes.h"

namespace rseqmalloc::internal {

class PageHeap;

// Span::home of a span no CPU carves from (central_freelist.h).
inline constexpr uint8_t kNoHome = 0xff;

enum class SpanLocation : uint8_t {
  kInUse,         // handed out (large allocation or small-object slab)
  kFreeBacked,    // free, pages may be resident
  kFreeReturned,  // free, pages given back to the OS (or never touched)
  kReleasing,     // free, taken out of the lists while madvise runs unlocked
};

struct Span {
  Span* next;
  Span* prev;
  PageHeap* owner;       // spans of different heaps never coalesce
  uintptr_t first_page;  // address >> kPageShift
  uintptr_t num_pages;

  // Small-object slab state (guarded by the class's central free list lock).
  void* freelist;      // objects given back, linked through their first word
  uint32_t allocated;  // objects currently outside the span
  uint32_t carved;     // objects carved so far; the rest is untouched memory

  // Free backed spans only: when the span became free (after merges, its
  // biggest part's), and its links in the page heap's age list.
  uint64_t free_since_ns;
  Span* older;
  Span* newer;

  uint32_t size_class;  // 0 when free, kLargeClass for a large allocation
  SpanLocation location;
  bool was_returned;  // in use: its pages came from the OS-returned state
  bool on_list;       // linked in a central free list's nonempty list
  uint8_t home;       // the CPU slot it is the carving span of, or kNoHome
  uint8_t placed_for;  // the CPU slot the page heap placed it for, or kNoHome
  // Small-object slab: its OS pages given back to the OS while only free
  // objects touched them (CentralFreeList::ReleaseInsideFreeObjects); the
  // free objects that start in such a page are off `freelist`.
  uint8_t released_pages;
  // Large block: placed to grow (Placement::kRoomToGrow) or grown in place
  // since, so probably still growing.
  bool grows;

  uintptr_t start_address() const { return first_page << kPageShift; }
  void* start() const { return reinterpret_cast<void*>(start_address()); }
  size_t bytes() const { return num_pages << kPageShift; }
  uintptr_t last_page() const { return first_page + num_pages - 1; }
};

// Intrusive doubly-linked list of spans; null-terminated so that a zeroed
// (constant-initialised) list is a valid empty list.
class SpanList {
 public:
  constexpr SpanList() = default;

  bool empty() const { return head_ == nullptr; }
  Span* first() const { return head_; }
  size_t length() const { return length_; }

  void PushFront(Span* s) {
    s->prev = nullptr;
    s->next = head_;
    if (head_ != nullptr) head_->prev = s;
    head_ = s;
    ++length_;
  }

  void Remove(Span* s) {
    if (s->prev != nullptr) {
      s->prev->next = s->next;
    } else {
      head_ = s->next;
    }
    if (s->next != nullptr) s->next->prev = s->prev;
    s->next = s->prev = nullptr;
    --length_;
  }

 private:
  Span* head_ = nullptr;
  size_t length_ = 0;
};

// Free backed spans from oldest to newest by free_since_ns, for the timed
// release. Insertion walks from the newest end: most spans are stamped
// "now". A span cut from a free one takes its place (Replace), and a merge,
// which keeps the stamp of its biggest part, walks from where that part
// was (InsertAfterWalkFrom). Walking from the newest end, both passed every
// newer free span: with merges stamped by the page-weighted mean of their
// parts, 45 % of `sparse_writes`' time (docs/design.md, "Returning
// memory").
class SpanAgeList {
 public:
  constexpr SpanAgeList() = default;

  bool empty() const { return oldest_ == nullptr; }
  Span* oldest() const { return oldest_; }

  void Insert(Span* s) { InsertAfterWalkFrom(s, newest_); }

  // The same, the walk starting at `start` (on the list; null: the oldest
  // end) instead of the newest end.
  void InsertAfterWalkFrom(Span* s, Span* start) {
    Span* before = start;  // s goes right after it
    // Strictly older only: stamps come from a coarse clock, and many free
    // spans share one.
    for (Span* next = before != nullptr ? before->newer : oldest_;
         next != nullptr && next->free_since_ns < s->free_since_ns; next = next->newer) {
      before = next;
      ++walk_steps_;
    }
    while (before != nullptr && before->free_since_ns > s->free_since_ns) {
      before = before->older;
      ++walk_steps_;
    }
    LinkBetween(s, before, before != nullptr ? before->newer : oldest_);
  }

  // `fresh` takes `old`'s place (it must have old's stamp).
  void Replace(Span* old, Span* fresh) {
    LinkBetween(fresh, old->older, old->newer);
    old->older = old->newer = nullptr;
  }

  void Remove(Span* s) {
    if (s->older != nullptr) {
      s->older->newer = s->newer;
    } else {
      oldest_ = s->newer;
    }
    if (s->newer != nullptr) {
      s->newer->older = s->older;
    } else {
      newest_ = s->older;
    }
    s->older = s->newer = nullptr;
  }

  // Spans passed by insertion walks, since the start: what keeping the list
  // in order costs (tests check that it stays small).
  uint64_t walk_steps() const { return walk_steps_; }

 private:
  // Puts s between `older` and `newer` (adjacent, or an end: null).
  void LinkBetween(Span* s, Span* older, Span* newer) {
    s->older = older;
    s->newer = newer;
    if (older != nullptr) {
      older->newer = s;
    } else {
      oldest_ = s;
    }
    if (newer != nullptr) {
      newer->older = s;
    } else {
      newest_ = s;
    }
  }

  Span* oldest_ = nullptr;
  Span* newest_ = nullptr;
  uint64_t walk_steps_ = 0;
};

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_PAGES_SPAN_H_
