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

// free()'s first loads have a fixed place in their page, away from where
// slabs put their first objects (pagemap.h says what the linker's choice
// cost once).
TEST(PageMap, FreesFirstLoadsSitAtTheirPlaceInThePage) {
  for (const PageMap* map : {&g_pagemap, &g_map, &g_leaves_map}) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(map->hot_fields()) % 4096, kPageMapHotPageOffset);
  }
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

// The flat class array is taken unless the address space is limited; its
// window is made of whole leaves, inside the user address space, and holds
// the array itself (the heap's mappings are placed next to it).
TEST(PageMap, ClassBytesAreFlatUnlessAddressSpaceIsLimited) {
  g_map.ChooseClassBytes();
  struct rlimit limit;
  ASSERT_EQ(getrlimit(RLIMIT_AS, &limit), 0);
  PageMap::FlatWindow window = g_map.flat_window();
  ASSERT_EQ(window.pages != 0, limit.rlim_cur == RLIM_INFINITY);
  if (window.pages == 0) return;
  EXPECT_EQ(window.pages, kFlatClassPages);
  EXPECT_EQ(window.first_page % kLeafLength, 0u);
  EXPECT_LE(window.first_page + window.pages, uintptr_t{1} << (47 - kPageShift));
  uint32_t cls = 99;
  uintptr_t inside = (window.first_page + window.pages / 2) << kPageShift;
  EXPECT_TRUE(g_map.FlatClassOf(inside, &cls));
  EXPECT_EQ(cls, 0u);
  EXPECT_FALSE(g_map.FlatClassOf((window.first_page - 1) << kPageShift, &cls));
  EXPECT_FALSE(g_map.FlatClassOf((window.first_page + window.pages) << kPageShift, &cls));
  for (uintptr_t a : kUnknownAddresses) EXPECT_EQ(g_map.ClassOfAddress(a), 0u) << a;
}

// Both edges of the window: pages inside use the flat array, pages outside
// the leaves, and the two agree with what was set.
TEST(PageMap, PagesAtTheWindowsEdges) {
  g_map.ChooseClassBytes();
  PageMap::FlatWindow window = g_map.flat_window();
  if (window.pages == 0) GTEST_SKIP() << "no flat array (address space limited)";
  for (uintptr_t edge : {window.first_page, window.first_page + window.pages}) {
    ExpectRoundTrip(g_map, edge - 2, 4);
    g_map.SetClass(edge - 1, 5);
    g_map.SetClass(edge, 6);
    uint32_t cls = 0;
    EXPECT_EQ(g_map.FlatClassOf((edge - 1) << kPageShift, &cls), edge - 1 >= window.first_page &&
                                                                     edge - 1 < window.first_page +
                                                                                    window.pages);
    EXPECT_EQ(g_map.ClassOfAddress((edge - 1) << kPageShift), 5u);
    EXPECT_EQ(g_map.ClassOfAddress(edge << kPageShift), 6u);
    g_map.SetClass(edge - 1, 0);
    g_map.SetClass(edge, 0);
  }
}

TEST(PageMap, WithoutTheFlatArray) {
  for (uintptr_t a : kUnknownAddresses) EXPECT_EQ(g_leaves_map.ClassOfAddress(a), 0u) << a;
  ExpectRoundTrip(g_leaves_map, (uintptr_t{0x5a5a} << kLeafBits) - 3, 6);
  EXPECT_EQ(g_leaves_map.flat_window().pages, 0u);
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
