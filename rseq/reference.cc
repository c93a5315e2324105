#include "rseq/reference.h"

#include <sched.h>

#include <atomic>
#include <cstdint>

#include "rseq/ids.h"
#include "rseq/registration.h"

namespace rseqmalloc::rseq {
namespace internal {
namespace {

// Striped: ids that share a stripe serialise, which costs speed only.
inline constexpr int kLockStripes = 256;

struct alignas(64) Spinlock {
  std::atomic<std::uint32_t> held{0};
};

Spinlock g_locks[kLockStripes];

inline Spinlock& LockFor(int id) {
  return g_locks[static_cast<unsigned>(id) % kLockStripes];
}

}  // namespace

void LockId(int id) {
  Spinlock& lock = LockFor(id);
  for (int spins = 0; lock.held.exchange(1, std::memory_order_acquire) != 0;) {
    // On an oversubscribed machine the holder is often preempted: spin a
    // little, then let it run.
    while (lock.held.load(std::memory_order_relaxed) != 0) {
      if (++spins < 64) {
        __builtin_ia32_pause();
      } else {
        spins = 0;
        sched_yield();
      }
    }
  }
}

void UnlockId(int id) { LockFor(id).held.store(0, std::memory_order_release); }

int ReferenceCpuId() {
  int id = CpuId();
  if (id >= 0) return id;
  id = sched_getcpu();
  return id >= 0 ? id : 0;
}

int ReferenceMmCid() {
  if (!MmCidSupported()) return 0;
  int id = MmCid();
  return id >= 0 ? id : 0;
}

}  // namespace internal
}  // namespace rseqmalloc::rseq
