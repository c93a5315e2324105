// Registration in the three situations a process can be in: glibc's area,
// our own area (glibc's registration turned off), and no rseq at all
// (seccomp makes the syscall fail). The last two re-execute this binary.

#include "rseq/registration.h"
#include "rseq/slab.h"

#include <sched.h>

#include <atomic>
#include <cstdint>
#include <cstring>
#include <thread>

#include "gtest/gtest.h"
#include "rseq/cpus.h"
#include "rseq/ids.h"
#include "rseq/percpu_counter.h"
#include "rseq/primitives.h"
#include "rseq/test_util.h"

namespace rseqmalloc::rseq {
namespace {

// cpu_id must agree with the kernel's sched_getcpu() while we cannot move.
void ExpectIdsValid() {
  // mm_cid is bounded by the CPUs the process may use, so count them before
  // pinning this thread to one.
  const int allowed = AllowedCpuCount();
  testing::ScopedPinToCurrentCpu pin;
  EXPECT_EQ(CpuId(), pin.cpu());
  EXPECT_EQ(CpuId(), sched_getcpu());
  EXPECT_LT(CpuId(), NumPossibleCpus());
  if (MmCidSupported()) {
    EXPECT_GE(MmCid(), 0);
    EXPECT_LT(MmCid(), allowed);
  }
  if (NodeIdSupported()) {
    EXPECT_GE(NodeId(), 0);
  }
}

TEST(RegistrationTest, DefaultEnvironmentUsesGlibcArea) {
  if (testing::ChildScenario() != nullptr) GTEST_SKIP() << "parent only";
  EXPECT_EQ(RegisterCurrentThread(), Registration::kGlibc);
  EXPECT_EQ(CurrentRegistration(), Registration::kGlibc);
  ExpectIdsValid();

  // glibc registers every thread it creates before it runs user code.
  std::thread([] {
    EXPECT_EQ(CurrentRegistration(), Registration::kGlibc);
    EXPECT_GE(CpuId(), 0);
    EXPECT_EQ(RegisterCurrentThread(), Registration::kGlibc);
    ExpectIdsValid();
  }).join();
}

TEST(RegistrationTest, RegisterPreservesErrno) {
  errno = 1234;
  RegisterCurrentThread();
  CurrentRegistration();
  EXPECT_EQ(errno, 1234);
}

TEST(RegistrationTest, OwnAreaWhenGlibcDoesNotRegister) {
  if (testing::ChildScenario() != nullptr) GTEST_SKIP() << "parent only";
  EXPECT_EQ(testing::RunTestInChild("ChildTest.OwnArea", "own", false),
            testing::kChildPassed);
}

TEST(RegistrationTest, UnavailableUnderSeccomp) {
  if (testing::ChildScenario() != nullptr) GTEST_SKIP() << "parent only";
  EXPECT_EQ(testing::RunTestInChild("ChildTest.Unavailable", "unavailable",
                                    true),
            testing::kChildPassed);
}

// --- Run only in re-executed children ---------------------------------------

TEST(ChildTest, OwnArea) {
  const char* scenario = testing::ChildScenario();
  if (scenario == nullptr || std::strcmp(scenario, "own") != 0) {
    GTEST_SKIP() << "runs in a child process only";
  }
  // The library's constructor registered the main thread already.
  EXPECT_EQ(CurrentRegistration(), Registration::kOwn);
  EXPECT_EQ(RegisterCurrentThread(), Registration::kOwn);
  ExpectIdsValid();

  // A new thread is unregistered until it asks: ids read negative, so a
  // fast path misses instead of using a stale id; then it registers.
  std::thread([] {
    EXPECT_EQ(CurrentRegistration(), Registration::kUnavailable);
    EXPECT_LT(CpuId(), 0);
    EXPECT_LT(MmCid(), 0);
    PerCpuSlot slots[1];
    EXPECT_EQ(RseqOps::AddToSlot<IndexMode::kCpuId>(slots, 1, 1), kNotDone);
    EXPECT_EQ(RegisterCurrentThread(), Registration::kOwn);
    EXPECT_EQ(CurrentRegistration(), Registration::kOwn);
    ExpectIdsValid();
  }).join();

  // The primitives work on our own area.
  static PerCpuSlot slots[kMaxPossibleCpusFallback];
  int id = RseqOps::AddToSlot<IndexMode::kCpuId>(slots, NumPossibleCpus(), 5);
  ASSERT_GE(id, 0);
  EXPECT_EQ(slots[id].value, 5);
  testing::FinishChild();
}

TEST(ChildTest, Unavailable) {
  const char* scenario = testing::ChildScenario();
  if (scenario == nullptr || std::strcmp(scenario, "unavailable") != 0) {
    GTEST_SKIP() << "runs in a child process only";
  }
  EXPECT_EQ(RegisterCurrentThread(), Registration::kUnavailable);
  EXPECT_EQ(CurrentRegistration(), Registration::kUnavailable);
  EXPECT_LT(CpuId(), 0);
  EXPECT_LT(MmCid(), 0);
  EXPECT_LT(NodeId(), 0);

  // Every primitive reports "not done", in both index modes.
  alignas(4096) static char region[2][4096];
  PerCpuSlot slots[2] = {};
  EXPECT_EQ(RseqOps::AddToSlot<IndexMode::kCpuId>(slots, 2, 1), kNotDone);
  EXPECT_EQ(RseqOps::AddToSlot<IndexMode::kMmCid>(slots, 2, 1), kNotDone);
  EXPECT_EQ(slots[0].value + slots[1].value, 0);
  for (int expected_id : {0, 1}) {
    EXPECT_EQ((RseqOps::CompareAndStore<IndexMode::kCpuId, std::uint64_t>(
                  expected_id, region, 12, 64, 0, 1)),
              CasResult::kWrongId);
    EXPECT_EQ((RseqOps::CompareAndStore<IndexMode::kMmCid, std::uint32_t>(
                  expected_id, region, 12, 64, 0, 1)),
              CasResult::kWrongId);
  }
  // A started slab, with capacity and an item on every id: an unregistered
  // thread pops nothing and pushes nothing, and the item stays.
  for (IndexMode mode : {IndexMode::kCpuId, IndexMode::kMmCid}) {
    static const std::uint32_t kCapacity[2] = {0, 4};
    PercpuSlab slab;
    ASSERT_TRUE(slab.Init(kCapacity, 2));
    slab.Start(mode);
    for (int i = 0; i < slab.num_ids(); ++i) slab.Grow(i, 1, 4);
    int id = 0;
    EXPECT_EQ(slab.PopRetrying(1, &id), nullptr);
    EXPECT_LT(id, 0);
    EXPECT_FALSE(slab.PushRetrying(1, region, &id));
    EXPECT_LT(id, 0);
    void* items[1] = {region};
    EXPECT_EQ(slab.PushBatch(1, items, 1, &id), 0);
    EXPECT_LT(slab.CurrentId(), 0);
    for (int i = 0; i < slab.num_ids(); ++i) EXPECT_EQ(slab.FillOf(i, 1).cached, 0u);
    slab.Release();
  }

  // The counter still counts exactly, through its fallback, from threads.
  static PerCpuCounter<IndexMode::kCpuId> counter;
  static PerCpuCounter<IndexMode::kMmCid> mm_counter;
  testing::RunThreads(8, [](int) {
    EXPECT_EQ(RegisterCurrentThread(), Registration::kUnavailable);
    for (int i = 0; i < 10000; ++i) {
      counter.Add(3);
      mm_counter.Add(1);
    }
  });
  EXPECT_EQ(counter.Sum(), 8 * 10000 * 3);
  EXPECT_EQ(mm_counter.Sum(), 8 * 10000);
  testing::FinishChild();
}

}  // namespace
}  // namespace rseqmalloc::rseq
