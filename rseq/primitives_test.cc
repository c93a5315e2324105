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

// A slab of 4 KiB regions with four classes; the test uses class 2, whose
// stack is slots [10, 14). Headers of classes 1 and 3 and every other slot
// hold sentinels that must survive.
TYPED_TEST(PrimitivesTest, SlabPushPopFollowTheModel) {
  using Ops = typename TestFixture::Ops;
  constexpr IndexMode kMode = TestFixture::kMode;
  constexpr unsigned kShift = 12;
  constexpr std::size_t kClass = 2;
  constexpr std::uint16_t kBegin = 10;
  constexpr std::uint16_t kEnd = 14;
  const int n = this->num_ids_;
  void* base = std::aligned_alloc(4096, static_cast<std::size_t>(n) << kShift);
  ASSERT_NE(base, nullptr);
  auto region = [&](int id) {
    return static_cast<char*>(base) + (static_cast<std::size_t>(id) << kShift);
  };
  auto header = [&](int id, std::size_t c) {
    return reinterpret_cast<std::uint16_t*>(region(id) + 4 * c);
  };
  auto slot = [&](int id, int s) {
    return reinterpret_cast<void**>(region(id)) + s;
  };
  void* const kSentinel = reinterpret_cast<void*>(0x5e5e5e5e5e5e5e5e);
  for (int id = 0; id < n; ++id) {
    for (int s = 2; s < 512; ++s) *slot(id, s) = kSentinel;
    for (std::size_t c = 0; c < 4; ++c) {
      header(id, c)[0] = static_cast<std::uint16_t>(100 + c);
      header(id, c)[1] = static_cast<std::uint16_t>(200 + c);
    }
    header(id, kClass)[0] = kBegin;
    header(id, kClass)[1] = kEnd;
  }

  testing::ScopedPinToCurrentCpu pin;
  std::vector<std::vector<void*>> model(n);
  int next_token = 1;
  // Fill past capacity, drain past empty, twice.
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < kEnd - kBegin + 2; ++i) {
      void* item = reinterpret_cast<void*>(static_cast<std::uintptr_t>(next_token++) * 16);
      int id = -1;
      bool pushed = Ops::template Push<kMode>(base, kShift, kClass, item, &id);
      ASSERT_GE(id, 0);
      ASSERT_LT(id, n);
      bool room = model[id].size() < static_cast<std::size_t>(kEnd - kBegin);
      EXPECT_EQ(pushed, room) << "push " << i << " on id " << id;
      if (pushed) model[id].push_back(item);
    }
    for (int i = 0; i < kEnd - kBegin + 2; ++i) {
      int id = -1;
      void* item = Ops::template Pop<kMode>(base, kShift, kClass, kBegin, &id);
      ASSERT_GE(id, 0);
      ASSERT_LT(id, n);
      if (model[id].empty()) {
        EXPECT_EQ(item, nullptr) << "pop " << i << " on id " << id;
      } else {
        EXPECT_EQ(item, model[id].back()) << "pop " << i << " on id " << id;
        model[id].pop_back();
      }
    }
  }
  // Also the id-out pointer is optional.
  EXPECT_TRUE((Ops::template Push<kMode>(base, kShift, kClass, kSentinel, nullptr)));
  EXPECT_EQ((Ops::template Pop<kMode>(base, kShift, kClass, kBegin, nullptr)),
            kSentinel);

  for (int id = 0; id < n; ++id) {
    SCOPED_TRACE(id);
    EXPECT_EQ(header(id, kClass)[0], kBegin + model[id].size());
    EXPECT_EQ(header(id, kClass)[1], kEnd);
    for (std::size_t c : {0, 1, 3}) {
      EXPECT_EQ(header(id, c)[0], 100 + c);
      EXPECT_EQ(header(id, c)[1], 200 + c);
    }
    for (int s = 2; s < 512; ++s) {
      if (s >= kBegin && s < kEnd) continue;
      ASSERT_EQ(*slot(id, s), kSentinel) << "slot " << s;
    }
  }
  std::free(base);
}

}  // namespace
}  // namespace rseqmalloc::rseq
