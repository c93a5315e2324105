#include "allocator/pages/pagemap.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <thread>
#include <vector>

namespace rseqmalloc::internal {
namespace {

constinit PageMap g_map;  // separate from the process pagemap

TEST(PageMap, UnknownAddressesReadAsEmpty) {
  for (uintptr_t a : {uintptr_t{0}, uintptr_t{0x1000}, uintptr_t{0x7fff12345678},
                      uintptr_t{1} << 48, ~uintptr_t{0}, uintptr_t{0xffff800000000000}}) {
    EXPECT_EQ(g_map.ClassOfAddress(a), 0u) << a;
    EXPECT_EQ(g_map.GetSpan(a >> kPageShift), nullptr) << a;
  }
}

TEST(PageMap, SetAndGetRoundTrip) {
  uintptr_t first = (uintptr_t{0x5a5a} << kLeafBits) - 3;  // straddles two leaves
  ASSERT_TRUE(g_map.Ensure(first, 6));
  Span spans[6] = {};
  for (int i = 0; i < 6; ++i) {
    g_map.SetSpan(first + i, &spans[i]);
    g_map.SetClass(first + i, static_cast<uint32_t>(i + 1));
  }
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(g_map.GetSpan(first + i), &spans[i]);
    uintptr_t addr = ((first + i) << kPageShift) + 1234;
    EXPECT_EQ(g_map.ClassOfAddress(addr), static_cast<uint32_t>(i + 1));
  }
  // Neighbours in the same leaf stay empty.
  EXPECT_EQ(g_map.GetSpan(first - 1), nullptr);
  EXPECT_EQ(g_map.ClassOfAddress((first + 6) << kPageShift), 0u);
}

TEST(PageMap, EnsureCountsEachLeafOnce) {
  uintptr_t first = uintptr_t{0x1234} << kLeafBits;
  uint64_t before = g_map.leaf_bytes();
  ASSERT_TRUE(g_map.Ensure(first, 10));
  ASSERT_TRUE(g_map.Ensure(first + 100, 10));
  EXPECT_EQ(g_map.leaf_bytes() - before, sizeof(PageMap::Leaf));
}

TEST(PageMap, RejectsRangesBeyond48Bits) {
  uintptr_t last_page = (uintptr_t{1} << kPageNumberBits) - 1;
  EXPECT_FALSE(g_map.Ensure(last_page, 2));
  EXPECT_FALSE(g_map.Ensure(~uintptr_t{0} - 1, 1));
}

TEST(PageMap, ConcurrentEnsureMapsOneLeaf) {
  uintptr_t first = uintptr_t{0x4321} << kLeafBits;
  uint64_t before = g_map.leaf_bytes();
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] { EXPECT_TRUE(g_map.Ensure(first + t, 1)); });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(g_map.leaf_bytes() - before, sizeof(PageMap::Leaf));
  EXPECT_EQ(g_map.GetSpan(first), nullptr);
}

}  // namespace
}  // namespace rseqmalloc::internal
