// Two threads on two CPUs that allocate small blocks in turn must get them
// from pages of their own, in runs of pages (up to 64 KiB each) that meet
// the other thread's rarely: when the page heap
// handed the CPUs' fresh slabs out alternately, page by page, the two
// threads each cycling through 10,000 blocks of 64 B ran at 0.6x of their
// speed alone (the prefetchers and the neighbouring lines tie the two
// caches together), and a synthetic program writing interleaved 4 KiB
// pieces of two threads lost 38 %. The page heap places the slabs of each
// CPU slot together (allocator/pages/page_heap.h, "Locality").
//
// Unlike cache_line_sharing_test (lines shared by the first blocks), this
// looks at the thousands of blocks a batch needs: many fresh slabs each.
#include <malloc.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "tests/util/test_util.h"

namespace rseqmalloc_test {
namespace {

constexpr uintptr_t kPage = 8 << 10;
constexpr int kBlocksPerThread = 4096;

// Where the threads' blocks meet: pages both have blocks in, and pages
// next to a page of the other thread. The page heap gives each CPU runs of
// up to 64 KiB (8 pages), so one meeting per 8 pages is expected, where two
// CPUs' runs end; a slab that already had free objects (the test
// framework's, or a cid handed on with a migrating thread:
// cache_line_sharing_test says why) is reused where it is, and a few more
// meetings are allowed for those: half as many again, plus 4. Before the
// placement by CPU slot, blocks of 64 B met on 59-61 of 65 pages (page by
// page alternation) and of 256 B on 68-70 of 257 (3 runs each, the glibc
// variant with the old library preloaded); after, 9-10 and 23-27, and in
// thread mode, whose caches give slabs back to the shared lists as the
// threads go, 45-47 of 257 (6 runs).
int AllowedMeetings(size_t pages) { return static_cast<int>(pages / 8 + pages / 16) + 4; }

class PageSharingTest : public ::testing::TestWithParam<size_t> {};

TEST_P(PageSharingTest, ThreadsOnTwoCpusGetPagesApart) {
  size_t size = GetParam();
  int cpus[2];
  if (AllowedCpus(cpus, 2) < 2) GTEST_SKIP() << "needs two CPUs";
  std::vector<void*> blocks[2];
  for (auto& b : blocks) b.reserve(kBlocksPerThread);
  malloc_trim(0);  // blocks the framework freed here go back to their slabs
  ASSERT_TRUE(AllocateInTurnOnTwoCpus(cpus, size, kBlocksPerThread, blocks));

  // The 8 KiB pages (the page heap's) that hold blocks, with the threads
  // whose blocks they hold (bit 0: thread 0, bit 1: thread 1).
  std::vector<std::pair<uintptr_t, int>> pages;
  pages.reserve(2 * kBlocksPerThread);
  for (int me = 0; me < 2; ++me) {
    for (void* p : blocks[me]) {
      ASSERT_NE(p, nullptr);
      pages.push_back({reinterpret_cast<uintptr_t>(p) / kPage, 1 << me});
    }
  }
  std::sort(pages.begin(), pages.end());
  std::vector<std::pair<uintptr_t, int>> owners;  // one entry per page
  for (const auto& [page, who] : pages) {
    if (!owners.empty() && owners.back().first == page) {
      owners.back().second |= who;
    } else {
      owners.push_back({page, who});
    }
  }
  int shared = 0, borders = 0;
  for (size_t i = 0; i < owners.size(); ++i) {
    if (owners[i].second == 3) ++shared;
    if (i > 0 && owners[i].first == owners[i - 1].first + 1 &&
        (owners[i].second | owners[i - 1].second) == 3) {
      ++borders;
    }
  }
  EXPECT_LE(shared + borders, AllowedMeetings(owners.size()))
      << shared << " pages hold blocks of both threads and " << borders << " of "
      << owners.size() << " pages border a page of the other thread";
  ASSERT_TRUE(FreeEachOnItsCpu(cpus, blocks));
}

INSTANTIATE_TEST_SUITE_P(Sizes, PageSharingTest, ::testing::Values(64, 256));

}  // namespace
}  // namespace rseqmalloc_test
