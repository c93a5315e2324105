// Making sure the calling thread has a registered rseq area.
//
// glibc >= 2.35 registers an area in every thread's TCB and says where through
// the weak symbols __rseq_offset / __rseq_size (read once, never via dlsym,
// which allocates). When glibc did not register (older glibc, static libc
// without support, GLIBC_TUNABLES=glibc.pthread.rseq=0) we register our own
// initial-exec TLS area with the standard signature. When the syscall fails
// (seccomp, valgrind, qemu-user, kernel < 4.18) the thread is "unavailable"
// and callers use their fallback.
//
// The choice between glibc's area and ours is made once per process: glibc
// either registers every thread or none, so one offset serves all threads.

#ifndef RSEQ_REGISTRATION_H_
#define RSEQ_REGISTRATION_H_

#include <cstdint>

#include "rseq/restarts.h"  // RestartCount(): aborts seen by the primitives

namespace rseqmalloc::rseq {

enum class Registration {
  kGlibc,        // glibc's area, registered by glibc
  kOwn,          // our area, registered by RegisterCurrentThread()
  kUnavailable,  // no usable area for this thread
};

// Registers the calling thread's area if needed and reports the outcome.
// Never allocates, preserves errno, async-signal-safe, safe before main and
// in any thread; costs a few loads when already done (or already failed: a
// failed thread is not retried).
Registration RegisterCurrentThread();

// What the calling thread has now, without registering.
Registration CurrentRegistration();

// True when the kernel maintains mm_cid / node_id in the area
// (getauxval(AT_RSEQ_FEATURE_SIZE) >= 28 / >= 24). IndexMode::kMmCid must
// only be used when MmCidSupported(): older kernels leave mm_cid at 0 in
// every thread, and threads on different CPUs would share slot 0.
bool MmCidSupported();
bool NodeIdSupported();

// Tasks that share a thread's TLS without being that thread: a vfork()
// child, or a clone(CLONE_VM) child without CLONE_SETTLS. The kernel
// registers rseq for no such task, yet it reads the thread's area, whose ids
// are stale for it: a "critical section" it runs is not protected, on a
// per-CPU slab another thread may be using.
//
// MarkAreaUnavailable(), called in such a child, stores
// kCpuIdRegistrationFailed in the area's cpu_id: every section then fails
// before touching data, and RegisterCurrentThread() answers kUnavailable
// without a system call. It is the one write to cpu_id this library makes,
// and it is made by a task the kernel does not know the area for; the
// thread that owns it is suspended (vfork) or waiting for the child.
// RestoreArea(saved), called in the thread once the child is gone, puts
// back the cpu_id read before the child started (AreaCpuId()), unless the
// kernel rewrote the ids meanwhile (then it leaves them): a compare-and-
// exchange on the field, so a kernel update racing with it wins. Both are
// async-signal-safe.
std::int32_t AreaCpuId();
void MarkAreaUnavailable();
void RestoreArea(std::int32_t saved_cpu_id);
// For a clone(CLONE_VM) child without CLONE_VFORK the thread keeps running,
// and the kernel rewrites the shared area with the thread's fresh ids at
// its next preemption, which the child would then read as its own.
// SuspendArea() unregisters the thread's area (the kernel then writes it no
// more) and marks it like MarkAreaUnavailable(); false when the area was
// not registered or the kernel refused (the caller then relies on the
// child's mark alone). ResumeArea() registers it again once the child is
// gone; the kernel writes fresh ids before the thread returns to user
// space. Both preserve errno.
bool SuspendArea();
void ResumeArea();

}  // namespace rseqmalloc::rseq

#endif  // RSEQ_REGISTRATION_H_
