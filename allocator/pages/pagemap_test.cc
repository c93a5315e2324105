#include "allocator/pages/pagemap.h"

#include <gtest/gtest.h>
#include <sys/resource.h>

#include <cstdint>
#include <thread>
#include <vector>

namespace rseqmalloc::internal {
namespace {

constinit PageMap g_map;  // separate from the process pagemap
// The fallback where the flat class array is not reserved (pagemap.h).
constinit PageMap g_leaves_map(PageMap::ClassBytes::kInLeaves);

const uintptr_t kUnknownAddresses[] = {0,
                                       0x1000,
                                       0x7fff12345678,
                                       uintptr_t{1} << 47,
                                       uintptr_t{1} << 48,
                                       ~uintptr_t{0},
                                       0xffff800000000000};

// Sets span and class of `n` pages from `first` and reads them back.
void ExpectRoundTrip(PageMap& map, uintptr_t first, int n) {
  ASSERT_TRUE(map.Ensure(first, n));
  std::vector<Span> spans(n);
  for (int i = 0; i < n; ++i) {
    map.SetSpan(first + i, &spans[i]);
    map.SetClass(first + i, static_cast<uint32_t>(i + 1));
  }
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(map.GetSpan(first + i), &spans[i]);
    uintptr_t addr = ((first + i) << kPageShift) + 1234;
    EXPECT_EQ(map.ClassOfAddress(addr), static_cast<uint32_t>(i + 1));
  }
  // Neighbours stay empty.
  EXPECT_EQ(map.GetSpan(first - 1), nullptr);
  EXPECT_EQ(map.ClassOfAddress((first - 1) << kPageShift), 0u);
  EXPECT_EQ(map.ClassOfAddress((first + n) << kPageShift), 0u);
  for (int i = 0; i < n; ++i) map.SetClass(first + i, 0);
}

TEST(PageMap, UnknownAddressesReadAsEmpty) {
  for (uintptr_t a : kUnknownAddresses) {
    EXPECT_EQ(g_map.ClassOfAddress(a), 0u) << a;
    EXPECT_EQ(g_map.GetSpan(a >> kPageShift), nullptr) << a;
  }
}

TEST(PageMap, SetAndGetRoundTrip) {
  ExpectRoundTrip(g_map, (uintptr_t{0x5a5a} << kLeafBits) - 3, 6);  // straddles two leaves
}

// The flat class array is taken unless the address space is limited.
TEST(PageMap, ClassBytesAreFlatUnlessAddressSpaceIsLimited) {
  ASSERT_TRUE(g_map.Ensure(uintptr_t{0x777} << kLeafBits, 1));
  struct rlimit limit;
  ASSERT_EQ(getrlimit(RLIMIT_AS, &limit), 0);
  EXPECT_EQ(g_map.flat_classes(), limit.rlim_cur == RLIM_INFINITY);
  uint32_t cls = 99;
  EXPECT_EQ(g_map.FlatClassOf(uintptr_t{0x777} << (kLeafBits + kPageShift), &cls),
            g_map.flat_classes());
  for (uintptr_t a : kUnknownAddresses) EXPECT_EQ(g_map.ClassOfAddress(a), 0u) << a;
}

// Pages the flat array does not cover keep their class bytes in the leaves.
TEST(PageMap, PagesAboveTheFlatArrayUseTheLeaves) {
  uintptr_t first = kFlatClassBytes - 2;  // the last two pages it covers, and two above
  ExpectRoundTrip(g_map, first, 4);
  g_map.SetClass(first + 3, 7);
  uint32_t cls = 0;
  EXPECT_FALSE(g_map.FlatClassOf((first + 3) << kPageShift, &cls));
  EXPECT_EQ(g_map.ClassOfAddress((first + 3) << kPageShift), 7u);
}

TEST(PageMap, WithoutTheFlatArray) {
  for (uintptr_t a : kUnknownAddresses) EXPECT_EQ(g_leaves_map.ClassOfAddress(a), 0u) << a;
  ExpectRoundTrip(g_leaves_map, (uintptr_t{0x5a5a} << kLeafBits) - 3, 6);
  EXPECT_FALSE(g_leaves_map.flat_classes());
  uint32_t cls = 0;
  EXPECT_FALSE(g_leaves_map.FlatClassOf(uintptr_t{0x5a5a} << (kLeafBits + kPageShift), &cls));
  for (uintptr_t a : kUnknownAddresses) EXPECT_EQ(g_leaves_map.ClassOfAddress(a), 0u) << a;
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
