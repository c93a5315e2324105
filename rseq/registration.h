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

#include "rseq/restarts.h"  // RestartCount(): aborts seen by the primitives

namespace rseq {

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

}  // namespace rseq

#endif  // RSEQ_REGISTRATION_H_
