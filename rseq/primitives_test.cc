// Single-threaded contract tests of pseudocode.h, run against RseqOps and
// ReferenceOps in both index modes. The thread is pinned, but every check
// goes through a per-id model keyed by the id each operation reports, so a
// changed id (mm_cid may change even on one CPU) cannot make them flaky.

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "rseq/cpus.h"
#include "rseq/primitives.h"
#include "rseq/reference.h"
#include "rseq/registration.h"
#include "rseq/test_util.h"

namespace rseqmalloc::rseq {
namespace {

template <typename C>
class PrimitivesTest : public ::testing::Test {
 protected:
  using Ops = typename C::Ops;
  static constexpr IndexMode kMode = C::kMode;

  void SetUp() override {
    RSEQMALLOC_SKIP_IF_UNSUPPORTED(C);
    ASSERT_NE(RegisterCurrentThread(), Registration::kUnavailable);
    num_ids_ = NumPossibleCpus();
  }

  int num_ids_ = 0;
};

using Configs =
    ::testing::Types<testing::RseqCpu, testing::RseqMmCid,
                     testing::ReferenceCpu, testing::ReferenceMmCid,
                     testing::DelayedCpu, testing::DelayedMmCid>;
TYPED_TEST_SUITE(PrimitivesTest, Configs, testing::ConfigNames);

TYPED_TEST(PrimitivesTest, AddGoesToTheReportedSlot) {
  using Ops = typename TestFixture::Ops;
  constexpr IndexMode kMode = TestFixture::kMode;
  testing::ScopedPinToCurrentCpu pin;
  std::vector<PerCpuSlot> slots(this->num_ids_);
  std::vector<std::int64_t> model(this->num_ids_);
  for (int i = 1; i <= 1000; ++i) {
    int id = Ops::template AddToSlot<kMode>(slots.data(), this->num_ids_, i);
    ASSERT_GE(id, 0);
    ASSERT_LT(id, this->num_ids_);
    model[id] += i;
  }
  for (int id = 0; id < this->num_ids_; ++id) {
    EXPECT_EQ(slots[id].value, model[id]) << "id " << id;
  }
}

TYPED_TEST(PrimitivesTest, AddBeyondTheSlotsIsNotDone) {
  using Ops = typename TestFixture::Ops;
  constexpr IndexMode kMode = TestFixture::kMode;
  testing::ScopedPinToCurrentCpu pin;
  std::vector<PerCpuSlot> slots(this->num_ids_);
  for (int i = 0; i < 100; ++i) {
    // num_slots == current id: the id is out of range.
    int current = Ops::template CurrentId<kMode>();
    int id = Ops::template AddToSlot<kMode>(slots.data(), current, 1);
    if (id == kNotDone) continue;
    // Only possible if the id changed in between; then it is in range.
    EXPECT_LT(id, current);
    slots[id].value -= 1;
  }
  for (const PerCpuSlot& slot : slots) EXPECT_EQ(slot.value, 0);
}

template <typename Ops, IndexMode kMode, typename T>
void CheckCompareAndStore(int num_ids) {
  constexpr unsigned kShift = 8;
  constexpr std::size_t kOffset = 64;
  std::vector<char> raw((static_cast<std::size_t>(num_ids) << kShift) + 256);
  char* base = raw.data();
  auto word = [&](int id) {
    T value;
    std::memcpy(&value, base + (static_cast<std::size_t>(id) << kShift) +
                            kOffset, sizeof(T));
    return value;
  };

  // Store on the current id (retry if we were moved in between).
  int id = -1;
  CasResult result = CasResult::kWrongId;
  for (int tries = 0; tries < 100 && result == CasResult::kWrongId; ++tries) {
    id = Ops::template CurrentId<kMode>();
    ASSERT_GE(id, 0);
    result = Ops::template CompareAndStore<kMode, T>(id, base, kShift, kOffset,
                                                     T{0}, T{7});
  }
  ASSERT_EQ(result, CasResult::kStored);
  EXPECT_EQ(word(id), T{7});

  // A wrong expected value never stores.
  for (int tries = 0; tries < 100; ++tries) {
    id = Ops::template CurrentId<kMode>();
    result = Ops::template CompareAndStore<kMode, T>(id, base, kShift, kOffset,
                                                     T{0}, T{9});
    if (result != CasResult::kWrongId) break;
  }
  EXPECT_EQ(result, CasResult::kMismatch);
  EXPECT_EQ(word(id), T{7});

  // Another id, or a negative one, is refused without touching anything.
  int other = (id + 1) % (num_ids + 1);
  if (other != Ops::template CurrentId<kMode>()) {
    EXPECT_EQ((Ops::template CompareAndStore<kMode, T>(other, base, kShift,
                                                       kOffset, T{0}, T{5})),
              CasResult::kWrongId);
  }
  EXPECT_EQ((Ops::template CompareAndStore<kMode, T>(-1, base, kShift, kOffset,
                                                     T{0}, T{5})),
            CasResult::kWrongId);

  // Full-width values survive (no truncation of the upper half).
  const T big = static_cast<T>(~T{0} - 1);
  for (int tries = 0; tries < 100; ++tries) {
    id = Ops::template CurrentId<kMode>();
    T old = word(id);
    result = Ops::template CompareAndStore<kMode, T>(id, base, kShift, kOffset,
                                                     old, big);
    if (result != CasResult::kWrongId) break;
  }
  EXPECT_EQ(result, CasResult::kStored);
  EXPECT_EQ(word(id), big);

  // Exactly the words that were stored changed.
  int changed = 0;
  for (std::size_t i = 0; i < raw.size(); ++i) changed += raw[i] != 0;
  EXPECT_LE(changed, 2 * static_cast<int>(sizeof(T)));
}

TYPED_TEST(PrimitivesTest, CompareAndStore64) {
  testing::ScopedPinToCurrentCpu pin;
  CheckCompareAndStore<typename TestFixture::Ops, TestFixture::kMode,
                       std::uint64_t>(this->num_ids_);
}

TYPED_TEST(PrimitivesTest, CompareAndStore32) {
  testing::ScopedPinToCurrentCpu pin;
  CheckCompareAndStore<typename TestFixture::Ops, TestFixture::kMode,
                       std::uint32_t>(this->num_ids_);
}

}  // namespace
}  // namespace rseqmalloc::rseq
