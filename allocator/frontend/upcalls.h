// What the front end tells the statistics layer above it (allocator/stats),
// which it may not depend on.
//
// The two functions are declared here and defined in allocator/stats
// (observer.cc): the dependency points down in the build graph and the link
// joins them, as every build of the library links both layers. The front end
// therefore names no statistics header, and the report, which reads every
// layer, can live above the front end.
//
// The request flag is the front end's own: a statistics signal that lands
// inside the allocator cannot print (it would wait for locks its thread may
// hold), so it raises the flag, and the thread's next slow path outside the
// allocator makes the upcall. A relaxed load per slow path, no call.
#ifndef RSEQMALLOC_ALLOCATOR_FRONTEND_UPCALLS_H_
#define RSEQMALLOC_ALLOCATOR_FRONTEND_UPCALLS_H_

#include <atomic>

#include "allocator/config/options.h"

namespace rseqmalloc::internal {

// Once, when the allocator has started and may allocate (atexit, sigaction).
void StatsAfterStart(const Options& options);

// Work the statistics layer asked for while the allocator was busy. Called
// outside the allocator (depth 0), holding no lock.
void StatsOnRequest();

extern std::atomic<bool> g_stats_request;
inline void RequestStatsWork() { g_stats_request.store(true, std::memory_order_relaxed); }
inline void ServeStatsRequestIfAny() {
  if (__builtin_expect(g_stats_request.load(std::memory_order_relaxed), 0) &&
      g_stats_request.exchange(false, std::memory_order_relaxed)) {
    StatsOnRequest();
  }
}

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_FRONTEND_UPCALLS_H_
