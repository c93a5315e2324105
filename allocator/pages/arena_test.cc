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

// Span structs are never freed here (the page heap keeps the ones it no
// longer needs): each NewSpan is a new, zeroed struct, and is counted.
TEST(Arena, SpansAreNewZeroedAndCounted) {
  ArenaStats s0;
  GetArenaStats(&s0);
  std::set<Span*> seen;
  for (int i = 0; i < 1000; ++i) {
    Span* s = NewSpan();
    ASSERT_NE(s, nullptr);
    EXPECT_TRUE(seen.insert(s).second);
    EXPECT_EQ(s->num_pages, 0u);
    EXPECT_EQ(s->freelist, nullptr);
    s->num_pages = 77;  // the next struct must not overlap this one
  }
  for (Span* s : seen) EXPECT_EQ(s->num_pages, 77u);
  ArenaStats s1;
  GetArenaStats(&s1);
  EXPECT_EQ(s1.spans_made, s0.spans_made + 1000);
}

}  // namespace
}  // namespace rseqmalloc::internal
