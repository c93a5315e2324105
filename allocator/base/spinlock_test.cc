#include "allocator/base/spinlock.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <thread>
#include <vector>

namespace rseqmalloc::internal {
namespace {

constinit SpinLock g_global_lock;  // must be usable with no constructor run

TEST(SpinLock, TryLockFailsWhileHeld) {
  SpinLock lock;
  EXPECT_TRUE(lock.TryLock());
  EXPECT_FALSE(lock.TryLock());
  lock.Unlock();
  EXPECT_TRUE(lock.TryLock());
  lock.Unlock();
  EXPECT_FALSE(lock.IsHeld());
}

// Non-atomic increments under the lock: any lost update means two threads
// were inside at once. Threads outnumber the 2 cores so holders get
// preempted and waiters take the futex path.
TEST(SpinLock, MutualExclusionUnderContention) {
  SpinLock lock;
  long counter = 0;
  constexpr int kThreads = 8;
  constexpr int kIters = 100000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kIters; ++i) {
        SpinLockHolder h(&lock);
        long v = counter;
        if ((i & 1023) == 0) std::this_thread::yield();
        counter = v + 1;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(counter, static_cast<long>(kThreads) * kIters);
}

// fork_while_locked: the child inherits a held lock and must be able to
// unlock and re-take it (what UnlockAllAfterFork relies on).
// A waiter is counted once, when it finds the lock held; the uncontended
// acquisitions before and after are not.
TEST(SpinLock, CountsAcquisitionsThatWaited) {
  static SpinLock lock;
  lock.Lock();
  lock.Unlock();
  EXPECT_EQ(lock.contended(), 0u);
  lock.Lock();
  std::thread waiter([] {
    lock.Lock();
    lock.Unlock();
  });
  while (lock.contended() == 0) std::this_thread::yield();
  lock.Unlock();
  waiter.join();
  EXPECT_EQ(lock.contended(), 1u);
  lock.Lock();
  lock.Unlock();
  EXPECT_EQ(lock.contended(), 1u);
}

TEST(SpinLock, ForkWhileLocked) {
  g_global_lock.Lock();
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    g_global_lock.Unlock();
    bool ok = g_global_lock.TryLock();
    _exit(ok ? 0 : 1);
  }
  g_global_lock.Unlock();
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace rseqmalloc::internal
