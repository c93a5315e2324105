// A small futex-based lock for the central heap.
//
// Why not pthread_mutex: this lock must be usable before main and inside
// malloc itself, must be constant-initialised (so a zero-filled global is an
// unlocked lock), and must survive fork: the child of a forking thread that
// held every lock (LockAllForFork) simply unlocks them, which is valid here
// because the lock has no owner or waiter list, only a state word.
//
// States: 0 unlocked, 1 locked, 2 locked and a thread may sleep in futex.
// Acquire spins briefly (critical sections are short) and then sleeps.
//
// Holding any of these locks counts as being inside the allocator
// (reentry.h): a signal handler that interrupts the holder and calls malloc
// must not wait for the lock, so the depth is raised before the lock is
// taken and lowered after it is released.
#ifndef RSEQMALLOC_ALLOCATOR_SPINLOCK_H_
#define RSEQMALLOC_ALLOCATOR_SPINLOCK_H_

#include <atomic>
#include <cstdint>

#include "allocator/reentry.h"

namespace rseqmalloc::internal {

class SpinLock {
 public:
  constexpr SpinLock() = default;
  SpinLock(const SpinLock&) = delete;
  SpinLock& operator=(const SpinLock&) = delete;

  void Lock() {
    EnterAllocator();
    uint32_t expected = 0;
    if (__builtin_expect(state_.compare_exchange_strong(expected, 1, std::memory_order_acquire,
                                                        std::memory_order_relaxed),
                         1)) {
      return;
    }
    SlowLock();
  }

  bool TryLock() {
    EnterAllocator();
    uint32_t expected = 0;
    if (state_.compare_exchange_strong(expected, 1, std::memory_order_acquire,
                                       std::memory_order_relaxed)) {
      return true;
    }
    LeaveAllocator();
    return false;
  }

  void Unlock() {
    if (__builtin_expect(state_.exchange(0, std::memory_order_release) == 2, 0)) Wake();
    LeaveAllocator();
  }

  // For tests and assertions only: racy by nature.
  bool IsHeld() const { return state_.load(std::memory_order_relaxed) != 0; }

  // Acquisitions that found the lock held (counted on the slow path only,
  // so the uncontended Lock costs nothing more); for the statistics report.
  uint64_t contended() const { return contended_.load(std::memory_order_relaxed); }

 private:
  void SlowLock();
  void Wake();

  std::atomic<uint32_t> state_{0};
  std::atomic<uint64_t> contended_{0};
};

class SpinLockHolder {
 public:
  explicit SpinLockHolder(SpinLock* lock) : lock_(lock) { lock_->Lock(); }
  ~SpinLockHolder() { lock_->Unlock(); }
  SpinLockHolder(const SpinLockHolder&) = delete;
  SpinLockHolder& operator=(const SpinLockHolder&) = delete;

 private:
  SpinLock* lock_;
};

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_SPINLOCK_H_
