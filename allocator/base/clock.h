// Monotonic time in nanoseconds, without allocating: the page heap's release
// stamps, the maintenance thread's sleeps and the per-CPU idle scan.
#ifndef RSEQMALLOC_ALLOCATOR_BASE_CLOCK_H_
#define RSEQMALLOC_ALLOCATOR_BASE_CLOCK_H_

#include <time.h>

#include <cstdint>

namespace rseqmalloc::internal {

inline uint64_t ClockNs(clockid_t clock) {
  timespec ts;
  clock_gettime(clock, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1'000'000'000 + static_cast<uint64_t>(ts.tv_nsec);
}

// A vDSO read of a few nanoseconds; resolution of a scheduler tick, ample
// for periods and delays of a second or more.
inline uint64_t CoarseMonotonicNs() { return ClockNs(CLOCK_MONOTONIC_COARSE); }

// Exact: the clock FUTEX_WAIT_BITSET's absolute timeouts use.
inline uint64_t MonotonicNs() { return ClockNs(CLOCK_MONOTONIC); }

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_BASE_CLOCK_H_
