// Slow paths of the front end: cache selection, refills and overflows,
// large blocks, re-entered calls and invalid pointers (start-up and fork
// are lifecycle.cc's).
#include "allocator/frontend/frontend.h"

#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>

#include "allocator/base/log.h"
#include "allocator/config/options.h"
#include "allocator/frontend/lifecycle.h"
#include "allocator/frontend/maintenance.h"
#include "allocator/frontend/reentrant_blocks.h"
#include "allocator/frontend/reentry.h"
#include "allocator/frontend/shared_tls_child.h"
#include "allocator/frontend/to_central.h"
#include "allocator/frontend/upcalls.h"

namespace rseqmalloc::internal {
namespace {

// Largest request we try: anything past PTRDIFF_MAX cannot be represented
// as a difference of pointers into it, so glibc refuses it too.
constexpr size_t kMaxRequest = PTRDIFF_MAX;

// Thread mode serves every call here (the per-CPU slab is never started):
// the thread's own list, before any of the slow path's bookkeeping.
[[gnu::always_inline]] inline void* PopThreadCache(uint32_t cls) {
  return g_thread_caches ? tls_thread_cache->Pop(cls) : nullptr;
}
[[gnu::always_inline]] inline bool PushThreadCache(uint32_t cls, void* p) {
  return g_thread_caches && tls_thread_cache->Push(cls, p);
}

void* OutOfMemory() {
  errno = ENOMEM;
  return nullptr;
}

// A signal handler interrupted this thread inside the allocator (reentry.h):
// serve it without locks and without the thread's cache.
void* AllocateReentered(size_t size, size_t align) {
  void* p = ReentrantAllocate(size, align);
  return p != nullptr ? p : OutOfMemory();
}

void FreeReentered(void* p, uint32_t cls) {
  if (IsSmallClass(cls) || cls == kLargeClass) return DeferFree(p, cls);
  if (p == nullptr || ReentrantFree(p)) return;
  ReportInvalidPointer("free(): invalid pointer", p);
}

// Hands back what re-entered frees deferred; every slow path that is not
// re-entered looks, so the stack drains soon after any thread moves on.
void ReturnDeferredFreesIfAny() {
  if (__builtin_expect(HasDeferredFrees(), 0)) ReturnDeferredFrees();
}

// Every per-CPU id's cache, this thread's cache and the transfer caches
// go down to the spans; free pages go back to the OS. Caller is inside an
// AllocatorSection.
void ReturnCachedMemory() {
  g_cpu_cache.DrainAll();
  if (ThreadCache* cache = ThreadCache::Current()) cache->Flush();
  ReleaseFreeMemory();
}

// allocate(), and once more after ReturnCachedMemory when it found no
// memory: objects cached above the page heap may make whole spans free,
// whose pages serve the request (and, under an address-space limit, which
// the page heap unmaps to make room: PageHeap::UnmapFree). nullptr only
// when both failed. Caller is inside an AllocatorSection.
template <typename Allocate>
void* RetryAfterReturningCachedMemory(Allocate allocate) {
  if (void* p = allocate()) return p;
  ReturnCachedMemory();
  return allocate();
}

// One object of class cls from below the empty front-end cache: the
// per-CPU refill, this thread's cache, or the central heap directly;
// nullptr when memory ran out. Caller is inside an AllocatorSection.
void* AllocateSmallBelowCache(uint32_t cls) {
  void* p = nullptr;
  if (MayShareTlsWithChild()) return RemoveBatch(cls, &p, 1) == 1 ? p : nullptr;
  // Per-CPU refill; nullptr when this thread cannot use rseq (or when out
  // of memory, which the thread-cache path below finds out again).
  if (g_per_cpu && (p = g_cpu_cache.Refill(cls)) != nullptr) return p;
  if (UsesThreadCaches()) {
    if (ThreadCache* cache = ThreadCache::Current()) {
      p = cache->PopInside(cls);  // the quick pop may have seen the empty cache
      return p != nullptr ? p : cache->Refill(cls);
    }
  }
  // No cache: RSEQMALLOC_CACHE=none, or this thread is setting up or gone.
  return RemoveBatch(cls, &p, 1) == 1 ? p : nullptr;
}

}  // namespace

void ReturnToCentralSorting(uint32_t cls, void* const* objects, int n) {
  constexpr int kChunk = 64;
  void* ours[kChunk];
  int kept = 0;
  for (int i = 0; i < n; ++i) {
    if (ReentrantFree(objects[i])) continue;
    ours[kept++] = objects[i];
    if (kept == kChunk) {
      InsertBatch(cls, ours, kept);
      kept = 0;
    }
  }
  if (kept != 0) InsertBatch(cls, ours, kept);
}

void ReturnDeferredFrees() {
  AllocatorSection section;  // the central heap's locks
  void* node = TakeDeferredFrees();
  while (node != nullptr) {
    void* next = NextDeferred(node);
    uint32_t cls = DeferredClass(node);
    if (cls == kLargeClass) {
      FreeLarge(node);
    } else {
      ReturnToCentral(cls, &node, 1);
    }
    node = next;
  }
}

namespace {
// Everything AllocateSmallSlow does past the thread's own list; kept out of
// line so that a thread-mode hit (the common case in that mode) runs in a
// function with no stack frame of its own.
[[gnu::noinline]] void* AllocateSmallBelowThreadCache(uint32_t cls) noexcept {
  if (InsideAllocator()) return AllocateReentered(ClassToSize(cls), 16);
  // Before the section: initialisation registers hooks that may allocate.
  EnsureInitialized();
  ServeStatsRequestIfAny();
  AttendMaintenanceIfAsked();
  AllocatorSection section;
  ReturnDeferredFreesIfAny();
  void* p = RetryAfterReturningCachedMemory([cls] { return AllocateSmallBelowCache(cls); });
  return p != nullptr ? p : OutOfMemory();
}
}  // namespace

void* AllocateSmallSlow(uint32_t cls) noexcept {
  if (void* p = PopThreadCache(cls)) return p;
  return AllocateSmallBelowThreadCache(cls);
}

void* AllocateLargeSlow(size_t size, size_t align, bool* zeroed, bool grows) noexcept {
  // More than RAM + swap under the kernel's default overcommit heuristic:
  // refused whatever we free, so nothing is drained or unmapped first (a
  // program probing for the largest block it can get would otherwise
  // empty every cache at each probe).
  if (size > kMaxRequest || LargeRequestIsHopeless(size)) return OutOfMemory();
  if (InsideAllocator()) {
    if (zeroed != nullptr) *zeroed = true;  // a fresh mapping of its own
    return AllocateReentered(size, align);
  }
  EnsureInitialized();
  ServeStatsRequestIfAny();
  AttendMaintenanceIfAsked();
  // Inside: a signal handler's malloc must not wait for the page heap lock
  // this call may hold.
  AllocatorSection section;
  ReturnDeferredFreesIfAny();
  void* p = RetryAfterReturningCachedMemory(
      [=] { return AllocateLarge(size, align, zeroed, grows); });
  return p != nullptr ? p : OutOfMemory();
}

bool ResizeLargeBlock(void* p, size_t size, size_t room) {
  if (InsideAllocator() || size > kMaxRequest) return false;
  AllocatorSection section;
  return ResizeLargeInPlace(p, size, room);
}

void FreeSlow(void* p, uint32_t cls) noexcept {
  bool small = IsSmallClass(cls);
  if (!small) cls = ClassifyPointer(p);  // the raw byte: large, or not ours
  if (small && PushThreadCache(cls, p)) return;
  if (InsideAllocator()) return FreeReentered(p, cls);
  ServeStatsRequestIfAny();
  // No AttendMaintenanceIfAsked() here: glibc frees a dead thread's TLS
  // while holding the lock pthread_create takes (maintenance.h).
  AllocatorSection section;
  ReturnDeferredFreesIfAny();
  if (small) {
    if (MayShareTlsWithChild()) return ReturnToCentral(cls, &p, 1);
    // Per-CPU overflow; false when this thread cannot use rseq.
    if (g_per_cpu && g_cpu_cache.Overflow(cls, p)) return;
    if (UsesThreadCaches()) {
      if (ThreadCache* cache = ThreadCache::Current()) {
        if (!cache->PushInside(cls, p)) cache->Overflow(cls, p);
        return;
      }
    }
    ReturnToCentral(cls, &p, 1);
    return;
  }
  if (p == nullptr) return;
  if (cls == kLargeClass) return FreeLarge(p);
  if (ReentrantFree(p)) return;
  ReportInvalidPointer("free(): invalid pointer", p);
}

// Thread mode's frees all come here (the slab is never started): the
// thread's list first, with no stack frame, then FreeSlow.
void FreeSlowReclassified(void* p) noexcept {
  uint32_t cls;
  if (g_thread_caches && g_pagemap.FlatClassOf(reinterpret_cast<uintptr_t>(p), &cls) &&
      IsSmallClass(cls) && tls_thread_cache->Push(cls, p)) {
    return;
  }
  FreeSlow(p, RawClassOf(p));
}

void FreeWithLeafClass(void* p) noexcept { FreeWithClass(p, RawClassOf(p)); }

void* AllocateAligned(size_t size, size_t align) noexcept {
  uint32_t cls = ClassFor(size, align);
  if (cls != 0) return AllocateClass(cls);
  return AllocateLargeSlow(size, align < kPageSize ? kPageSize : align);
}

namespace {

// Every sized free under RSEQMALLOC_CHECK_SIZED_FREE, and null. A small
// block's size must name its class, or for free_sized (`resized`: realloc
// may have kept the block for it) be one realloc keeps the block for.
void FreeSizedChecked(void* p, size_t size, size_t align, bool resized = false) {
  uint32_t cls = ClassifyPointer(p);
  if (IsSmallClass(cls)) {
    bool matches = resized ? FitsInPlace(size, cls) : ClassFor(size, align) == cls;
    if (!matches) return ReportInvalidPointer("free_sized(): wrong size for pointer", p);
    return FreeSmall(p, cls);
  }
  if (cls == kLargeClass && (size > CheckedUsableSize(p) || ClassFor(size, align) != 0)) {
    // A large block whose size would have been served from a class, or
    // does not fit in it, cannot be the block the caller describes.
    return ReportInvalidPointer("free_sized(): wrong size for pointer", p);
  }
  FreeSlow(p, cls);
}

}  // namespace

const uint8_t* g_sized_free_classes = size_class_internal::kLookup.data();

void FreeSizedLibcChecked(void* p, size_t size) noexcept {
  FreeSizedChecked(p, size, 0, /*resized=*/true);
}

// A full class, a large block, a large alignment, null, or checking on.
void FreeSizedSlow(void* p, size_t size, size_t align) noexcept {
  if (g_check_sized_free || p == nullptr) return FreeSizedChecked(p, size, align);
  uint32_t cls = ClassFor(size, align);
  if (cls == 0) cls = ClassifyPointer(p);  // a large block: the pagemap knows
  FreeSlow(p, cls);
}

size_t CheckedUsableSize(const void* p) {
  if (p == nullptr) return 0;
  uint32_t cls = ClassifyPointer(p);
  if (IsSmallClass(cls)) return ClassToSize(cls);
  if (cls == kLargeClass) return UsableSize(p);
  if (size_t mapped = ReentrantUsableSize(p)) return mapped;
  ReportInvalidPointer("malloc_usable_size(): invalid pointer", p);
  return 0;
}

// A re-entrant block is never in the pagemap, so at most one side answers.
bool OwnsPointer(const void* p) { return IsObjectStart(p) || ReentrantUsableSize(p) != 0; }

void TrimCaches() {
  EnsureInitialized();
  AllocatorSection section;  // a signal handler's malloc must not wait for our locks
  ReturnCachedMemory();
}

void ReportInvalidPointer(const char* what, const void* p) {
  if (GetOptions().abort_on_invalid_free) CrashWithPointer(what, p);
  LogLine line;
  line.Str("rseqmalloc: ").Str(what).Str(" ").Ptr(p).Str(" (ignored)\n").Flush(STDERR_FILENO);
}

}  // namespace rseqmalloc::internal
