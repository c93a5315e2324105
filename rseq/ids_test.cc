// Properties of the ids the kernel publishes, as seen through ids.h.

#include "rseq/ids.h"

// The kernel's own header in the same translation unit: the library lives in
// rseqmalloc::rseq, so nothing of ours collides with `struct rseq`.
#include <linux/rseq.h>
#include <sched.h>
#include <time.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "gtest/gtest.h"
#include "rseq/cpus.h"
#include "rseq/registration.h"
#include "rseq/test_util.h"

namespace rseqmalloc::rseq {
namespace {

// abi.h restates the kernel's layout; it must agree with the kernel header.
static_assert(offsetof(struct ::rseq, cpu_id_start) == offsetof(Rseq, cpu_id_start));
static_assert(offsetof(struct ::rseq, cpu_id) == kCpuIdOffset);
static_assert(offsetof(struct ::rseq, rseq_cs) == kRseqCsOffset);
static_assert(offsetof(struct ::rseq, flags) == offsetof(Rseq, flags));
static_assert(offsetof(struct ::rseq_cs, abort_ip) == offsetof(RseqCs, abort_ip));
static_assert(RSEQ_CPU_ID_UNINITIALIZED == kCpuIdUninitialized);
static_assert(RSEQ_CPU_ID_REGISTRATION_FAILED == kCpuIdRegistrationFailed);

std::int64_t NowNs() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000ll + ts.tv_nsec;
}

// mm_cid keeps the number of ids near the number of CPUs the process can
// use, however many threads it has: 8 busy threads on this machine's CPUs
// must only ever see ids below the allowed-CPU count.
TEST(IdsTest, MmCidStaysBelowAllowedCpuCount) {
  if (!MmCidSupported()) GTEST_SKIP() << "kernel without mm_cid";
  const int allowed = AllowedCpuCount();
  const int possible = NumPossibleCpus();
  std::atomic<int> max_cid{-1};
  std::atomic<int> bad_cpu{0};
  std::atomic<std::int64_t> samples{0};
  testing::RunThreads(8, [&](int) {
    ASSERT_NE(RegisterCurrentThread(), Registration::kUnavailable);
    int local_max = -1;
    std::int64_t n = 0;
    const std::int64_t deadline = NowNs() + 400 * 1000 * 1000;
    while (NowNs() < deadline) {
      for (int i = 0; i < 1000; ++i, ++n) {
        int cid = MmCid();
        int cpu = CpuId();
        if (cid > local_max) local_max = cid;
        if (cpu < 0 || cpu >= possible) bad_cpu.fetch_add(1);
      }
    }
    samples.fetch_add(n);
    int seen = max_cid.load();
    while (local_max > seen && !max_cid.compare_exchange_weak(seen, local_max)) {
    }
  });
  EXPECT_GT(samples.load(), 0);
  EXPECT_GE(max_cid.load(), 0);
  EXPECT_LT(max_cid.load(), allowed);
  EXPECT_EQ(bad_cpu.load(), 0);
}

TEST(IdsTest, NodeIdIsAnOnlineNode) {
  if (!NodeIdSupported()) GTEST_SKIP() << "kernel without node_id";
  ASSERT_NE(RegisterCurrentThread(), Registration::kUnavailable);
  EXPECT_GE(NodeId(), 0);
  EXPECT_LT(NodeId(), 1024);
}

// The readers and the registration code agree on where the area is.
TEST(IdsTest, ReadersUseTheRegisteredArea) {
  ASSERT_NE(RegisterCurrentThread(), Registration::kUnavailable);
  testing::ScopedPinToCurrentCpu pin;
  const Rseq* area = internal::ThreadArea();
  EXPECT_EQ(area->cpu_id, CpuId());
  EXPECT_EQ(static_cast<int>(area->mm_cid), MmCid());
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(area) % 32, 0u);
}

}  // namespace
}  // namespace rseqmalloc::rseq
