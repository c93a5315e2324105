#include "rseq/percpu_counter.h"

#include <time.h>

#include <atomic>
#include <cstdint>

#include "gtest/gtest.h"
#include "rseq/registration.h"
#include "rseq/test_util.h"

namespace rseqmalloc::rseq {
namespace {

std::int64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

// Constant-initialised: usable before main, no constructor runs.
constinit PerCpuCounter<> g_counter;
constinit PerCpuCounter<IndexMode::kCpuId> g_signal_counter;

TEST(PerCpuCounterTest, SingleThread) {
  static PerCpuCounter<> counter;
  EXPECT_EQ(counter.Sum(), 0);
  counter.Add(5);
  counter.Add(-2);
  counter.Add(1000);
  EXPECT_EQ(counter.Sum(), 1003);
}

// Add() is async-signal-safe: the storm's handler adds to a counter too.
void AddFromSignal() { g_signal_counter.Add(1); }

template <typename Counter>
void ExpectExactUnderStorm(Counter* counter) {
  const std::int64_t before = counter->Sum();
  std::atomic<std::int64_t> expected{0};
  const std::int64_t signals_before = g_signal_counter.Sum();
  std::int64_t handled = testing::RunThreads(
      32,
      [&](int thread) {
        // At least 20000 adds and 200 ms, so that signals land meanwhile.
        const std::int64_t deadline = NowNs() + 200 * 1000 * 1000;
        std::int64_t i = 0;
        for (; i < 20000 || (i & 63) != 0 || NowNs() < deadline; ++i) {
          counter->Add(thread + 1);
        }
        expected.fetch_add(i * (thread + 1));
      },
      &AddFromSignal);
  EXPECT_GT(handled, 0);
  EXPECT_EQ(counter->Sum() - before, expected.load());
  EXPECT_EQ(g_signal_counter.Sum() - signals_before, handled);
}

TEST(PerCpuCounterTest, ExactWithManyThreadsAndSignals) {
  ExpectExactUnderStorm(&g_counter);
}

TEST(PerCpuCounterTest, MmCidModeIsExact) {
  static PerCpuCounter<IndexMode::kMmCid> counter;
  ExpectExactUnderStorm(&counter);
}

// Ids beyond kMaxIds go to the shared fallback; the sum stays exact.
TEST(PerCpuCounterTest, IdsBeyondCapacityFallBack) {
  static PerCpuCounter<IndexMode::kCpuId, 1> counter;
  ExpectExactUnderStorm(&counter);
}

}  // namespace
}  // namespace rseqmalloc::rseq
