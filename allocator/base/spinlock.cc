#include "allocator/base/spinlock.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace rseqmalloc::internal {
namespace {

// Short spins win when the holder is running on the other core; beyond this
// the holder was probably preempted and sleeping is cheaper.
constexpr int kSpinIterations = 100;

inline void CpuRelax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

}  // namespace

void SpinLock::SlowLock() {
  contended_.fetch_add(1, std::memory_order_relaxed);
  for (int i = 0; i < kSpinIterations; ++i) {
    if (state_.load(std::memory_order_relaxed) == 0) {
      uint32_t expected = 0;
      if (state_.compare_exchange_weak(expected, 1, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
        return;
      }
    }
    CpuRelax();
  }
  // Mark the lock contended (2) before sleeping so the holder's Unlock wakes
  // us; whoever takes it from here on also leaves 2, which costs at worst one
  // spurious wake.
  while (state_.exchange(2, std::memory_order_acquire) != 0) {
    syscall(SYS_futex, reinterpret_cast<uint32_t*>(&state_), FUTEX_WAIT_PRIVATE, 2, nullptr,
            nullptr, 0);
  }
}

void SpinLock::Wake() {
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&state_), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr,
          0);
}

}  // namespace rseqmalloc::internal
