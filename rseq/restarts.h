// Restart accounting. Every abort of an rseq critical section (the kernel
// preempted, migrated or signalled the thread inside it) is counted here by
// the retry loops in primitives.h, so tests can prove restarts happened and
// the allocator can report them.

#ifndef RSEQ_RESTARTS_H_
#define RSEQ_RESTARTS_H_

#include <cstdint>

namespace rseqmalloc::rseq {

// Aborts observed by all threads since the process started.
std::uint64_t RestartCount();

// Aborts observed by the calling thread.
std::uint64_t ThreadRestartCount();

namespace internal {

// Called on the (rare) abort path only; async-signal-safe.
void NoteRestart();

// The counters behind RestartCount() / ThreadRestartCount(), for abort
// handlers written in assembly.
extern "C" __attribute__((visibility("hidden"))) std::uint64_t rseqmalloc_rseq_restarts;
extern "C" __attribute__((visibility("hidden"))) __thread std::uint64_t
    rseqmalloc_rseq_thread_restarts;

// Spin iterations that the delay-injecting critical sections execute between
// reading the id and committing (tests only; see RseqOpsWithDelay).
extern "C" __attribute__((visibility("hidden")))
std::uint32_t rseqmalloc_rseq_delay_spins;

inline void SetInjectedDelaySpins(std::uint32_t spins) {
  __atomic_store_n(&rseqmalloc_rseq_delay_spins, spins, __ATOMIC_RELAXED);
}

}  // namespace internal
}  // namespace rseqmalloc::rseq

#endif  // RSEQ_RESTARTS_H_
