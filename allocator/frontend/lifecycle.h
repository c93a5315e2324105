// The allocator's life: start-up (mode resolution, the slab, the one-time
// hooks), fork, and what start-up decided, which the slow paths read.
//
// Start-up happens on the first slow path of any thread (or before main,
// whichever comes first); every slow path calls EnsureInitialized, which
// after the first time is one acquire load. Thread exit belongs to the
// caches that hold per-thread state (thread_cache.cc).
//
// fork: the pthread_atfork handlers take every lock of every layer, in the
// central heap's lock order, below the front end's own, so the child finds
// each structure whole; see PrepareFork in lifecycle.cc for a fork called
// from a signal handler.
#ifndef RSEQMALLOC_ALLOCATOR_FRONTEND_LIFECYCLE_H_
#define RSEQMALLOC_ALLOCATOR_FRONTEND_LIFECYCLE_H_

#include <atomic>

#include "allocator/config/options.h"

namespace rseqmalloc::internal {

// Starts the allocator if nothing did yet (also called before main).
void EnsureInitialized();

// Set once by start-up, read by the slow paths: which of them serves this
// process.
extern bool g_per_cpu;        // cpu or cid
extern bool g_thread_caches;  // thread mode
extern std::atomic<CacheMode> g_mode;
inline bool UsesThreadCaches() { return g_mode.load(std::memory_order_relaxed) != CacheMode::kNone; }

// Whether sized frees are checked against the pagemap (and, until start-up,
// that they are: nothing can have been allocated yet).
extern bool g_check_sized_free;

// The pthread_atfork handlers start-up registers. Declared for
// tests/faults/nested_fork_test, which calls them around a signal handler's
// fork to place it where a real signal lands once in a while.
void PrepareFork();
void AfterForkParent();
void AfterForkChild();

// Mode actually in use by the calling thread: "cpu", "cid", "thread", "none".
const char* ActiveModeName();

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_FRONTEND_LIFECYCLE_H_
