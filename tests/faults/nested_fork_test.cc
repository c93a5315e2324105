// nested_fork: a signal handler's fork() that runs while this same thread is
// inside fork()'s handlers, between the allocator's prepare handler and its
// after-fork handler.
//
// fork() is async-signal-safe, and glibc 2.36 does not block signals around
// its atfork handlers, so the handler's fork nests inside the outer one: its
// own prepare and after-fork handlers run, and return, before the outer
// after-fork handler resumes. The outer pair must still release every lock
// its prepare handler took. (It did not: the handlers remembered "took the
// locks" in one thread-local flag, which the nested prepare handler
// overwrote; the locks stayed held and the process hung at its next slow
// path or fork. CI saw it twice in fork_in_signal_handler_test, whose signal
// sender starts firing while the parent is still inside the fork that
// created it.)
//
// The first two tests put the nested fork there on purpose, by calling the
// handlers around raise(); the third gets it from real signals aimed at a
// loop of forks. Each scenario runs in its own process, killed at a
// deadline, so a hang fails instead of stalling the suite.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <vector>

#include "allocator/frontend/lifecycle.h"
#include "allocator/frontend/reentry.h"
#include "gtest/gtest.h"
#include "tests/util/test_util.h"

namespace rseqmalloc_test {
namespace {

namespace in = rseqmalloc::internal;

constexpr double kDeadlineSeconds = 60.0;

// Exit codes of a scenario process.
constexpr int kHandlerForkFailed = 2;
constexpr int kForkFailed = 3;
constexpr int kOutOfMemory = 4;
constexpr int kSetupFailed = 5;

bool ForkAndReap() {
  pid_t pid = fork();
  if (pid == 0) _exit(0);
  if (pid < 0) return false;
  int status = 0;
  pid_t reaped;
  do {
    reaped = waitpid(pid, &status, 0);  // a signal may interrupt it
  } while (reaped < 0 && errno == EINTR);
  return reaped == pid && WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// Passes through every layer, so a lock left held is waited for: blocks of
// sizes from 1 byte to 1 MiB, 64 of each, more than the caches hold.
bool AllocateThroughEveryLayer() {
  std::vector<void*> blocks;
  blocks.reserve(64);
  for (size_t size : SizeSpread(1 << 20)) {
    for (int i = 0; i < 64; ++i) {
      void* p = malloc(size);
      if (p == nullptr) return false;
      blocks.push_back(p);
    }
    for (void* p : blocks) free(p);
    blocks.clear();
  }
  return true;
}

int RunScenarioWithDeadline(int (*scenario)()) {
  pid_t pid = fork();
  if (pid == 0) _exit(scenario());
  int status = 0;
  if (!WaitWithDeadline(pid, kDeadlineSeconds, &status)) return -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// --- The nested fork placed by hand ------------------------------------------

std::atomic<int> g_handler_fork_failures{0};

void ForkingHandler(int) {
  int saved_errno = errno;
  if (!ForkAndReap()) g_handler_fork_failures.fetch_add(1);
  errno = saved_errno;
}

bool InstallHandler(void (*handler)(int)) {
  struct sigaction action = {};
  action.sa_handler = handler;
  sigemptyset(&action.sa_mask);
  return sigaction(SIGUSR1, &action, nullptr) == 0;
}

// The outer fork's handlers with a signal handler's fork between them; then
// a fork of our own (which takes every lock again) and allocations.
int NestedForkBetweenHandlers(void (*after_fork)()) {
  if (!InstallHandler(ForkingHandler)) return kSetupFailed;
  if (!AllocateThroughEveryLayer()) return kOutOfMemory;  // caches, heap: all in use
  in::PrepareFork();
  raise(SIGUSR1);
  after_fork();
  if (g_handler_fork_failures.load() != 0) return kHandlerForkFailed;
  if (!ForkAndReap()) return kForkFailed;
  return AllocateThroughEveryLayer() ? 0 : kOutOfMemory;
}

TEST(NestedFork, HandlerForkBeforeTheParentsAfterForkHandler) {
  int result = RunScenarioWithDeadline([] { return NestedForkBetweenHandlers(in::AfterForkParent); });
  EXPECT_EQ(result, 0) << (result < 0 ? "hung: the outer fork's locks stayed held" : "exit code");
}

TEST(NestedFork, HandlerForkBeforeTheChildsAfterForkHandler) {
  int result = RunScenarioWithDeadline([] { return NestedForkBetweenHandlers(in::AfterForkChild); });
  EXPECT_EQ(result, 0) << (result < 0 ? "hung: the outer fork's locks stayed held" : "exit code");
}

// --- The nested fork from real signals ---------------------------------------

// Handler landings the loop needs inside its forks' handlers, and forks in
// all. The window is the whole clone() of the outer fork, so landings come
// often; the cap keeps an unlucky machine from running to the deadline.
constexpr unsigned kLandingsInsideForkHandlers = 200;
constexpr unsigned kMaxForks = 200000;

struct Shared {
  std::atomic<unsigned> landings_inside_fork_handlers;
  std::atomic<unsigned> forks;
  std::atomic<unsigned> handler_forks;
};
Shared* g_shared = nullptr;

volatile sig_atomic_t g_in_fork = 0;
volatile sig_atomic_t g_signalled = 0;
pid_t g_sender = 0;

// One fork per loop iteration, with the sender stopped until the loop goes
// on: the process must make progress, not only fork in its handler.
void CountingForkingHandler(int) {
  int saved_errno = errno;
  if (g_signalled) return;
  g_signalled = 1;
  if (g_sender > 0) kill(g_sender, SIGSTOP);
  // Inside the allocator while the loop is in fork(): between our prepare
  // handler and our after-fork handler.
  if (g_in_fork && in::InsideAllocator()) g_shared->landings_inside_fork_handlers.fetch_add(1);
  if (ForkAndReap()) g_shared->handler_forks.fetch_add(1);
  errno = saved_errno;
}

int ForkLoopUnderSignals() {
  if (!InstallHandler(CountingForkingHandler)) return kSetupFailed;
  pid_t self = getpid();
  g_signalled = 1;  // no handler fork until the sender's pid is known
  g_sender = fork();
  if (g_sender < 0) return kSetupFailed;
  if (g_sender == 0) {
    for (;;) {
      if (kill(self, SIGUSR1) != 0) _exit(1);
      sched_yield();
    }
  }
  Rng rng(7);
  void* blocks[257] = {};
  while (g_shared->landings_inside_fork_handlers.load() < kLandingsInsideForkHandlers &&
         g_shared->forks.load() < kMaxForks) {
    g_signalled = 0;
    kill(g_sender, SIGCONT);
    g_in_fork = 1;
    bool forked = ForkAndReap();
    g_in_fork = 0;
    if (!forked) return kForkFailed;
    g_shared->forks.fetch_add(1);
    // Blocks up to 300 KiB: the slow paths and the page heap see the locks.
    size_t slot = rng.Below(257);
    free(blocks[slot]);
    blocks[slot] = malloc(rng.LogUniform(1, 300 * 1024));
    if (blocks[slot] == nullptr) return kOutOfMemory;
  }
  signal(SIGUSR1, SIG_IGN);
  kill(g_sender, SIGKILL);
  waitpid(g_sender, nullptr, 0);
  for (void* p : blocks) free(p);
  return 0;
}

TEST(NestedFork, ForkLoopUnderSignalsWhoseHandlerForks) {
  g_shared = NewShared<Shared>();
  ASSERT_NE(g_shared, nullptr);
  int result = RunScenarioWithDeadline(ForkLoopUnderSignals);
  EXPECT_EQ(result, 0) << (result < 0 ? "hung" : "exit code") << " after " << g_shared->forks.load()
                       << " forks, " << g_shared->handler_forks.load() << " handler forks, "
                       << g_shared->landings_inside_fork_handlers.load()
                       << " inside the fork handlers";
  // Proof that the scenario happened: signals landed between our handlers.
  EXPECT_GE(g_shared->landings_inside_fork_handlers.load(), kLandingsInsideForkHandlers)
      << "after " << g_shared->forks.load() << " forks";
  DeleteShared(g_shared);
}

}  // namespace
}  // namespace rseqmalloc_test
