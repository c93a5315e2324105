// RSEQMALLOC_STATS_SIGNAL: print the statistics report on demand.
//
// A handler cannot build the report itself: the signal may arrive while its
// thread holds an allocator lock (the report takes them all). So the handler
// only posts a semaphore (async-signal-safe), and a reporter thread, started
// only when the variable is set, waits on it and prints the report to
// stderr. The thread is not re-created in a child after fork() without exec.
#ifndef RSEQMALLOC_ALLOCATOR_FRONTEND_STATS_SIGNAL_H_
#define RSEQMALLOC_ALLOCATOR_FRONTEND_STATS_SIGNAL_H_

namespace rseqmalloc::internal {

// Installs the handler and starts the reporter thread. Call once, with the
// allocator ready (pthread_create allocates). False (with a message) when
// the signal or the thread cannot be set up.
bool InstallStatsSignal(int signal_number);

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_FRONTEND_STATS_SIGNAL_H_
