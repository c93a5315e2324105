#include "rseq/registration.h"

#include <errno.h>
#include <sys/auxv.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "rseq/abi.h"
#include "rseq/ids.h"

#ifndef AT_RSEQ_FEATURE_SIZE
#define AT_RSEQ_FEATURE_SIZE 27  // <elf.h> gained it after glibc 2.36
#endif

// glibc >= 2.35 exports these; weak so that we link against any libc. A null
// address means this libc has no rseq support at all.
extern "C" {
extern const std::ptrdiff_t __rseq_offset __attribute__((weak));
extern const unsigned int __rseq_size __attribute__((weak));
extern const unsigned int __rseq_flags __attribute__((weak));
}

extern "C" {
// Our own area. Its TLS image holds cpu_id = -1 and mm_cid = ~0, so an
// unregistered thread reads negative ids through ids.h and misses.
alignas(32) __attribute__((visibility("hidden"), tls_model("initial-exec")))
__thread rseqmalloc::rseq::Rseq rseqmalloc_own_rseq_area = {
    0, rseqmalloc::rseq::kCpuIdUninitialized, 0, 0, 0, ~0u};

alignas(32) __attribute__((visibility("hidden"), tls_model("initial-exec")))
__thread rseqmalloc::rseq::Rseq rseqmalloc_never_registered_area = {
    0, rseqmalloc::rseq::kCpuIdUninitialized, 0, 0, ~0u, ~0u};

// See ids.h: 0 selects the own area.
__attribute__((visibility("hidden"))) std::ptrdiff_t
    rseqmalloc_rseq_area_delta = 0;
}

namespace rseqmalloc::rseq {
namespace {

enum Mode : int { kUndecided = 0, kModeGlibc = 1, kModeOwn = 2 };

std::atomic<int> g_mode{kUndecided};

// Racing first callers compute the same answer, so no lock is needed; the
// offset is stored before the mode is published.
__attribute__((noinline)) int DecideMode() {
  int mode = kModeOwn;
  if (&__rseq_size != nullptr && &__rseq_offset != nullptr &&
      __rseq_size > 0) {
    // glibc registered the main thread; it does so for every thread it
    // creates, and its area is at __rseq_offset from the thread pointer.
    __atomic_store_n(&rseqmalloc_rseq_area_delta,
                     __rseq_offset - internal::OwnAreaOffset(),
                     __ATOMIC_RELAXED);
    mode = kModeGlibc;
  }
  g_mode.store(mode, std::memory_order_release);
  return mode;
}

inline int EnsureMode() {
  int mode = g_mode.load(std::memory_order_acquire);
  return mode != kUndecided ? mode : DecideMode();
}

inline std::int32_t ReadCpuId(const Rseq* area) {
  return __atomic_load_n(&area->cpu_id, __ATOMIC_RELAXED);
}

Registration RegisterOwnArea() {
  Rseq* area = &rseqmalloc_own_rseq_area;
  std::int32_t cpu = ReadCpuId(area);
  if (cpu >= 0) return Registration::kOwn;
  if (cpu == kCpuIdRegistrationFailed) return Registration::kUnavailable;

  int saved_errno = errno;
  long rc = syscall(SYS_rseq, area, kRseqAreaSize, 0, kSignature);
  int err = errno;
  errno = saved_errno;
  // The kernel fills cpu_id before returning to user space.
  if (rc == 0) return Registration::kOwn;
  // EBUSY with a valid cpu_id: a signal handler registered us meanwhile.
  if (rc != 0 && err == EBUSY && ReadCpuId(area) >= 0) {
    return Registration::kOwn;
  }
  // Only now that we know the kernel does not own the area may we write it.
  __atomic_store_n(&area->cpu_id, kCpuIdRegistrationFailed, __ATOMIC_RELAXED);
  return Registration::kUnavailable;
}

// Sets the mode as early as possible so that plain id readers are right
// without anyone calling RegisterCurrentThread(); correctness does not
// depend on it (see ids.h).
__attribute__((constructor(101))) void InitAtLoad() {
  EnsureMode();
  RegisterCurrentThread();
}

unsigned long FeatureSize() {
  static std::atomic<unsigned long> cached{~0ul};
  unsigned long size = cached.load(std::memory_order_relaxed);
  if (size == ~0ul) {
    size = getauxval(AT_RSEQ_FEATURE_SIZE);  // 0 on kernels < 6.3
    cached.store(size, std::memory_order_relaxed);
  }
  return size;
}

}  // namespace

Registration RegisterCurrentThread() {
  if (EnsureMode() == kModeGlibc) {
    // glibc already tried for this thread; a failure is final (one area per
    // thread, and glibc's is the one the kernel may hold).
    return ReadCpuId(internal::ThreadArea()) >= 0 ? Registration::kGlibc
                                                  : Registration::kUnavailable;
  }
  return RegisterOwnArea();
}

Registration CurrentRegistration() {
  int mode = EnsureMode();
  if (ReadCpuId(internal::ThreadArea()) < 0) return Registration::kUnavailable;
  return mode == kModeGlibc ? Registration::kGlibc : Registration::kOwn;
}

std::int32_t AreaCpuId() { return ReadCpuId(internal::ThreadArea()); }

void MarkAreaUnavailable() {
  __atomic_store_n(&internal::ThreadArea()->cpu_id, kCpuIdRegistrationFailed, __ATOMIC_RELAXED);
}

void RestoreArea(std::int32_t saved_cpu_id) {
  std::int32_t expected = kCpuIdRegistrationFailed;
  __atomic_compare_exchange_n(&internal::ThreadArea()->cpu_id, &expected, saved_cpu_id,
                              false, __ATOMIC_RELAXED, __ATOMIC_RELAXED);
}

bool SuspendArea() {
  Rseq* area = internal::ThreadArea();
  if (ReadCpuId(area) < 0) return false;
  int saved_errno = errno;
  // The same length and signature as the registration (glibc's and ours
  // are both 32 bytes and kSignature); the kernel refuses anything else.
  long rc = syscall(SYS_rseq, area, kRseqAreaSize, kRseqFlagUnregister, kSignature);
  errno = saved_errno;
  if (rc != 0) return false;
  __atomic_store_n(&area->cpu_id, kCpuIdRegistrationFailed, __ATOMIC_RELAXED);
  return true;
}

void ResumeArea() {
  int saved_errno = errno;
  syscall(SYS_rseq, internal::ThreadArea(), kRseqAreaSize, 0, kSignature);
  errno = saved_errno;
}

bool MmCidSupported() { return FeatureSize() >= kFeatureSizeMmCid; }

bool NodeIdSupported() { return FeatureSize() >= kFeatureSizeNodeId; }

}  // namespace rseqmalloc::rseq
