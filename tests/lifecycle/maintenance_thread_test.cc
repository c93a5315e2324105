// The maintenance thread, seen from a program: it returns freed pages while
// the program makes no allocator call, it survives fork on the parent's side
// and starts afresh in a child that needs it, and it never delays exit.
//
// Every variant runs with RSEQMALLOC_RELEASE_DELAY_MS=50 (BUILD). Where the
// thread may not run (RSEQMALLOC_CACHE=none, RSEQMALLOC_BACKGROUND_THREAD=0)
// the same tests check that it never starts and that the program's own
// allocator calls do the timed release instead.
#include <pthread.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <thread>

#include "allocator/api/rseqmalloc.h"
#include "gtest/gtest.h"
#include "tests/util/test_util.h"

namespace rseqmalloc_test {
namespace {

constexpr size_t kBlock = 1 << 20;
constexpr int kBlocks = 32;
constexpr size_t kFreed = kBlock * kBlocks;

rseqmalloc_release_stats ReleaseStats() {
  rseqmalloc_release_stats s;
  EXPECT_EQ(rseqmalloc_get_release_stats(&s), 0);
  return s;
}

// Sleeps without calling the allocator (nanosleep only).
void SleepMs(int ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

// Allocates, touches and frees kFreed bytes of large blocks: kFreed bytes of
// free pages start their delay.
void ChurnLargeBlocks() {
  void* blocks[kBlocks];
  for (auto& b : blocks) {
    b = malloc(kBlock);
    ASSERT_NE(b, nullptr);
    memset(b, 0x5a, kBlock);
  }
  for (auto* b : blocks) free(b);
  // The thread starts from a slow-path prologue that sees pages waiting.
  free(malloc(kBlock));
}

// A second thread that makes no allocator call until released: the process
// is multi-threaded, the condition for the maintenance thread to start.
class IdleThread {
 public:
  IdleThread() : thread_([this] {
      while (!stop_.load(std::memory_order_acquire)) SleepMs(1);
    }) {}
  ~IdleThread() {
    stop_.store(true, std::memory_order_release);
    thread_.join();
  }

 private:
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Polls (sleeping, no allocator calls) until `done` holds or `seconds` pass.
template <typename Done>
bool PollFor(double seconds, Done done) {
  auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (done(ReleaseStats())) return true;
    SleepMs(10);
  }
  return done(ReleaseStats());
}

TEST(MaintenanceThread, ReturnsFreedPagesWhileTheProgramSleeps) {
  IdleThread other;
  const rseqmalloc_release_stats before = ReleaseStats();
  EXPECT_EQ(before.release_delay_ms, 50u);
  ChurnLargeBlocks();

  if (MaintenanceThreadAllowed()) {
    const bool released = PollFor(10, [&](const rseqmalloc_release_stats& s) {
      return s.background_released_bytes >= before.background_released_bytes + kFreed;
    });
    const rseqmalloc_release_stats after = ReleaseStats();
    EXPECT_TRUE(released) << "the thread returned "
                          << after.background_released_bytes - before.background_released_bytes
                          << " bytes";
    EXPECT_EQ(after.background_running, 1u);
    EXPECT_GT(after.background_wakeups, before.background_wakeups);
  } else {
    SleepMs(300);
    const rseqmalloc_release_stats idle = ReleaseStats();
    EXPECT_EQ(idle.background_running, 0u);
    EXPECT_EQ(idle.background_released_bytes, 0u);
    // Without the thread, the program's next slow path does the release
    // (of all but the block that call itself reuses).
    free(malloc(kBlock));
    const rseqmalloc_release_stats after = ReleaseStats();
    EXPECT_GE(after.released_expired_bytes, before.released_expired_bytes + kFreed - kBlock);
  }
}

// Exit codes of the forked child, so a failure says which check it was.
enum ChildResult {
  kChildOk = 0,
  kChildInheritedThread = 10,
  kChildAllocationFailed = 11,
  kChildThreadNeverStarted = 12,
  kChildNothingReleased = 13,
  kChildCreateFailed = 14,
};

int ChildAfterFork(bool thread_allowed) {
  if (rseqmalloc_release_stats s; rseqmalloc_get_release_stats(&s) != 0 || s.background_running != 0) {
    return kChildInheritedThread;
  }
  // Single-threaded, the child allocates and frees without a thread of ours.
  for (int i = 0; i < 1000; ++i) {
    void* p = malloc(16 + i * 37);
    if (p == nullptr) return kChildAllocationFailed;
    memset(p, 1, 16);
    free(p);
  }
  // Once it has a second thread and pages waiting, it gets its own.
  pthread_t idle;
  static std::atomic<bool> stop{false};
  if (pthread_create(&idle, nullptr, [](void*) -> void* {
        while (!stop.load()) usleep(1000);
        return nullptr;
      }, nullptr) != 0) {
    return kChildCreateFailed;
  }
  rseqmalloc_release_stats before;
  rseqmalloc_get_release_stats(&before);
  void* blocks[kBlocks];
  for (auto& b : blocks) {
    b = malloc(kBlock);
    if (b == nullptr) return kChildAllocationFailed;
    memset(b, 0x33, kBlock);
  }
  for (auto* b : blocks) free(b);
  free(malloc(kBlock));
  int result = kChildOk;
  if (thread_allowed) {
    bool started = false;
    bool released = false;
    for (int i = 0; i < 1000 && !released; ++i) {
      rseqmalloc_release_stats s;
      rseqmalloc_get_release_stats(&s);
      started = started || s.background_running != 0;
      released = s.background_released_bytes >= before.background_released_bytes + kFreed;
      usleep(10000);
    }
    if (!started) result = kChildThreadNeverStarted;
    else if (!released) result = kChildNothingReleased;
  }
  stop.store(true);
  pthread_join(idle, nullptr);
  return result;
}

TEST(MaintenanceThread, ForkChildAllocatesAndExitsParentThreadKeepsWorking) {
  IdleThread other;
  ChurnLargeBlocks();
  const bool allowed = MaintenanceThreadAllowed();
  if (allowed) {
    ASSERT_TRUE(PollFor(10, [](const rseqmalloc_release_stats& s) {
      return s.background_running == 1;
    }));
  }

  for (int round = 0; round < 3; ++round) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0) << strerror(errno);
    if (pid == 0) _exit(ChildAfterFork(allowed));
    int status = 0;
    ASSERT_TRUE(WaitWithDeadline(pid, 30, &status)) << "the child hung";
    ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
    EXPECT_EQ(WEXITSTATUS(status), kChildOk) << "round " << round;

    // The parent's thread survived the fork and still releases.
    const rseqmalloc_release_stats before = ReleaseStats();
    ChurnLargeBlocks();
    if (allowed) {
      EXPECT_TRUE(PollFor(10, [&](const rseqmalloc_release_stats& s) {
        return s.background_released_bytes >= before.background_released_bytes + kFreed;
      })) << "round " << round;
      EXPECT_EQ(ReleaseStats().background_running, 1u);
    } else {
      EXPECT_EQ(ReleaseStats().background_running, 0u);
    }
  }
}

// A child that exits while the thread sleeps, sweeps or releases (the
// delay is 50 ms; the exits fall before, around and after it) exits at once:
// the thread holds nothing exit needs and does not keep the process alive.
TEST(MaintenanceThread, ProgramExitsPromptlyWhateverTheThreadIsDoing) {
  for (int ms = 0; ms <= 120; ms += 8) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0) << strerror(errno);
    if (pid == 0) {
      pthread_t idle;
      pthread_create(&idle, nullptr, [](void*) -> void* {
        pause();
        return nullptr;
      }, nullptr);
      for (int round = 0; round < 4; ++round) {
        void* blocks[kBlocks];
        for (auto& b : blocks) {
          b = malloc(kBlock);
          if (b != nullptr) memset(b, 0x77, kBlock);
        }
        for (auto* b : blocks) free(b);
      }
      usleep(ms * 1000);
      exit(0);  // atexit handlers and stdio flush run; the idle thread is never joined
    }
    int status = 0;
    ASSERT_TRUE(WaitWithDeadline(pid, 20, &status)) << "the child did not exit (slept " << ms << " ms)";
    ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
    EXPECT_EQ(WEXITSTATUS(status), 0);
  }
}

}  // namespace
}  // namespace rseqmalloc_test
