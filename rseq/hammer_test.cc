// 32 threads on a 2-core machine hammer each primitive while another thread
// sends them SIGUSR1 continuously; the handler runs critical sections of its
// own (rseq configurations). Totals must stay exact. (The slab's own hammer
// is slab_test.) The delayed configurations spin inside every section, so
// preemptions and signals land inside sections: they must restart (the
// abort counter grows) and still be exact.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <cstdio>
#include <time.h>
#include <map>
#include <vector>

#include "gtest/gtest.h"
#include "rseq/cpus.h"
#include "rseq/primitives.h"
#include "rseq/reference.h"
#include "rseq/registration.h"
#include "rseq/restarts.h"
#include "rseq/test_util.h"

namespace rseqmalloc::rseq {
namespace {

constexpr int kThreads = 32;
constexpr std::uint32_t kDelaySpins = 300;

// Signal-handler work: one per-CPU add per signal (rseq configurations;
// nested inside an interrupted section), counted separately so the result
// can be checked exactly.
PerCpuSlot g_signal_slots[kMaxPossibleCpusFallback];
std::atomic<std::int64_t> g_signal_adds{0};

template <typename C>
void SignalWork() {
  if constexpr (C::Ops::kAsyncSignalSafe) {
    int id = C::Ops::template AddToSlot<C::kMode>(g_signal_slots,
                                                  NumPossibleCpus(), 1);
    if (id >= 0) g_signal_adds.fetch_add(1, std::memory_order_relaxed);
  } else {
    // The reference takes locks: only async-signal-safe work here.
    g_signal_adds.fetch_add(1, std::memory_order_relaxed);
  }
}

template <typename C>
class HammerTest : public ::testing::Test {
 public:  // the helpers below take the fixture
  using Ops = typename C::Ops;
  static constexpr IndexMode kMode = C::kMode;

  void SetUp() override {
    RSEQMALLOC_SKIP_IF_UNSUPPORTED(C);
    ASSERT_NE(RegisterCurrentThread(), Registration::kUnavailable);
    num_ids_ = NumPossibleCpus();
    if (C::kDelayed) internal::SetInjectedDelaySpins(kDelaySpins);
    std::memset(g_signal_slots, 0, sizeof(g_signal_slots));
    g_signal_adds.store(0);
    restarts_before_ = RestartCount();
  }

  void TearDown() override {
    internal::SetInjectedDelaySpins(0);
    if (::testing::Test::IsSkipped()) return;
    // Work done inside signal handlers is exact too.
    std::int64_t signal_sum = 0;
    for (const PerCpuSlot& slot : g_signal_slots) signal_sum += slot.value;
    if (C::Ops::kAsyncSignalSafe) {
      EXPECT_EQ(signal_sum, g_signal_adds.load());
    }
    const std::uint64_t restarts = RestartCount() - restarts_before_;
    RecordProperty("restarts", static_cast<int>(restarts));
    std::printf("restarts: %llu\n", static_cast<unsigned long long>(restarts));
    if (C::kDelayed) {
      EXPECT_GT(restarts, 0u) << "no critical section was ever restarted";
    }
  }

  // Runs body on kThreads threads under a signal storm, for at least
  // kDurationNs (bodies loop while KeepGoing()).
  void Run(const std::function<void(int)>& body) {
    deadline_ns_ = NowNs() + kDurationNs;
    std::int64_t handled = testing::RunThreads(kThreads, body, &SignalWork<C>);
    EXPECT_GT(handled, 0) << "the signal storm never hit";
    EXPECT_EQ(g_signal_adds.load(), handled);
  }

  // Every thread does at least kMinIterations, and goes on until the
  // deadline so that the storm and preemptions have time to strike.
  bool KeepGoing(std::int64_t i) const {
    if (i < kMinIterations || (i & 63) != 0) return true;
    return NowNs() < deadline_ns_;
  }

  static std::int64_t NowNs() {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000ll + ts.tv_nsec;
  }

  static constexpr std::int64_t kDurationNs = 300 * 1000 * 1000;
  static constexpr std::int64_t kMinIterations = 1000;
  int num_ids_ = 0;
  std::int64_t deadline_ns_ = 0;
  std::uint64_t restarts_before_ = 0;
};

using Configs =
    ::testing::Types<testing::RseqCpu, testing::RseqMmCid,
                     testing::ReferenceCpu, testing::ReferenceMmCid,
                     testing::DelayedCpu, testing::DelayedMmCid>;
TYPED_TEST_SUITE(HammerTest, Configs, testing::ConfigNames);

TYPED_TEST(HammerTest, PerCpuAddIsExact) {
  using Ops = typename TestFixture::Ops;
  constexpr IndexMode kMode = TestFixture::kMode;
  const int n = this->num_ids_;
  std::vector<PerCpuSlot> slots(n);
  std::atomic<int> not_done{0};
  std::atomic<std::int64_t> expected{0};
  this->Run([&](int thread) {
    std::int64_t i = 0;
    for (; this->KeepGoing(i); ++i) {
      if (Ops::template AddToSlot<kMode>(slots.data(), n, thread + 1) < 0) {
        not_done.fetch_add(1);
      }
    }
    expected.fetch_add(i * (thread + 1));
  });
  EXPECT_EQ(not_done.load(), 0);
  std::int64_t sum = 0;
  for (const PerCpuSlot& slot : slots) sum += slot.value;
  EXPECT_EQ(sum, expected.load());
}

// Per-CPU lock-free increment: read the word of the id we are on, then
// compare-and-store old + 1 on that id; retry on mismatch or wrong id.
template <typename T, typename Fixture>
void CompareAndStoreIncrementIsExact(Fixture* fixture) {
  using Ops = typename Fixture::Ops;
  constexpr IndexMode kMode = Fixture::kMode;
  constexpr unsigned kShift = 7;
  constexpr std::size_t kOffset = 64;
  const int n = fixture->num_ids_;
  std::vector<char> raw(static_cast<std::size_t>(n) << kShift);
  char* base = raw.data();
  auto word = [&](int id) {
    return reinterpret_cast<T*>(base + (static_cast<std::size_t>(id) << kShift) +
                                kOffset);
  };
  std::atomic<int> bad_id{0};
  std::atomic<std::uint64_t> expected{0};
  fixture->Run([&](int) {
    std::int64_t i = 0;
    for (; fixture->KeepGoing(i); ++i) {
      for (;;) {
        int id = Ops::template CurrentId<kMode>();
        if (id < 0 || id >= n) {
          bad_id.fetch_add(1);
          break;
        }
        T old = __atomic_load_n(word(id), __ATOMIC_RELAXED);
        CasResult r = Ops::template CompareAndStore<kMode, T>(
            id, base, kShift, kOffset, old, static_cast<T>(old + 1));
        if (r == CasResult::kStored) break;
      }
    }
    expected.fetch_add(i);
  });
  EXPECT_EQ(bad_id.load(), 0);
  std::uint64_t sum = 0;
  for (int id = 0; id < n; ++id) sum += *word(id);
  EXPECT_EQ(sum, expected.load());
}

TYPED_TEST(HammerTest, CompareAndStore64IncrementIsExact) {
  CompareAndStoreIncrementIsExact<std::uint64_t>(this);
}

TYPED_TEST(HammerTest, CompareAndStore32IncrementIsExact) {
  CompareAndStoreIncrementIsExact<std::uint32_t>(this);
}

}  // namespace
}  // namespace rseqmalloc::rseq
