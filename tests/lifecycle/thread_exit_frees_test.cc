// thread_exit_frees: threads are born, allocate, hand some blocks on and die,
// over and over; the blocks they leave are freed by later threads. Whatever
// a dying thread held (a per-thread cache in thread mode, a cid slot in cid
// mode) must come back: resident memory may not grow with the number of
// thread lifetimes.
#include <pthread.h>
#include <stdlib.h>

#include <cstring>
#include <mutex>

#include "gtest/gtest.h"
#include "tests/util/test_util.h"

namespace rseqmalloc_test {
namespace {

constexpr size_t kMiB = size_t{1} << 20;
constexpr int kIterations = 1000;
constexpr int kWarmupIterations = 200;
constexpr int kThreadsPerIteration = 2;
constexpr int kBlocksPerThread = 400;
constexpr int kHandoffSlots = kThreadsPerIteration * kBlocksPerThread;
// Growth allowed between iteration 200 and 1000 (800 iterations, 1600 thread
// lifetimes). A leak of even 40 KiB per thread lifetime exceeds it.
constexpr size_t kAllowedGrowth = 64 * kMiB;

struct Block {
  void* p = nullptr;
  size_t size = 0;
  uint64_t key = 0;
};

// Blocks left behind by exited threads, freed by the next generation.
std::mutex handoff_mu;
Block handoff[kHandoffSlots];
int corrupted_blocks = 0;
int failed_allocations = 0;

void* ShortLivedThread(void* arg) {
  Rng rng(reinterpret_cast<uintptr_t>(arg));
  // Free what earlier (now dead) threads left.
  {
    std::lock_guard<std::mutex> lock(handoff_mu);
    for (Block& b : handoff) {
      if (b.p == nullptr || rng.Below(kThreadsPerIteration) != 0) continue;
      if (!PatternIntact(b.p, b.size, b.key)) ++corrupted_blocks;
      free(b.p);
      b = Block{};
    }
  }
  Block mine[kBlocksPerThread];
  for (Block& b : mine) {
    b.size = rng.Below(32) == 0 ? rng.LogUniform(1, 512 * 1024)
                                : rng.LogUniform(1, 2048);
    b.p = malloc(b.size);
    if (b.p == nullptr) {
      std::lock_guard<std::mutex> lock(handoff_mu);
      ++failed_allocations;
      continue;
    }
    b.key = PatternKey(b.p, b.size, 31);
    FillPattern(b.p, b.size, b.key);
  }
  // Keep a third alive past this thread's death; free the rest here.
  std::lock_guard<std::mutex> lock(handoff_mu);
  int slot = 0;
  for (Block& b : mine) {
    if (b.p == nullptr) continue;
    if (rng.Below(3) == 0) {
      while (slot < kHandoffSlots && handoff[slot].p != nullptr) ++slot;
      if (slot < kHandoffSlots) {
        handoff[slot] = b;
        continue;
      }
    }
    if (!PatternIntact(b.p, b.size, b.key)) ++corrupted_blocks;
    free(b.p);
  }
  return nullptr;
}

TEST(ThreadExitFrees, ResidentMemoryDoesNotGrowWithThreadLifetimes) {
  size_t rss_warm = 0;
  for (int it = 0; it < kIterations; ++it) {
    pthread_t t[kThreadsPerIteration];
    for (int i = 0; i < kThreadsPerIteration; ++i) {
      uintptr_t seed = static_cast<uintptr_t>(it) * 16 + i + 1;
      ASSERT_EQ(pthread_create(&t[i], nullptr, ShortLivedThread,
                               reinterpret_cast<void*>(seed)),
                0);
    }
    for (pthread_t id : t) pthread_join(id, nullptr);
    if (it + 1 == kWarmupIterations) rss_warm = CurrentRssBytes();
  }
  size_t rss_end = CurrentRssBytes();
  EXPECT_LT(rss_end, rss_warm + kAllowedGrowth)
      << "RSS " << rss_warm / kMiB << " MiB after " << kWarmupIterations
      << " iterations, " << rss_end / kMiB << " MiB after " << kIterations;
  // Everything still handed on is freed by the main thread, which never
  // allocated it.
  for (Block& b : handoff) {
    if (b.p == nullptr) continue;
    if (!PatternIntact(b.p, b.size, b.key)) ++corrupted_blocks;
    free(b.p);
    b = Block{};
  }
  EXPECT_EQ(corrupted_blocks, 0);
  EXPECT_EQ(failed_allocations, 0);
}

}  // namespace
}  // namespace rseqmalloc_test
