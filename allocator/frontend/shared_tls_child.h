// Children that run on this thread's TLS: vfork() children, and clone()
// children with CLONE_VM but without CLONE_SETTLS.
//
// Such a child shares the thread's memory and thread-local storage, and the
// kernel registers no rseq area for it. Through the shared TLS it would read
// the thread's ids, stale for it, and run per-CPU critical sections with no
// protection on a slab another thread may be using at that moment (100
// vforks that allocated once handed out 483k blocks twice). So the library
// exports its own vfork() and clone(), which mark the child:
//
//  * before the child starts, the thread saves its area's cpu_id and points
//    tls_shared_tls_child at a word that stays non-zero while the child may
//    run (a constant for vfork and CLONE_VFORK, whose parent is suspended
//    until the child execs or exits; otherwise the clear-tid word the kernel
//    zeroes when the child is gone);
//  * the child's first act is rseq::MarkAreaUnavailable(): its fast paths
//    miss, and its slow paths, seeing the word set, go straight to the
//    transfer caches, which lock (no per-CPU slab, no thread cache);
//  * the thread restores its cpu_id when the child is gone: at once for
//    vfork and CLONE_VFORK, else on its first slow path after the word was
//    cleared (until then its own calls take the same shared path).
//
// Nothing is added to the fast paths. What is not covered (docs/reliability.md):
// a raw syscall(SYS_vfork / SYS_clone), which bypasses the exported
// functions; and a CLONE_VM child without CLONE_VFORK while the parent
// thread keeps running, which shares every thread-local cache of any
// allocator (glibc's included) and is only safe while the parent waits.
#ifndef RSEQMALLOC_ALLOCATOR_FRONTEND_SHARED_TLS_CHILD_H_
#define RSEQMALLOC_ALLOCATOR_FRONTEND_SHARED_TLS_CHILD_H_

#include <sys/types.h>

namespace rseqmalloc::internal {

extern __thread const volatile int* tls_shared_tls_child __attribute__((tls_model("initial-exec")));

// For every slow path: true when a child may be running on this TLS, and
// the call must use the shared layers only. Once the child is gone it
// restores the thread's area and returns false.
bool SharedTlsChildRunning();
inline bool MayShareTlsWithChild() {
  return __builtin_expect(tls_shared_tls_child != nullptr, 0) && SharedTlsChildRunning();
}

// The exported vfork (an assembly stub: the child returns on the parent's
// stack, so no C frame may be live across the system call) and clone.
extern "C" pid_t rseqmalloc_vfork();
int CloneMarkingSharedTls(int (*fn)(void*), void* stack, int flags, void* arg, pid_t* parent_tid,
                          void* tls, pid_t* child_tid);

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_FRONTEND_SHARED_TLS_CHILD_H_
