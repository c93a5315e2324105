// Blocks freed together are allocated together again. A program that fills
// an array with small blocks, frees most of them in order and fills it
// again (SmartHeap's sh6bench and sh8bench; bench/bursts) walks its blocks
// in memory order only if the allocator hands them back in the order they
// came in (or its reverse); otherwise, cycle after cycle, neighbours
// scatter, every block the program writes costs a cache miss, and the
// program ran at 0.4-0.6x the speed of one whose allocator keeps the order
// (docs/design.md, "Batches keep their order"). The caches between free
// and malloc (per-CPU slabs or thread caches, transfer caches) must each
// behave as part of one stack.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstdlib>
#include <vector>

namespace rseqmalloc_test {
namespace {

struct Burst {
  size_t size;
  int count;
};
constexpr Burst kBursts[] = {{8, 1000},  {16, 5000}, {48, 1000}, {64, 100},   {128, 100},
                             {256, 100}, {512, 10},  {1024, 5},  {4096, 3},   {8192, 1},
                             {32768, 1}, {131072, 1}};
constexpr int kKinds = sizeof(kBursts) / sizeof(kBursts[0]);

TEST(ReuseOrder, BlocksFreedTogetherAreAllocatedTogether) {
  constexpr size_t kRing = 30000;
  constexpr int kCycles = 60;
  std::vector<void*> ring(kRing, nullptr);
  std::vector<size_t> sizes(kRing, 0);
  size_t pos = 0, keep_begin = kRing, keep_end = kRing;
  int kind = 0, cycles = 0;
  // bench/bursts' pattern: fill the ring in bursts of one size; when it is
  // full, free it all but a fifth (the front in allocation order, the back
  // in reverse) and fill it again around that fifth.
  while (cycles < kCycles) {
    kind = (kind + 1) % kKinds;
    for (int c = 0; c < kBursts[kind].count; ++c) {
      if (pos == keep_begin) pos = keep_end;
      if (pos >= kRing) {
        if (++cycles == kCycles) break;
        keep_begin = keep_end >= kRing ? 0 : keep_end;
        keep_end = keep_begin + kRing / 5 < kRing ? keep_begin + kRing / 5 : kRing;
        for (size_t i = 0; i < keep_begin; ++i) free(ring[i]);
        for (size_t i = kRing; i > keep_end; --i) free(ring[i - 1]);
        pos = keep_begin == 0 ? keep_end : 0;
      }
      void* p = malloc(kBursts[kind].size);
      ASSERT_NE(p, nullptr);
      *static_cast<volatile char*>(p) = 1;
      ring[pos] = p;
      sizes[pos] = kBursts[kind].size;
      ++pos;
    }
  }
  // Neighbouring 16-byte blocks of the ring: how many share a cache line.
  int pairs = 0, same_line = 0;
  for (size_t i = 1; i < kRing; ++i) {
    if (sizes[i] != 16 || sizes[i - 1] != 16) continue;
    ++pairs;
    intptr_t d = reinterpret_cast<intptr_t>(ring[i]) - reinterpret_cast<intptr_t>(ring[i - 1]);
    if (d > -64 && d < 64) ++same_line;
  }
  for (size_t i = 0; i < kRing; ++i) free(ring[i]);
  ASSERT_GT(pairs, 10000);
  // Before the fix: 0.51 (per-CPU modes) and 0.25 (thread mode) here.
  EXPECT_GE(same_line, pairs * 95 / 100) << same_line << " of " << pairs;
}

}  // namespace
}  // namespace rseqmalloc_test
