// fork_in_signal_handler: a single-threaded process keeps replacing blocks of
// random size (up to 70,000 bytes, so every layer's locks are taken), while a
// separate process signals it without pause. The handler forks a child that
// exits at once, and waits for it.
//
// fork() is async-signal-safe, so this is a valid program even when the
// signal lands inside malloc or free. The allocator's fork handlers run in
// the handler; if they waited for a lock the interrupted malloc holds, the
// process would hang forever (as it did, and as jemalloc and gperftools still
// do). The test counts signals that landed inside an allocator call and needs
// kSignalsInsideCalls of them within the deadline; the scenario runs in its
// own process, killed at the deadline, so a deadlock fails cleanly.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>

#include "gtest/gtest.h"
#include "tests/util/test_util.h"

namespace rseqmalloc_test {
namespace {

constexpr int kObjects = 1009;
constexpr size_t kMaxSize = 70000;
constexpr unsigned kSignalsInsideCalls = 1000;
constexpr double kDeadlineSeconds = 90.0;

struct Shared {
  std::atomic<unsigned> signals_inside_calls;
  std::atomic<unsigned> forks;
  std::atomic<int> failed_forks;
};
Shared* g_shared = nullptr;

volatile sig_atomic_t g_signalled = 0;
pid_t g_sender = 0;

void ForkingHandler(int) {
  int saved_errno = errno;
  // One fork per allocator call: stop the sender until the main loop has
  // made progress, so the process does nothing but fork.
  if (g_signalled) return;
  if (g_sender > 0) kill(g_sender, SIGSTOP);
  g_signalled = 1;
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid || status != 0) {
    g_shared->failed_forks.fetch_add(1, std::memory_order_relaxed);
  }
  g_shared->forks.fetch_add(1, std::memory_order_relaxed);
  errno = saved_errno;
}

[[noreturn]] void SignalSender(pid_t target) {
  for (;;) {
    if (kill(target, SIGUSR1) != 0) _exit(1);
    sched_yield();
  }
}

int RunScenario() {
  struct sigaction action = {};
  action.sa_handler = ForkingHandler;
  sigemptyset(&action.sa_mask);
  if (sigaction(SIGUSR1, &action, nullptr) != 0) return 2;
  pid_t self = getpid();
  g_sender = fork();
  if (g_sender < 0) return 3;
  if (g_sender == 0) SignalSender(self);

  void* objects[kObjects] = {};
  Rng rng(1);
  while (g_shared->signals_inside_calls.load(std::memory_order_relaxed) < kSignalsInsideCalls) {
    kill(g_sender, SIGCONT);
    g_signalled = 0;
    uint64_t slot = rng.Below(kObjects);
    free(objects[slot]);
    objects[slot] = malloc(rng.Below(kMaxSize));
    if (g_signalled) g_shared->signals_inside_calls.fetch_add(1, std::memory_order_relaxed);
    if (objects[slot] == nullptr) return 4;
  }
  signal(SIGUSR1, SIG_IGN);
  kill(g_sender, SIGKILL);
  waitpid(g_sender, nullptr, 0);
  for (void* p : objects) free(p);
  return 0;
}

TEST(ForkInSignalHandler, SingleThreadedProcessNeverDeadlocks) {
  g_shared = NewShared<Shared>();
  ASSERT_NE(g_shared, nullptr);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) _exit(RunScenario());
  int status = 0;
  bool finished = WaitWithDeadline(pid, kDeadlineSeconds, &status);
  EXPECT_TRUE(finished) << "stuck after " << g_shared->forks.load() << " forks ("
                        << g_shared->signals_inside_calls.load()
                        << " signals inside allocator calls): a fork handler deadlocked";
  if (finished) {
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  }
  EXPECT_EQ(g_shared->failed_forks.load(), 0);
  EXPECT_GE(g_shared->signals_inside_calls.load(), kSignalsInsideCalls);
  DeleteShared(g_shared);
}

}  // namespace
}  // namespace rseqmalloc_test
