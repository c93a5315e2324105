// The maintenance thread, seen from a program: it returns freed pages while
// the program makes no allocator call, it survives fork on the parent's side
// and starts afresh in a child that needs it, and it never delays exit.
//
// Every variant runs with RSEQMALLOC_RELEASE_DELAY_MS=50 (BUILD). Where the
// thread may not run (RSEQMALLOC_CACHE=none, RSEQMALLOC_BACKGROUND_THREAD=0)
// the same tests check that it never starts and that the program's own
// allocator calls do the timed release instead.
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

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

// Polls every 50 ms, making no allocator call (the lists must stay idle),
// until count() is at most `limit` or 20 s pass; returns the last count.
template <typename Count>
int PollUntilAtMost(int limit, Count count) {
  auto end = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  int n = count();
  while (n > limit && std::chrono::steady_clock::now() < end) {
    SleepMs(50);
    n = count();
  }
  return n;
}

bool PageResident(uintptr_t page) {
  unsigned char vec = 0;
  EXPECT_EQ(mincore(reinterpret_cast<void*>(page), 4096, &vec), 0);
  return (vec & 1) != 0;
}

// Whether the whole 4 KiB page after `block`'s first bytes (its link while
// free) is resident; true when the block holds no such page.
bool InnerPageResident(const char* block, size_t size) {
  uintptr_t page = (reinterpret_cast<uintptr_t>(block) + sizeof(void*) + 4095) & ~uintptr_t{4095};
  if (page + 4096 > reinterpret_cast<uintptr_t>(block) + size) return true;
  return PageResident(page);
}

// Blocks of 10 KiB, three to a slab, of which one in three stays live: no
// slab empties, so the page heap gets nothing back; the thread returns the
// pages inside the free blocks once their class has been idle for the
// delay, and the live blocks keep their contents. The thread looks at the
// lists when it runs for other work (here: large blocks freed), not on
// their account alone.
TEST(MaintenanceThread, ReturnsPagesInsideFreeBlocksOfPartlyUsedSlabs) {
  if (!MaintenanceThreadAllowed()) GTEST_SKIP() << "no maintenance thread in this mode";
  IdleThread other;
  constexpr size_t kSize = 10240;
  constexpr int kCount = 3000;  // 30 MiB: far more than the caches hold
  static char* blocks[kCount];
  for (auto& b : blocks) {
    b = static_cast<char*>(malloc(kSize));
    ASSERT_NE(b, nullptr);
    memset(b, 0x6b, kSize);
  }
  int with_inner_page = 0;
  for (int i = 0; i < kCount; ++i) {
    if (i % 3 == 0) continue;
    with_inner_page += InnerPageResident(blocks[i], kSize) ? 1 : 0;
    free(blocks[i]);
  }
  ASSERT_GT(with_inner_page, kCount / 3);
  // Free pages for the page heap too: what starts the thread, or wakes it
  // (central lists alone do not).
  ChurnLargeBlocks();
  int resident = PollUntilAtMost(with_inner_page / 2, [&] {
    int n = 0;
    for (int i = 0; i < kCount; ++i) {
      if (i % 3 != 0 && InnerPageResident(blocks[i], kSize)) ++n;
    }
    return n;
  });
  EXPECT_LE(resident, with_inner_page / 2) << "of " << with_inner_page << " free blocks";
  for (int i = 0; i < kCount; i += 3) {
    for (size_t j = 0; j < kSize; j += 1024) ASSERT_EQ(blocks[i][j], 0x6b) << i;
    free(blocks[i]);
  }
}

// Small blocks: one live block at the start of each 8 KiB slab keeps the
// slab, and the OS page after it holds only free blocks. The thread returns
// those pages once the class has been idle for the delay; the live blocks
// keep their contents, and the freed blocks come back to the program.
// 120,000 blocks of 256 B (30 MiB: far more than the caches hold), each
// filled with 0x6b; the block at the start of each 8 KiB slab is kept and
// the others freed, so the kept slabs' second OS pages hold free blocks
// only.
class SlabsKeptByTheirFirstBlock {
 public:
  static constexpr size_t kSize = 256;
  static constexpr int kCount = 120000;

  void Fill() {
    for (auto& b : blocks_) {
      b = static_cast<char*>(malloc(kSize));
      ASSERT_NE(b, nullptr);
      memset(b, 0x6b, kSize);
    }
    for (auto& b : blocks_) {
      if (reinterpret_cast<uintptr_t>(b) % 8192 == 0) {
        ++kept_;
        continue;
      }
      free(b);
      b = nullptr;
    }
    ASSERT_GT(kept_, kCount / 64);
  }
  int kept() const { return kept_; }
  int ResidentSecondPages() const {
    int n = 0;
    for (char* b : blocks_) {
      if (b != nullptr && PageResident(reinterpret_cast<uintptr_t>(b) + 4096)) ++n;
    }
    return n;
  }
  void ExpectKeptIntact() const {
    for (char* b : blocks_) {
      if (b == nullptr) continue;
      for (size_t j = 0; j < kSize; ++j) ASSERT_EQ(b[j], 0x6b);
    }
  }
  void FreeKept() {
    for (char*& b : blocks_) {
      free(b);
      b = nullptr;
    }
  }

 private:
  char* blocks_[kCount] = {};
  int kept_ = 0;
};

TEST(MaintenanceThread, ReturnsPagesOfFreeSmallBlocksOfPartlyUsedSlabs) {
  if (!MaintenanceThreadAllowed()) GTEST_SKIP() << "no maintenance thread in this mode";
  IdleThread other;
  static SlabsKeptByTheirFirstBlock slabs;
  ASSERT_NO_FATAL_FAILURE(slabs.Fill());
  const int kept = slabs.kept();
  ASSERT_GT(slabs.ResidentSecondPages(), kept / 2);
  ChurnLargeBlocks();  // wakes the thread (central lists alone do not)
  int resident = PollUntilAtMost(kept / 4, [] { return slabs.ResidentSecondPages(); });
  EXPECT_LE(resident, kept / 4) << "of " << kept << " slabs' second pages";
  ASSERT_NO_FATAL_FAILURE(slabs.ExpectKeptIntact());
  // The freed blocks are handed out again, distinct and usable.
  static char* again[SlabsKeptByTheirFirstBlock::kCount];
  for (auto& b : again) {
    b = static_cast<char*>(malloc(SlabsKeptByTheirFirstBlock::kSize));
    ASSERT_NE(b, nullptr);
    memset(b, 0x2c, SlabsKeptByTheirFirstBlock::kSize);
  }
  ASSERT_NO_FATAL_FAILURE(slabs.ExpectKeptIntact());
  std::vector<char*> sorted(std::begin(again), std::end(again));
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end()) << "a block twice";
  for (char* b : again) free(b);
  slabs.FreeKept();
}

// Without a maintenance thread (RSEQMALLOC_BACKGROUND_THREAD=0,
// RSEQMALLOC_CACHE=none, or a single-threaded process), the program's own
// batches run the idle passes, at most once a second: a class left idle
// for the delay gives back the pages of its free small blocks while the
// program goes on allocating other sizes.
TEST(MaintenanceThread, WithoutTheThreadProgramCallsReturnPagesOfFreeSmallBlocks) {
  if (MaintenanceThreadAllowed()) GTEST_SKIP() << "the maintenance thread does this here";
  static SlabsKeptByTheirFirstBlock slabs;
  ASSERT_NO_FATAL_FAILURE(slabs.Fill());
  const int kept = slabs.kept();
  ASSERT_GT(slabs.ResidentSecondPages(), kept / 2);
  // Other work: 6 MiB of 64-byte blocks at a time, more than a per-CPU
  // cache holds, so that batches reach the transfer caches (the passes run
  // there; a program whose work fits its cache makes no batches and gets
  // no passes, as with the transfer caches' idle return).
  static void* other[100000];
  int resident = PollUntilAtMost(kept / 4, [] {
    for (auto& p : other) p = malloc(64);
    for (auto* p : other) free(p);
    return slabs.ResidentSecondPages();
  });
  EXPECT_LE(resident, kept / 4) << "of " << kept << " slabs' second pages";
  // The report tells these releases from the thread's.
  int fd = memfd_create("report", 0);
  ASSERT_GE(fd, 0);
  rseqmalloc_stats_print(fd);
  std::string report(1 << 16, '\0');
  ssize_t got = pread(fd, report.data(), report.size(), 0);
  report.resize(got > 0 ? static_cast<size_t>(got) : 0);
  close(fd);
  EXPECT_NE(report.find("by the program's own calls (no maintenance thread): "), std::string::npos)
      << report;
  ASSERT_NO_FATAL_FAILURE(slabs.ExpectKeptIntact());
  slabs.FreeKept();
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

// A second thread that never calls the allocator again: the process is
// multi-threaded from now on (never joined; the process's exit ends it).
void StartThreadThatPauses() {
  pthread_t idle;
  pthread_create(&idle, nullptr, [](void*) -> void* {
    pause();
    return nullptr;
  }, nullptr);
}

// A child that exits while the thread sleeps, sweeps or releases (the
// delay is 50 ms; the exits fall before, around and after it) exits at once:
// the thread holds nothing exit needs and does not keep the process alive.
TEST(MaintenanceThread, ProgramExitsPromptlyWhateverTheThreadIsDoing) {
  for (int ms = 0; ms <= 120; ms += 8) {
    const pid_t pid = fork();
    ASSERT_GE(pid, 0) << strerror(errno);
    if (pid == 0) {
      StartThreadThatPauses();
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

// Waits (no allocator call) up to `seconds` for the maintenance thread to
// run; false if it never did.
bool AwaitThreadRunning(double seconds) {
  for (int i = 0; i < static_cast<int>(seconds * 100); ++i) {
    rseqmalloc_release_stats s;
    if (rseqmalloc_get_release_stats(&s) == 0 && s.background_running != 0) return true;
    usleep(10000);
  }
  return false;
}

enum ExitResult {
  kWorkerDone = 0,  // the process's status when it ends as it should
  kThreadNeverRan = 20,
  kThreadOutlivedMain = 21,
  kCloneFailed = 22,
  kCloneChildHung = 23,
  kCloneChildStatus = 24,
};

std::atomic<bool> g_thread_seen{false};

void* WorkerAfterMain(void*) {
  ChurnLargeBlocks();
  if (MaintenanceThreadAllowed() && !AwaitThreadRunning(10)) _exit(kThreadNeverRan);
  g_thread_seen.store(true);
  // The main thread leaves now; then ours must stop, and stay stopped
  // whatever this thread allocates.
  for (int i = 0; i < 300; ++i) {
    rseqmalloc_release_stats s;
    if (rseqmalloc_get_release_stats(&s) == 0 && s.background_running == 0) break;
    usleep(10000);
  }
  ChurnLargeBlocks();
  usleep(100000);
  rseqmalloc_release_stats s;
  if (rseqmalloc_get_release_stats(&s) == 0 && s.background_running != 0) {
    _exit(kThreadOutlivedMain);
  }
  return nullptr;  // the last program thread: the process ends, status 0
}

// main() may end with pthread_exit: the process then ends when its last
// thread does, with status 0, so a thread of ours must not outlive the
// program's (it used to: the process never ended, and ignored SIGTERM).
// The main thread that leaves is a fresh run of this binary's disabled test
// below, without GoogleTest's catch-all (pthread_exit unwinds the stack).
TEST(MaintenanceThread, MainThreadsPthreadExitLetsTheProcessEnd) {
  const pid_t pid = fork();
  ASSERT_GE(pid, 0) << strerror(errno);
  if (pid == 0) {
    unsetenv("XML_OUTPUT_FILE");  // the files of this run, not the child's
    unsetenv("TEST_PREMATURE_EXIT_FILE");
    execl("/proc/self/exe", "maintenance_thread_test",
          "--gtest_filter=MaintenanceThread.DISABLED_MainThreadLeavesThroughPthreadExit",
          "--gtest_also_run_disabled_tests", "--gtest_catch_exceptions=0", nullptr);
    _exit(127);
  }
  int status = 0;
  ASSERT_TRUE(WaitWithDeadline(pid, 30, &status)) << "the process outlived its last thread";
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
  EXPECT_EQ(WEXITSTATUS(status), kWorkerDone);
}

TEST(MaintenanceThread, DISABLED_MainThreadLeavesThroughPthreadExit) {
  pthread_t worker;
  if (pthread_create(&worker, nullptr, WorkerAfterMain, nullptr) != 0) _exit(kThreadNeverRan);
  while (!g_thread_seen.load()) usleep(1000);
  pthread_exit(nullptr);
}

int CloneChildAllocates(void*) {
  ChurnLargeBlocks();  // pages waiting, in a process that looks multi-threaded
  for (int i = 0; i < 1000; ++i) free(malloc(16 + i * 40));
  usleep(200000);
  return 7;  // glibc's clone() ends the child with the exit system call
}

// A clone() child of a multi-threaded process (no CLONE_VM: its own copy of
// memory; no pthread_atfork handlers) that allocates ends when its function
// returns: it must not get a thread of ours, which would keep it alive.
TEST(MaintenanceThread, CloneChildEndsWhenItsFunctionReturns) {
  const pid_t pid = fork();  // a fresh process whose thread is not started
  ASSERT_GE(pid, 0) << strerror(errno);
  if (pid == 0) {
    StartThreadThatPauses();
    constexpr size_t kStack = 1 << 20;
    static char stack[kStack] __attribute__((aligned(16)));
    pid_t child = clone(CloneChildAllocates, stack + kStack, SIGCHLD, nullptr);
    if (child < 0) _exit(kCloneFailed);
    int child_status = 0;
    if (!WaitWithDeadline(child, 15, &child_status)) _exit(kCloneChildHung);
    _exit(WIFEXITED(child_status) && WEXITSTATUS(child_status) == 7 ? kWorkerDone
                                                                     : kCloneChildStatus);
  }
  int status = 0;
  ASSERT_TRUE(WaitWithDeadline(pid, 60, &status));
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
  EXPECT_EQ(WEXITSTATUS(status), kWorkerDone);
}

}  // namespace
}  // namespace rseqmalloc_test
