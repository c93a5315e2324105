// RSEQMALLOC_STATS_SIGNAL: print the statistics report on demand, with no
// thread of ours.
//
// The report takes every allocator lock, so the handler builds it only when
// the signal did not interrupt its own thread inside the allocator
// (reentry.h): then the thread holds none of those locks and may wait for
// them like any caller. When it did, the handler only asks the front end
// for a call back (upcalls.h), and the thread's next slow path outside the
// allocator prints it.
//
// Why not a reporter thread (as until 2026-11-30): a thread started at the
// first malloc made every process multi-threaded, and programs that must
// stay single-threaded (unshare(CLONE_NEWUSER), `unshare -U`) failed as soon
// as the variable was set, in every child too.
#ifndef RSEQMALLOC_ALLOCATOR_STATS_STATS_SIGNAL_H_
#define RSEQMALLOC_ALLOCATOR_STATS_STATS_SIGNAL_H_

namespace rseqmalloc::internal {

// Installs the handler. Call once, with the allocator ready. False (with a
// message) when sigaction fails.
bool InstallStatsSignal(int signal_number);

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_STATS_STATS_SIGNAL_H_
