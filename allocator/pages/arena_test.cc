#include "allocator/pages/arena.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <set>
#include <utility>
#include <vector>

namespace rseqmalloc::internal {
namespace {

TEST(Arena, AllocationsAreAlignedZeroedAndDisjoint) {
  ArenaStats before;
  GetArenaStats(&before);
  std::vector<std::pair<char*, size_t>> blocks;
  for (int i = 1; i <= 100; ++i) {
    size_t len = static_cast<size_t>(i) * 24;
    char* p = static_cast<char*>(ArenaAlloc(len));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u);
    for (size_t j = 0; j < len; ++j) ASSERT_EQ(p[j], 0);
    memset(p, 0xff, len);
    blocks.emplace_back(p, len);
  }
  std::sort(blocks.begin(), blocks.end());
  for (size_t i = 1; i < blocks.size(); ++i) {
    EXPECT_GE(blocks[i].first, blocks[i - 1].first + blocks[i - 1].second);
  }
  ArenaStats after;
  GetArenaStats(&after);
  EXPECT_GE(after.allocated_bytes - before.allocated_bytes, 24u * 5050);
  EXPECT_GE(after.mapped_bytes, after.allocated_bytes);
}

TEST(Arena, RequestBiggerThanABlock) {
  size_t bytes = kArenaBlockBytes * 3;
  char* p = static_cast<char*>(ArenaAlloc(bytes));
  ASSERT_NE(p, nullptr);
  p[0] = 1;
  p[bytes - 1] = 1;
}

TEST(Arena, SpansAreRecycledAndZeroed) {
  ArenaStats s0;
  GetArenaStats(&s0);
  Span* a = NewSpan();
  ASSERT_NE(a, nullptr);
  a->num_pages = 77;
  a->freelist = a;
  DeleteSpan(a);
  ArenaStats s1;
  GetArenaStats(&s1);
  EXPECT_EQ(s1.spans_in_use, s0.spans_in_use);
  EXPECT_EQ(s1.spans_free, s0.spans_free + 1);
  Span* b = NewSpan();
  EXPECT_EQ(b, a);  // LIFO reuse
  EXPECT_EQ(b->num_pages, 0u);
  EXPECT_EQ(b->freelist, nullptr);
  std::set<Span*> seen{b};
  for (int i = 0; i < 1000; ++i) EXPECT_TRUE(seen.insert(NewSpan()).second);
  ArenaStats s2;
  GetArenaStats(&s2);
  EXPECT_EQ(s2.spans_in_use, s0.spans_in_use + 1001);
  for (Span* s : seen) DeleteSpan(s);
}

}  // namespace
}  // namespace rseqmalloc::internal
