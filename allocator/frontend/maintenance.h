// The maintenance thread: the work no allocation call should pay for and
// that must happen even when the program stops calling the allocator.
//
// Each pass (at most every kPassNs while there is something to do):
//   * the page heap's timed release: free pages unused for the release
//     delay go back to the OS (page_heap.h);
//   * per-CPU caches: classes that went cold give capacity and objects back
//     (CpuCache::MaintainAll), ids with no slow-path activity for a period
//     are drained to the transfer caches;
//   * transfer caches give back what no CPU took all through the last pass
//     (their low-water mark), so an idle program's caches empty in two
//     passes and their slabs reach the page heap.
// Between passes the thread sleeps on a futex until the earlier of the
// next pass (only while caches hold objects) and the page heap's next
// release deadline; with neither it sleeps until the page heap gets a
// deadline again (a free after an idle spell wakes it).
//
// When it starts: lazily, from the prologue of an allocation's slow path
// outside the allocator (pthread_create allocates), once the page heap has
// pages waiting for their delay and the process already has a second
// thread. Never from free(): an exiting thread's glibc frees a dead
// thread's TLS while it holds the stack-cache lock that pthread_create
// takes (nptl-stack.c), so a start there deadlocks that thread and every
// later pthread_create (tests/lifecycle:maintenance_start_test). No glibc
// path allocates under that lock.
// A single-threaded process never gets one: a thread of ours would make
// unshare(CLONE_NEWUSER) fail and every stdio call take locks; such a
// process sweeps in its own allocator calls instead. Never with
// RSEQMALLOC_CACHE=none or RSEQMALLOC_BACKGROUND_THREAD=0.
//
// The thread is detached, blocks every signal, never allocates through
// malloc, and holds no lock while it sleeps, so it neither delays exit nor
// deadlocks fork. A fork child has no such thread; it starts its own when
// it needs one, under the same rule. It never keeps a process alive: when
// the main thread leaves through pthread_exit the thread returns and is not
// started again, and a clone() child (no CLONE_VM, no atfork handlers, whose
// first thread ends with the exit system call alone) never starts one.
#ifndef RSEQMALLOC_ALLOCATOR_FRONTEND_MAINTENANCE_H_
#define RSEQMALLOC_ALLOCATOR_FRONTEND_MAINTENANCE_H_

#include <atomic>
#include <cstdint>

namespace rseqmalloc::internal {

// Called once at initialisation; `allowed` says whether this process may
// ever start the thread (options and cache mode).
void ConfigureMaintenance(bool allowed);

// Non-zero while the thread may be needed and is not running.
extern std::atomic<uint8_t> g_maintenance_attention;

// Starts the thread if it is due. Call from an allocation's slow path only
// (never free: see above), outside the allocator (depth 0), holding no
// allocator lock: pthread_create calls malloc.
void AttendMaintenance();
inline void AttendMaintenanceIfAsked() {
  if (__builtin_expect(g_maintenance_attention.load(std::memory_order_relaxed) != 0, 0)) {
    AttendMaintenance();
  }
}

// pthread_atfork child handler: the thread did not survive the fork.
void MaintenanceAfterForkChild();

// Once, after initialisation, outside the allocator (it may run glibc's
// pthread_key_create): if this is the main thread, its pthread_exit will
// stop the thread for good (a process whose main thread left ends with its
// last program thread, which a thread of ours would prevent).
void WatchMainThreadForMaintenance();

struct MaintenanceStats {
  bool running;
  uint64_t wakeups;         // returns from sleep
  uint64_t passes;          // cache passes run
  uint64_t released_bytes;  // pages it returned to the OS
  // Of released_bytes, the pages of free objects in partly used slabs
  // (central_heap.h).
  uint64_t inside_released_bytes;
  uint64_t transfer_objects_returned;
  uint64_t ids_drained;
};
MaintenanceStats GetMaintenanceStats();

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_FRONTEND_MAINTENANCE_H_
