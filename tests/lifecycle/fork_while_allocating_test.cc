// fork_while_allocating: fork() while other threads are inside the
// allocator. Whatever lock or critical section they held at the fork, the
// child (which has only the forking thread) must be able to allocate, free,
// start threads and exit. A deadlocked child is killed at a deadline and
// counted as a failure instead of hanging the test.
#include <pthread.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/util/test_util.h"

namespace rseqmalloc_test {
namespace {

constexpr int kBusyThreads = 8;
constexpr int kForks = 100;
constexpr double kChildDeadlineSeconds = 30;
constexpr size_t kMiB = size_t{1} << 20;

std::atomic<bool> stop{false};
// Set while a child runs: the busy threads then nap, so on 2 cores the child
// is not starved. The fork itself always happens while they are allocating.
std::atomic<bool> child_running{false};
std::atomic<long> busy_iterations{0};

// Keeps allocating and freeing, mostly small sizes, some large, with frees
// of other blocks interleaved so locks of every layer are taken often.
void* BusyAllocator(void* arg) {
  Rng rng(reinterpret_cast<uintptr_t>(arg));
  void* slots[64] = {};
  while (!stop.load(std::memory_order_relaxed)) {
    if (child_running.load(std::memory_order_relaxed)) usleep(500);
    int i = static_cast<int>(rng.Below(64));
    free(slots[i]);
    size_t size = rng.Below(16) == 0 ? rng.LogUniform(1, 2 * kMiB)
                                     : rng.LogUniform(1, 4096);
    slots[i] = malloc(size);
    if (slots[i] != nullptr) static_cast<char*>(slots[i])[0] = 1;
    busy_iterations.fetch_add(1, std::memory_order_relaxed);
  }
  for (void* p : slots) free(p);
  return nullptr;
}

void* ChildThread(void*) {
  for (size_t size = 1; size <= 4 * kMiB; size *= 3) {
    void* p = malloc(size);
    if (p == nullptr) return reinterpret_cast<void*>(1);
    std::memset(p, 5, size < 65536 ? size : 65536);
    free(p);
  }
  return nullptr;
}

// The child: only async-signal-safe exits, never back into GoogleTest.
[[noreturn]] void ChildBody(uint64_t seed) {
  std::vector<void*> kept;  // the child's own containers must work too
  // Every size range up to 8 MiB; only the first and last 4 KiB of a block
  // carry a pattern, which keeps a child cheap on a busy 2-core machine.
  for (size_t size : SizeSpread(8 * kMiB)) {
    void* p = malloc(size);
    if (p == nullptr) _exit(2);
    size_t edge = size < 8192 ? size : 4096;
    auto* tail = static_cast<char*>(p) + size - edge;
    uint64_t key = PatternKey(p, size, seed);
    FillPattern(tail, edge, ~key);  // the whole block when small
    FillPattern(p, edge, key);
    bool tail_ok = edge == size || PatternIntact(tail, edge, ~key);
    if (!PatternIntact(p, edge, key) || !tail_ok) _exit(3);
    if (size % 3 == 0) {
      kept.push_back(p);
    } else {
      free(p);
    }
  }
  std::string s(100000, 'c');
  char* arr = new char[300000];
  arr[299999] = 1;
  delete[] arr;
  pthread_t t;
  if (pthread_create(&t, nullptr, ChildThread, nullptr) != 0) _exit(4);
  void* result = nullptr;
  pthread_join(t, &result);
  if (result != nullptr) _exit(5);
  for (void* p : kept) free(p);
  _exit(0);
}

TEST(ForkWhileAllocating, ChildrenAllocateAndExitCleanly) {
  pthread_t busy[kBusyThreads];
  for (int i = 0; i < kBusyThreads; ++i) {
    ASSERT_EQ(pthread_create(&busy[i], nullptr, BusyAllocator,
                             reinterpret_cast<void*>(uintptr_t(i + 1))),
              0);
  }
  int clean = 0;
  int hung = 0;
  std::string failures;
  for (int f = 0; f < kForks; ++f) {
    // Let the busy threads get going between forks.
    long start = busy_iterations.load();
    while (busy_iterations.load() < start + 200) sched_yield();
    // The parent also allocates right before forking.
    void* mine = malloc(1000 + f);
    pid_t pid = fork();
    ASSERT_GE(pid, 0) << "fork failed";
    if (pid == 0) ChildBody(f);
    child_running = true;
    free(mine);
    int status = 0;
    bool exited = WaitWithDeadline(pid, kChildDeadlineSeconds, &status);
    child_running = false;
    if (!exited) {
      ++hung;
      failures += "fork " + std::to_string(f) + ": child hung (killed); ";
    } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
      ++clean;
    } else {
      // Exit codes: 2 malloc NULL, 3 pattern lost, 4 pthread_create failed,
      // 5 the child's thread could not allocate.
      failures += "fork " + std::to_string(f) + ": " +
                  (WIFSIGNALED(status)
                       ? "killed by signal " + std::to_string(WTERMSIG(status))
                       : "exit " + std::to_string(WEXITSTATUS(status))) +
                  "; ";
    }
    if (hung > 0) break;  // one deadlock is proof enough; spare the time
  }
  stop = true;
  for (pthread_t t : busy) pthread_join(t, nullptr);
  EXPECT_EQ(hung, 0) << failures;
  EXPECT_EQ(clean, kForks) << failures;
  // The parent is still healthy.
  void* p = malloc(12345);
  ASSERT_NE(p, nullptr);
  free(p);
}

}  // namespace
}  // namespace rseqmalloc_test
