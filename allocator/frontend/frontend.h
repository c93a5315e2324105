// The allocator's entry points, called by allocator/api/.
//
// Call tree of allocation:
//   Allocate(size)
//     -> size <= kMaxSmallSize: SizeToClass, one rseq pop      (inline, here)
//          -> miss: AllocateSmallSlow(cls)                     (frontend.cc, cold)
//               -> init on first call; per-CPU refill (cpu_cache.h):
//                  register the thread's rseq area, grow the class, a
//                  batch from the transfer cache; or the thread's cache
//                  (thread mode, no rseq); or the transfer cache (none)
//     -> larger: AllocateLargeSlow (page heap)                 (frontend.cc, cold)
// and of free:
//   Free(p) -> ClassifyPointer (pagemap) -> one rseq push      (inline, here)
//          -> full / not small / invalid: FreeSlow             (frontend.cc, cold)
//
// The fast paths are the same in every mode and state: one rseq section of
// g_cpu_slab, whose hit falls through and whose miss jumps to the slow path.
// They are valid whatever the state, because every state they cannot serve
// makes the section miss:
//  * before initialisation, and in `thread` and `none` modes, the slab is
//    not started: its sections read an rseq area nobody registers, whose
//    cpu_id is negative;
//  * in per-CPU modes, a thread without a registered rseq area (or a vfork
//    child, shared_tls_child.h) reads a negative cpu_id too;
//  * a class with no capacity on the id has header 0 (pop finds the 0 below
//    the region, push finds current >= end);
// and the slow path sorts out which case it is. No test of the mode, no
// counter, no stack frame on a hit.
#ifndef RSEQMALLOC_ALLOCATOR_FRONTEND_FRONTEND_H_
#define RSEQMALLOC_ALLOCATOR_FRONTEND_FRONTEND_H_

#include <cstddef>
#include <cstdint>

#include "allocator/central/central_heap.h"
#include "allocator/frontend/lifecycle.h"
#include "allocator/frontend/cpu_cache.h"
#include "allocator/frontend/thread_cache.h"
#include "allocator/base/hidden.h"
#include "allocator/base/size_classes.h"

namespace rseqmalloc::internal {

[[gnu::noinline, gnu::cold]] void* AllocateSmallSlow(uint32_t cls) noexcept;
// *zeroed (when not null): whether the block is known to read as zero.
// grows: realloc moves the block because it grows (AllocateLarge).
[[gnu::noinline, gnu::cold]] void* AllocateLargeSlow(size_t size, size_t align,
                                                     bool* zeroed = nullptr,
                                                     bool grows = false) noexcept;
[[gnu::noinline, gnu::cold]] void FreeSlow(void* p, uint32_t cls) noexcept;

// One rseq pop; everything else -- a miss, a thread cache, no cache, not
// initialised -- is AllocateSmallSlow's.
[[gnu::always_inline]] inline void* AllocateClass(uint32_t cls) {
  return g_cpu_slab.Pop(cls, [cls]() __attribute__((always_inline)) {
    return AllocateSmallSlow(cls);
  });
}

// Returns a block of at least `size` bytes aligned to 16, or nullptr with
// errno = ENOMEM.
[[gnu::always_inline]] inline void* Allocate(size_t size) {
  if (__builtin_expect(size <= kMaxSmallSize, 1)) return AllocateClass(SizeToClass(size));
  return AllocateLargeSlow(size, kPageSize);
}

// The class an allocation of (size, align) is served from, 0 for the large
// path. Allocation and sized free both use it, so they always agree.
inline uint32_t ClassFor(size_t size, size_t align) {
  if (size > kMaxSmallSize) return 0;
  if (align <= 16) return SizeToClass(size);  // every class is 16-aligned
  return align <= 4096 ? SizeToClassAligned(size, align) : 0;
}

// Whether a block of class `cls` keeps `size` bytes in place on realloc: they
// fit, and they either map to the class or fill at least half of it (as
// glibc, gperftools and mimalloc do), so a buffer that grows or shrinks a
// little does not move at every class boundary. A block's class therefore
// says nothing exact about the size last asked for, which is why free_sized
// reads the pagemap (FreeSizedLibc).
inline bool FitsInPlace(size_t size, uint32_t cls) {
  size_t usable = ClassToSize(cls);
  return size <= usable && (2 * size >= usable || SizeToClass(size) == cls);
}

// `align` is a power of two. nullptr with errno = ENOMEM on failure.
void* AllocateAligned(size_t size, size_t align) noexcept;

// One rseq push; a full class and everything else go to FreeSlow.
[[gnu::always_inline]] inline void FreeSmall(void* p, uint32_t cls) {
  g_cpu_slab.Push(cls, p, [p, cls]() __attribute__((always_inline)) { FreeSlow(p, cls); });
}

// Any pointer: null is a no-op; a pointer we do not own is reported. The
// pagemap's raw class byte goes straight to the push: the values that are
// not small classes (0, kLargeClass, kNotOurs) have no capacity on any id
// (cpu_cache.cc), so their push fails and FreeSlow classifies the pointer.
//
// The miss looks the class up again rather than keep it alive across the
// section: the hit path then needs it in one register, not two. A pointer
// the pagemap's flat class array does not cover (all of them when the
// array could not be reserved, pagemap.h) takes the same push out of line,
// after the leaf lookup: a tail call, so the hit path saves no register.
[[gnu::noinline, gnu::cold]] void FreeSlowReclassified(void* p) noexcept;
[[gnu::always_inline]] inline void FreeWithClass(void* p, uint32_t cls) {
  g_cpu_slab.Push(cls, p, [p]() __attribute__((always_inline)) { FreeSlowReclassified(p); });
}
[[gnu::noinline]] void FreeWithLeafClass(void* p) noexcept;
[[gnu::always_inline]] inline void Free(void* p) {
  uint32_t cls;
  if (__builtin_expect(!g_pagemap.FlatClassOf(reinterpret_cast<uintptr_t>(p), &cls), 0)) {
    return FreeWithLeafClass(p);
  }
  FreeWithClass(p, cls);
}

// Sized delete: `size` is what operator new was asked for. The class comes
// from the size alone, with no pagemap lookup (a wrong size is the caller's
// undefined behaviour, as in tcmalloc), through g_sized_free_classes: the
// size-class table, or with RSEQMALLOC_CHECK_SIZED_FREE=1 a table of class
// 0, which no id ever has capacity for, so that every sized free goes to
// FreeSizedSlow and is checked against the pagemap there. Either way the
// fast path has no test of the mode.
extern RSEQMALLOC_HIDDEN const uint8_t* g_sized_free_classes;
[[gnu::noinline, gnu::cold]] void FreeSizedSlow(void* p, size_t size, size_t align) noexcept;

[[gnu::always_inline]] inline void FreeSized(void* p, size_t size) {
  if (__builtin_expect(p != nullptr && size <= kMaxSmallSize, 1)) {
    uint32_t cls = g_sized_free_classes[size_class_internal::LookupIndex(size)];
    return g_cpu_slab.Push(cls, p, [p, size]() __attribute__((always_inline)) {
      FreeSizedSlow(p, size, 0);
    });
  }
  FreeSizedSlow(p, size, 0);
}

// C23's free_sized: `size` is what malloc, calloc or realloc was last asked
// for, and realloc keeps a block for any size that fits it (FitsInPlace), so
// the class comes from the pagemap, as for free. With
// RSEQMALLOC_CHECK_SIZED_FREE=1 the size is checked against the block.
[[gnu::noinline, gnu::cold]] void FreeSizedLibcChecked(void* p, size_t size) noexcept;
[[gnu::always_inline]] inline void FreeSizedLibc(void* p, size_t size) {
  if (__builtin_expect(g_check_sized_free, 0)) return FreeSizedLibcChecked(p, size);
  Free(p);
}

// With an alignment (aligned sized delete, free_aligned_sized): the
// common alignments are the plain case; larger ones are rare.
[[gnu::always_inline]] inline void FreeSizedAligned(void* p, size_t size, size_t align) {
  if (__builtin_expect(align <= 16, 1)) return FreeSized(p, size);
  FreeSizedSlow(p, size, align);
}

// Gives the central heap what re-entered frees deferred (reentrant_blocks.h).
// Not to be called re-entered.
void ReturnDeferredFrees();

// Resizes a large block in place (central_heap.h); false when it cannot, and
// always when this call interrupted the allocator (the page heap's lock may
// be held below us).
bool ResizeLargeBlock(void* p, size_t size, size_t room = 0);

// Bytes usable at p (0 for null); aborts on a pointer we do not own.
size_t CheckedUsableSize(const void* p);

// rseqmalloc_owns: an object start of ours, or a block mapped for a signal
// handler.
bool OwnsPointer(const void* p);

// malloc_trim: returns cached memory of every layer to the OS. Per-CPU
// caches are drained remotely, the calling thread's cache is flushed (other
// threads' caches belong to them), then every free page is released.
void TrimCaches();

// "rseqmalloc: <what> <p>": aborts, or with RSEQMALLOC_ABORT_ON_INVALID_FREE=0
// prints the line with " (ignored)" and returns.
void ReportInvalidPointer(const char* what, const void* p);

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_FRONTEND_FRONTEND_H_
