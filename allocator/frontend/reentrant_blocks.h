// How a re-entered call (reentry.h) is served without taking a lock.
//
// Allocation: every block is a mapping of its own, registered in a fixed
// table whose slots are claimed by compare-and-swap. The pagemap does not
// know these blocks, so free(), realloc() and malloc_usable_size() look them
// up here before calling a pointer invalid. Whole pages and a system call
// each way: this path serves signal handlers that land inside the
// allocator, which is rare, and its only job is never to wait.
//
// Free: an object of ours that cannot go into a cache without a lock is
// pushed onto a global lock-free stack, threaded through the objects, and the
// next slow path of any thread that is not re-entered hands the whole stack
// back (frontend.cc). Only push and take-everything exist, so the stack has
// no ABA problem.
//
// A re-entrant block may also leave through a sized free, which trusts the
// size and files it in a size-class cache; it is then a valid object of that
// class (it is at least the class size) for as long as the front end holds
// it, but it belongs to no span, so it must never reach the central heap:
// every object the front end hands down passes ReturnToCentral
// (to_central.h), which unmaps these blocks instead. The central layers
// know nothing of re-entry.
#ifndef RSEQMALLOC_ALLOCATOR_FRONTEND_REENTRANT_BLOCKS_H_
#define RSEQMALLOC_ALLOCATOR_FRONTEND_REENTRANT_BLOCKS_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace rseqmalloc::internal {

// Slots in the table: blocks live at once on the re-entrant path.
inline constexpr int kMaxReentrantBlocks = 1024;

// A fresh zeroed mapping of at least `size` bytes aligned to `align` (a power
// of two); nullptr when the table is full, the size is impossible or the
// kernel refuses (the caller sets errno).
void* ReentrantAllocate(size_t size, size_t align);

// Unmaps p if it is a live re-entrant block and returns true; false otherwise.
bool ReentrantFree(void* p);

// The mapped length of a live re-entrant block, 0 for any other pointer.
size_t ReentrantUsableSize(const void* p);

// Pushes an object of ours (class `cls`, or the large class) for later return.
void DeferFree(void* p, uint32_t cls);

// Takes every deferred object; walk with NextDeferred / DeferredClass.
void* TakeDeferredFrees();
void* NextDeferred(void* node);
uint32_t DeferredClass(void* node);

extern std::atomic<void*> g_deferred_frees;
extern std::atomic<int> g_live_reentrant_blocks;
inline bool AnyLiveReentrantBlocks() {
  return g_live_reentrant_blocks.load(std::memory_order_acquire) != 0;
}
inline bool HasDeferredFrees() {
  return g_deferred_frees.load(std::memory_order_relaxed) != nullptr;
}

struct ReentrantStats {
  uint64_t blocks_mapped;  // ever
  uint64_t live_blocks;
  uint64_t live_bytes;
  uint64_t frees_deferred;  // ever
  uint64_t refused;         // allocations refused (table full or no memory)
};
ReentrantStats GetReentrantStats();

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_FRONTEND_REENTRANT_BLOCKS_H_
