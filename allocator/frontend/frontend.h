// The allocator's entry points, called by allocator/api/.
//
// Call tree of allocation:
//   Allocate(size)
//     -> size <= kMaxSmallSize: SizeToClass, cache pop       (inline, here)
//          per-CPU slab pop (rseq, cpu_cache.h), or the thread's free list
//          -> miss: AllocateSmallSlow(cls)                   (frontend.cc, cold)
//               -> init on first call, register rseq for the thread, grow
//                  the class's capacity, refill a batch from the transfer
//                  cache (central_heap.h); thread cache without rseq
//     -> larger: AllocateLarge (page heap)                   (frontend.cc, cold)
// and of free:
//   Free(p) -> ClassifyPointer (pagemap) -> cache push       (inline, here)
//          -> full / not small / invalid: FreeSlow           (frontend.cc, cold)
//
// The fast path is valid in every state of the process and thread, because
// every state it cannot serve looks like a miss:
//  * before initialisation g_front_end is kThreadCache and the thread's
//    cache pointer designates a shared empty cache (no objects, capacity 0);
//    the same holds while a thread sets itself up, after it exited, and in
//    RSEQMALLOC_CACHE=none;
//  * in per-CPU modes, a thread without a registered rseq area reads a
//    negative id, and an id's untouched (or drained) class header is 0, so
//    the rseq pop misses and the push overflows;
// and the slow path sorts out which of those cases it is. g_front_end is
// written once, at initialisation, so its branch is always predicted.
#ifndef RSEQMALLOC_ALLOCATOR_FRONTEND_FRONTEND_H_
#define RSEQMALLOC_ALLOCATOR_FRONTEND_FRONTEND_H_

#include <cstddef>
#include <cstdint>

#include "allocator/central_heap.h"
#include "allocator/frontend/cpu_cache.h"
#include "allocator/frontend/thread_cache.h"
#include "allocator/size_classes.h"

namespace rseqmalloc::internal {

// `fast_id`: what the per-CPU fast path reported (0 in thread mode).
[[gnu::noinline, gnu::cold]] void* AllocateSmallSlow(uint32_t cls, int fast_id);
// *zeroed (when not null): whether the block is known to read as zero.
[[gnu::noinline, gnu::cold]] void* AllocateLargeSlow(size_t size, size_t align,
                                                     bool* zeroed = nullptr);
[[gnu::noinline, gnu::cold]] void FreeSlow(void* p, uint32_t cls, int fast_id);

enum class FrontEnd : uint8_t { kThreadCache, kCpuId, kMmCid };
extern FrontEnd g_front_end;

[[gnu::always_inline]] inline void* AllocateClass(uint32_t cls) {
  void* p;
  int id = 0;
  if (g_front_end == FrontEnd::kMmCid) {
    p = CpuCache::Pop<rseq::IndexMode::kMmCid>(cls, &id);
  } else if (g_front_end == FrontEnd::kCpuId) {
    p = CpuCache::Pop<rseq::IndexMode::kCpuId>(cls, &id);
  } else {
    p = tls_thread_cache->Pop(cls);
  }
  if (__builtin_expect(p != nullptr, 1)) return p;
  return AllocateSmallSlow(cls, id);
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

// `align` is a power of two. nullptr with errno = ENOMEM on failure.
void* AllocateAligned(size_t size, size_t align);

[[gnu::always_inline]] inline void FreeSmall(void* p, uint32_t cls) {
  bool done;
  int id = 0;
  if (g_front_end == FrontEnd::kMmCid) {
    done = CpuCache::Push<rseq::IndexMode::kMmCid>(cls, p, &id);
  } else if (g_front_end == FrontEnd::kCpuId) {
    done = CpuCache::Push<rseq::IndexMode::kCpuId>(cls, p, &id);
  } else {
    done = tls_thread_cache->Push(cls, p);
  }
  if (__builtin_expect(done, 1)) return;
  FreeSlow(p, cls, id);
}

// Any pointer: null is a no-op; a pointer we do not own is reported.
[[gnu::always_inline]] inline void Free(void* p) {
  uint32_t cls = ClassifyPointer(p);
  if (__builtin_expect(cls - 1 < kNumClasses - 1, 1)) return FreeSmall(p, cls);
  FreeSlow(p, cls, 0);
}

[[gnu::noinline, gnu::cold]] void FreeSizedChecked(void* p, size_t size, size_t align);
extern bool g_check_sized_free;

// free_sized / sized delete: `size` is what was asked for. The class comes
// from the size alone, with no pagemap lookup (a wrong size is the caller's
// undefined behaviour, as in tcmalloc); RSEQMALLOC_CHECK_SIZED_FREE=1 checks
// it against the pagemap instead and reports a mismatch.
inline void FreeSized(void* p, size_t size, size_t align) {
  if (__builtin_expect(p != nullptr && !g_check_sized_free, 1)) {
    uint32_t cls = ClassFor(size, align);
    if (__builtin_expect(cls != 0, 1)) return FreeSmall(p, cls);
  }
  FreeSizedChecked(p, size, align);
}

// Gives the central heap what re-entered frees deferred (reentrant_blocks.h).
// Not to be called re-entered.
void ReturnDeferredFrees();

// Resizes a large block in place (central_heap.h); false when it cannot, and
// always when this call interrupted the allocator (the page heap's lock may
// be held below us).
bool ResizeLargeBlock(void* p, size_t size);

// Bytes usable at p (0 for null); aborts on a pointer we do not own.
size_t CheckedUsableSize(const void* p);

// "rseqmalloc: <what> <p>": aborts, or with RSEQMALLOC_ABORT_ON_INVALID_FREE=0
// prints the line with " (ignored)" and returns.
void ReportInvalidPointer(const char* what, const void* p);

// Mode actually in use by the calling thread: "cpu", "cid", "thread", "none".
const char* ActiveModeName();

// Starts the allocator if nothing did yet (also called before main).
void EnsureInitialized();

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_FRONTEND_FRONTEND_H_
