// The central heap: everything below the per-CPU / per-thread front end.
//
// Call tree (small objects; large ones go straight to the page heap):
//
//   RemoveBatch(cls)                     InsertBatch(cls)
//     TransferCache::RemoveRange           TransferCache::InsertRange
//       (hit: copy from the stack)           (room: push onto the stack)
//       CentralFreeList::RemoveRange         CentralFreeList::InsertRange
//         pop / carve from a slab              push to the slab's list;
//         PageHeap::New (new slab)             empty slab -> PageHeap::Delete
//           FindFree -> Carve / Grow             MergeAndInsert, EnforceCap
//             SystemAlloc (64 MiB chunks)          SystemRelease (madvise)
//
//   AllocateLarge -> PageHeap::New(pages, kLargeClass, align)
//   FreeLarge     -> PageHeap::Delete
//   free()'s lookup: ClassifyPointer -> PageMap class byte (two loads)
//
// Lock order (LockAllForFork takes them this way): init, transfer caches
// (class 1 up), central free lists (class 1 up), page heap, arena, system.
// No path takes a lock while holding one later in that order.
//
// Everything works before main: all state is constant-initialised and
// InitCentralHeap (idempotent, cheap after the first call) finishes it.
// Every entry point below calls it, so calling it first is optional.
//
// What ClassifyPointer cannot tell: it answers per page, so any address inside
// a small-object slab, including an interior pointer or an object that is
// already free (double free), reports the slab's class; InsertBatch catches
// some of those (an object whose slab has no objects out crashes with a
// message) but not all. It does tell apart unknown memory, free pages, and
// interior pointers of large allocations (all kNotOurs).
#ifndef RSEQMALLOC_ALLOCATOR_CENTRAL_CENTRAL_HEAP_H_
#define RSEQMALLOC_ALLOCATOR_CENTRAL_CENTRAL_HEAP_H_

#include <cstddef>
#include <cstdint>

#include "allocator/central/central_stats.h"
#include "allocator/pages/page_heap.h"
#include "allocator/pages/pagemap.h"
#include "allocator/base/size_classes.h"

namespace rseqmalloc::internal {

// Idempotent, thread-safe, never allocates through malloc.
void InitCentralHeap();

// Fills out[0..n) with objects of class cls (1 <= cls < kNumClasses) and
// returns how many: n unless memory ran out part way, 0 when none could be had
// (or cls / n is invalid). Objects are not zeroed.
int RemoveBatch(uint32_t cls, void** out, int n);
// Returns n objects of class cls, each obtained from RemoveBatch(cls).
void InsertBatch(uint32_t cls, void* const* items, int n);

// Whole pages for sizes above kMaxSmallSize or alignments above kPageSize.
// align is a power of two (0 and values below kPageSize mean kPageSize);
// the result is align-aligned. size 0 gets one page. nullptr on OOM or for an
// impossible size / alignment. *zeroed (when not null) tells whether every
// byte of the block is known to be zero (fresh or returned pages), so calloc
// need not write them. grows: realloc moves the block because it grows,
// so it goes where the pages after it are free (Placement::kRoomToGrow).
void* AllocateLarge(size_t size, size_t align, bool* zeroed = nullptr, bool grows = false);
// Whether no memory the allocator could free would let a block of `size`
// bytes be mapped (the kernel refuses it outright: SystemRequestExceedsMemory).
// The caller then fails at once instead of draining caches first.
bool LargeRequestIsHopeless(size_t size);
// Resizes the large block p (what AllocateLarge returned) to hold `size`
// bytes without moving it: shrinking frees whole pages at its end, growing
// takes the free pages after it, up to `room` bytes when they are free.
// False when it cannot grow in place.
bool ResizeLargeInPlace(void* p, size_t size, size_t room = 0);
// p must be exactly what AllocateLarge returned; anything else crashes with
// a message (it would corrupt the heap otherwise).
void FreeLarge(void* p);

// The pagemap's class byte for p's page, unchecked: a small class, or 0,
// kLargeClass or kNotOurs (free()'s fast path pushes with it; only small
// classes have room in a cache).
inline uint32_t RawClassOf(const void* p) {
  return g_pagemap.ClassOfAddress(reinterpret_cast<uintptr_t>(p));
}

// Whether a raw class byte names a small class (1..kNumClasses-1), not 0,
// kLargeClass or kNotOurs: one unsigned compare, as 0 wraps around.
inline bool IsSmallClass(uint32_t cls) { return cls - 1 < kNumClasses - 1; }

// The size class (1..kNumClasses-1) of a pointer into a small-object slab,
// kLargeClass for the start of an in-use large allocation, kNotOurs otherwise.
inline uint32_t ClassifyPointer(const void* p) {
  uint32_t c = RawClassOf(p);
  if (IsSmallClass(c)) return c;
  if (c == kLargeClass && (reinterpret_cast<uintptr_t>(p) & (kPageSize - 1)) == 0) {
    return kLargeClass;
  }
  return kNotOurs;
}

// Zeroed memory for the front end's own structures (per-id state, thread
// caches), from the metadata arena: never returned, never from malloc.
// nullptr when the system refuses.
void* AllocateMetadata(size_t bytes);

// Whether `bytes` of address space reserved for speed, not for the
// program's data, are at most a `share`-th of the process's address-space
// limit (RLIMIT_AS or RLIMIT_DATA, the lesser); true without a limit.
// Under a tight limit such a reservation would take the room the program's
// own blocks need (docs/reliability.md, "A low address-space limit").
bool ReservationFitsLimit(size_t bytes, size_t share);

// Whether p is where an object of ours starts: the start of a live large
// block, or a multiple of the class size from the start of its slab
// (whether that object is free right now is unknowable without a walk of
// the free lists).
bool IsObjectStart(const void* p);

// Bytes usable at p: the class size, or the large allocation's whole pages;
// 0 when ClassifyPointer says kNotOurs.
size_t UsableSize(const void* p);

// malloc_trim(0): drains the transfer caches and returns every free page.
void ReleaseFreeMemory();

// Release policy of the page heap (see page_heap.h): the cap on free
// resident pages (default 1 GiB) and the delay after which a free page goes
// back to the OS (default 5 s; 0 = at once).
void SetPageHeapFreeCap(size_t bytes);
size_t PageHeapFreeCap();
void SetPageHeapReleaseDelay(uint64_t ns);
uint64_t PageHeapReleaseDelay();
// The page heap's free spans by length (statistics report).
void GetPageHeapFreeSpans(FreeSpanHistogram* out);
// Heap memory asks for transparent huge pages (system.h).
void UseHugePages(bool on);

// For the maintenance thread: sweeps what is due and returns the next
// deadline (UINT64_MAX when nothing waits), adding the bytes released to
// *released; the lock-free deadline and the bytes waiting for it; whether
// New / Delete should leave on-time sweeps, and RemoveBatch / InsertBatch
// the transfer caches' idle returns, to that thread.
uint64_t ReleaseExpiredPages(uint64_t* released);
uint64_t NextPageReleaseDeadline();
uint64_t PagesWaitingForReleaseBytes();
void SetBackgroundPageRelease(bool on);
// Runs (without locks) when a free gives the page heap a deadline again.
void SetPageReleaseDeadlineHook(void (*hook)());
// Objects in every transfer cache (takes each cache's lock in turn).
uint64_t TransferCacheObjects();
// Before the page heap takes fresh pages, the transfer caches of the
// classes over this size give every object they hold back to its span
// (central_heap.cc, GiveBigCachedObjectsToTheSpans).
inline constexpr size_t kGiveBackAboveBytes = 1024;

// Hands objects no CPU asked for back to the central free lists: each
// transfer cache gives up what it held all through the last interval (its
// low-water mark), so an idle cache empties in two passes, and a grown one
// that was not needed halves. Returns the objects moved. Passes run at most
// once per kIdleReturnPeriodNs whoever asks: the maintenance thread each
// pass, or, while there is no such thread (single-threaded processes,
// RSEQMALLOC_BACKGROUND_THREAD=0, a fork child), RemoveBatch / InsertBatch
// themselves (a coarse clock read per batch), so such a process gets them
// too while it allocates.
inline constexpr uint64_t kIdleReturnPeriodNs = 1'000'000'000;
uint64_t ReturnIdleTransferObjects();

// For the maintenance thread, at `now` (and, while there is none, for
// RemoveBatch / InsertBatch with the idle passes above): every class gives
// back the OS pages of its partly used slabs that hold nothing live (inside free
// objects, or touched only by free objects; see
// CentralFreeList::ReleaseInsideFreeObjects) once its central list has
// had no batch for the page heap's release delay, counted from the first
// call that saw its last change. A slab with one live object otherwise
// keeps all its free objects resident for as long as that object lives.
// Adds the bytes to *released; returns when to call again (UINT64_MAX:
// every such list is released as it stands, or unused).
uint64_t ReleaseInsideIdleFreeObjects(uint64_t now, uint64_t* released);
// What RemoveBatch / InsertBatch released that way themselves while no
// maintenance thread ran (bytes, since the start): with no thread, they
// run the idle passes at most once per kIdleReturnPeriodNs.
uint64_t InsideReleasedInCalls();
// For tests: the lock ReleaseInsideIdleFreeObjects runs under, taken as a
// pass on another thread would hold it.
bool TryLockInsidePassForTesting();
void UnlockInsidePassForTesting();


// pthread_atfork handlers: prepare takes every central lock in the order
// above; parent and child both release them, the child after taking back
// the pages a vanished thread was returning to the OS.
void LockAllForFork();
void UnlockAllAfterFork(bool child);

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_CENTRAL_CENTRAL_HEAP_H_
