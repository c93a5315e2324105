// shared_tls_child: a child that shares the parent thread's memory *and*
// thread-local storage -- a vfork() child, or clone(CLONE_VM) without
// CLONE_SETTLS -- calls malloc and free while other threads of the parent
// keep allocating.
//
// The kernel registers rseq for no CLONE_VM child, but such a child reads the
// parent thread's rseq area through the shared TLS: the ids there are stale
// and its "critical sections" run unprotected on a per-CPU cache another
// thread is using. Before the fix, 100 vforks handed out hundreds of
// thousands of blocks twice (cid and cpu modes). Now every block must come
// back exactly as its owner stamped it.
//
// Each worker thread keeps a ring of live blocks; every block carries a
// pattern keyed by its owner and serial number, checked when it is freed, so
// a block handed to two owners at once (or a cache whose header a racing
// child corrupted) shows up as a broken pattern. The whole scenario runs in a
// forked process killed at a deadline, so a corrupted heap that crashes or
// hangs is a clean failure too.
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "gtest/gtest.h"
#include "tests/util/test_util.h"
#ifndef RSEQMALLOC_TEST_GLIBC
#include "allocator/api/rseqmalloc.h"
#endif

namespace rseqmalloc_test {
namespace {

constexpr int kWorkers = 3;
constexpr int kLiveBlocks = 64;
constexpr int kChildren = 100;
constexpr int kChildOps = 4000;
constexpr double kDeadlineSeconds = 60.0;

// Lives in a MAP_SHARED mapping: written by the test process, read by the
// parent gtest process.
struct Outcome {
  std::atomic<uint64_t> corrupt_blocks;
  std::atomic<uint64_t> checked_blocks;
  std::atomic<uint64_t> children;
  std::atomic<int> failed_children;
};

Outcome* g_outcome = nullptr;
std::atomic<bool> g_stop{false};

size_t SizeFor(uint64_t r) { return 16 + (r % 64) * 16; }  // 16 .. 1024 B

void* Worker(void* raw) {
  uint64_t id = reinterpret_cast<uintptr_t>(raw);
  struct Live {
    char* p;
    size_t size;
    uint64_t key;
  } live[kLiveBlocks] = {};
  Rng rng(id + 1);
  uint64_t serial = 0;
  while (!g_stop.load(std::memory_order_relaxed)) {
    Live& slot = live[rng.Below(kLiveBlocks)];
    if (slot.p != nullptr) {
      if (!PatternIntact(slot.p, slot.size, slot.key)) {
        g_outcome->corrupt_blocks.fetch_add(1, std::memory_order_relaxed);
      }
      g_outcome->checked_blocks.fetch_add(1, std::memory_order_relaxed);
      free(slot.p);
    }
    slot.size = SizeFor(rng.Next());
    slot.p = static_cast<char*>(malloc(slot.size));
    slot.key = (id << 48) ^ ++serial;
    FillPattern(slot.p, slot.size, slot.key);
  }
  for (Live& slot : live) free(slot.p);
  return nullptr;
}

// What every child does: allocate and free the workers' sizes, writing into
// each block, as a shell between vfork and exec might.
void ChildAllocates() {
  void* held[32] = {};
  for (int i = 0; i < kChildOps; ++i) {
    void*& slot = held[i % 32];
    free(slot);
    size_t size = SizeFor(static_cast<uint64_t>(i) * 7919);
    slot = malloc(size);
    if (slot != nullptr) memset(slot, 0xA5, size);
  }
  for (void* p : held) free(p);
}

int CloneChildMain(void*) {
  ChildAllocates();
  return 0;
}

enum class Spawn { kVfork, kCloneVmVfork, kCloneVmThenWait };

pid_t SpawnChild(Spawn how, char* stack_top) {
  switch (how) {
    case Spawn::kVfork: {
      pid_t pid = vfork();
      if (pid == 0) {
        ChildAllocates();
        _exit(0);
      }
      return pid;
    }
    case Spawn::kCloneVmVfork:
      return clone(CloneChildMain, stack_top, CLONE_VM | CLONE_VFORK | SIGCHLD, nullptr);
    case Spawn::kCloneVmThenWait:
      return clone(CloneChildMain, stack_top, CLONE_VM | SIGCHLD, nullptr);
  }
  return -1;
}

// Runs in the forked test process; returns its exit status.
int RunScenario(Spawn how) {
  constexpr size_t kStackBytes = 256 << 10;
  void* stack = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) return 2;
  char* stack_top = static_cast<char*>(stack) + kStackBytes;

  pthread_t threads[kWorkers];
  for (int i = 0; i < kWorkers; ++i) {
    pthread_create(&threads[i], nullptr, Worker, reinterpret_cast<void*>(uintptr_t{1} + i));
  }
  // The main thread allocates too, so its per-CPU state is live when it
  // spawns (the stale ids the child would read are those of a busy cache).
  for (int c = 0; c < kChildren; ++c) {
    void* warm[16];
    for (void*& p : warm) p = malloc(SizeFor(static_cast<uint64_t>(c) * 31 + 5));
    for (void* p : warm) free(p);
    pid_t pid = SpawnChild(how, stack_top);
    if (pid < 0) return 3;
    int status = 0;
    if (waitpid(pid, &status, how == Spawn::kCloneVmThenWait ? __WALL : 0) != pid ||
        !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      g_outcome->failed_children.fetch_add(1);
    }
    g_outcome->children.fetch_add(1);
  }
  g_stop.store(true);
  for (pthread_t& t : threads) pthread_join(t, nullptr);
  munmap(stack, kStackBytes);
  return 0;
}

void ExpectNoBlockHandedOutTwice(Spawn how) {
  g_outcome = NewShared<Outcome>();
  ASSERT_NE(g_outcome, nullptr);
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) _exit(RunScenario(how));
  int status = 0;
  bool finished = WaitWithDeadline(pid, kDeadlineSeconds, &status);
  EXPECT_TRUE(finished) << "the scenario did not finish in " << kDeadlineSeconds << " s";
  if (finished) {
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << "scenario process ended with status " << status
        << (WIFSIGNALED(status) ? " (killed by a signal: heap corrupted?)" : "");
  }
  EXPECT_EQ(g_outcome->children.load(), static_cast<uint64_t>(kChildren));
  EXPECT_EQ(g_outcome->failed_children.load(), 0);
  EXPECT_GT(g_outcome->checked_blocks.load(), 1000u) << "the workers did not run";
  EXPECT_EQ(g_outcome->corrupt_blocks.load(), 0u)
      << "blocks whose pattern another owner overwrote (handed out twice)";
  DeleteShared(g_outcome);
}

TEST(SharedTlsChild, VforkChildThatAllocatesCorruptsNothing) {
  ExpectNoBlockHandedOutTwice(Spawn::kVfork);
}

TEST(SharedTlsChild, CloneVmVforkWithoutSettlsCorruptsNothing) {
  ExpectNoBlockHandedOutTwice(Spawn::kCloneVmVfork);
}

// The parent thread waits for the child right away (it does not allocate
// while the child runs), so the child has the thread's TLS to itself.
TEST(SharedTlsChild, CloneVmWithoutSettlsThenWaitCorruptsNothing) {
  ExpectNoBlockHandedOutTwice(Spawn::kCloneVmThenWait);
}

// After the children, the parent thread is back on its own per-CPU cache:
// the mark that sent the child to the shared layers was undone.
// vfork returns twice into this frame, so it gets a frame of its own and the
// caller's loop counter is never live across it.
__attribute__((noinline)) pid_t VforkChildThatAllocates() {
  pid_t pid = vfork();
  if (pid == 0) {
    free(malloc(100));
    _exit(0);
  }
  return pid;
}

TEST(SharedTlsChild, ParentThreadKeepsItsModeAfterChildren) {
  for (int i = 0; i < 10; ++i) {
    pid_t pid = VforkChildThatAllocates();
    ASSERT_GT(pid, 0);
    int status;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
  }
  free(malloc(64));
#ifndef RSEQMALLOC_TEST_GLIBC
  EXPECT_STREQ(rseqmalloc_mode(), ExpectedCacheMode());
#endif
}

}  // namespace
}  // namespace rseqmalloc_test
