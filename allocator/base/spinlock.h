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
// The lock knows nothing of signal handlers: a handler that interrupts the
// holder and calls malloc would wait for it forever, so every path that
// takes one of these locks on a program's thread runs inside the front
// end's AllocatorSection (allocator/frontend/reentry.h), which sends such a
// handler's calls down a path that takes none.
#ifndef RSEQMALLOC_ALLOCATOR_BASE_SPINLOCK_H_
#define RSEQMALLOC_ALLOCATOR_BASE_SPINLOCK_H_

#include <atomic>
#include <cstdint>

namespace rseqmalloc::internal {

class SpinLock {
 public:
  constexpr SpinLock() = default;
  SpinLock(const SpinLock&) = delete;
  SpinLock& operator=(const SpinLock&) = delete;

  void Lock() {
    uint32_t expected = 0;
    if (__builtin_expect(state_.compare_exchange_strong(expected, 1, std::memory_order_acquire,
                                                        std::memory_order_relaxed),
                         1)) {
      return;
    }
    SlowLock();
  }

  bool TryLock() {
    uint32_t expected = 0;
    return state_.compare_exchange_strong(expected, 1, std::memory_order_acquire,
                                          std::memory_order_relaxed);
  }

  void Unlock() {
    if (__builtin_expect(state_.exchange(0, std::memory_order_release) == 2, 0)) Wake();
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

#endif  // RSEQMALLOC_ALLOCATOR_BASE_SPINLOCK_H_
