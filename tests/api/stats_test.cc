// The statistics report adds up, through both rseqmalloc_get_stats and the
// printed text, and follows what the program allocates.
#include <malloc.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <atomic>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "allocator/api/rseqmalloc.h"
#include "gtest/gtest.h"
#include "tests/util/test_util.h"

namespace {

uint64_t SumOfParts(const rseqmalloc_stats& s) {
  return s.in_use_bytes + s.front_end_cached_bytes + s.transfer_cache_bytes +
         s.central_free_bytes + s.span_waste_bytes + s.page_heap_free_bytes + s.returned_bytes +
         s.unused_reserved_bytes + s.metadata_bytes;
}

rseqmalloc_stats Stats() {
  rseqmalloc_stats s;
  EXPECT_EQ(rseqmalloc_get_stats(&s), 0);
  return s;
}

// A block the kernel refuses whatever is freed (more than RAM + swap under
// the default overcommit heuristic) fails at once: no cache is drained and
// no free page goes back first, as any other refusal does. A program probing
// for the largest block it can get would otherwise empty them at each probe.
TEST(Stats, HopelessRequestGivesNoMemoryBack) {
  if (rseqmalloc_test::OvercommitMode() != 0) GTEST_SKIP() << "not the heuristic policy";
  size_t machine = rseqmalloc_test::RamPlusSwapBytes();
  ASSERT_GT(machine, 0u);
  constexpr size_t kFreed = size_t{64} << 20;
  void* big = malloc(kFreed);
  ASSERT_NE(big, nullptr);
  memset(big, 1, kFreed);
  free(big);  // resident and free: what a drain would give back
  rseqmalloc_release_stats before;
  ASSERT_EQ(rseqmalloc_get_release_stats(&before), 0);
  if (before.waiting_bytes == 0) GTEST_SKIP() << "free pages go back at once here";
  errno = 0;
  EXPECT_EQ(malloc(rseqmalloc_test::Opaque(machine + (size_t{1} << 30))), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  rseqmalloc_release_stats after;
  ASSERT_EQ(rseqmalloc_get_release_stats(&after), 0);
  EXPECT_EQ(after.released_trim_bytes, before.released_trim_bytes);
  malloc_trim(0);  // the next tests count resident pages from a clean heap
}

// Thread caches start small: a thread that allocates one block of each of
// many sizes keeps a couple of objects per class, not a batch of each (1,000
// such threads held 896 MiB). 32 threads each allocate one block of 48
// sizes, 16 B-6 KiB, and wait: what their caches hold must stay under two
// more objects of every size per thread (a batch of each was about 20
// times that).
TEST(Stats, ThreadCachesOfManyOneOffSizesStaySmall) {
  if (std::string(rseqmalloc_mode()) != "thread") GTEST_SKIP() << "per-thread caches only";
  constexpr int kThreads = 32;
  constexpr int kSizes = 48;
  auto size_of = [](int i) { return static_cast<size_t>(16 + i * 128); };
  size_t per_thread = 0;
  for (int i = 0; i < kSizes; ++i) per_thread += 2 * size_of(i) + 16;
  rseqmalloc_stats before = Stats();
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      void* blocks[kSizes];
      for (int i = 0; i < kSizes; ++i) blocks[i] = malloc(size_of(i));
      ready.fetch_add(1);
      while (!go.load()) usleep(1000);
      for (void* p : blocks) free(p);
    });
  }
  while (ready.load() < kThreads) usleep(1000);
  rseqmalloc_stats during = Stats();
  go.store(true);
  for (auto& th : threads) th.join();
  EXPECT_LE(during.front_end_cached_bytes, before.front_end_cached_bytes + kThreads * per_thread);
}

// A thread cache keeps to its byte budget (RSEQMALLOC_THREAD_CACHE_BYTES,
// 2 MiB by default) but for what the hits since its last miss added, at most
// a batch (32 objects) of one class. The lists check the budget at their
// misses, counting only the classes they ever held (thread_cache.cc): here 24 sizes of 1-12.5 KiB, each list allowed up to an
// eighth of the budget, could hold three budgets between them, and three
// rounds of allocating and freeing 600 blocks of each let them grow there.
TEST(Stats, ThreadCacheKeepsToItsBudget) {
  if (std::string(rseqmalloc_mode()) != "thread") GTEST_SKIP() << "per-thread caches only";
  const char* env = getenv("RSEQMALLOC_THREAD_CACHE_BYTES");
  ASSERT_EQ(env, nullptr) << "the test assumes the default budget";
  constexpr size_t kBudget = size_t{2} << 20;
  constexpr int kSizes = 24;
  constexpr int kBlocks = 600;
  auto size_of = [](int i) { return static_cast<size_t>(1024 + i * 512); };
  std::vector<void*> blocks(static_cast<size_t>(kSizes) * kBlocks);
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < kSizes; ++i) {
      for (int k = 0; k < kBlocks; ++k) {
        void* p = malloc(size_of(i));
        ASSERT_NE(p, nullptr);
        memset(p, 1, 64);
        blocks[static_cast<size_t>(i) * kBlocks + k] = p;
      }
    }
    for (void* p : blocks) free(p);
  }
  rseqmalloc_stats s = Stats();
  EXPECT_LE(s.front_end_cached_bytes, kBudget + 32 * size_of(kSizes - 1));
}

TEST(Stats, PartsAddUpToTotalMapped) {
  std::vector<void*> blocks;
  for (size_t size = 1; size < (size_t{4} << 20); size = size * 3 / 2 + 1) {
    blocks.push_back(malloc(size));
  }
  rseqmalloc_stats s = Stats();
  EXPECT_EQ(SumOfParts(s), s.total_mapped_bytes);
  EXPECT_EQ(s.small_in_use_bytes + s.large_in_use_bytes, s.in_use_bytes);
  for (void* p : blocks) free(p);
  s = Stats();
  EXPECT_EQ(SumOfParts(s), s.total_mapped_bytes);
}

TEST(Stats, InUseFollowsTheProgram) {
  std::vector<void*> small;
  small.reserve(10000);  // the vector's own block is live from here on
  rseqmalloc_stats before = Stats();
  for (int i = 0; i < 10000; ++i) small.push_back(malloc(100));  // class 112
  void* large = malloc(size_t{8} << 20);
  rseqmalloc_stats during = Stats();
  EXPECT_GE(during.small_in_use_bytes, before.small_in_use_bytes + 10000 * 100);
  EXPECT_LE(during.small_in_use_bytes, before.small_in_use_bytes + 10000 * 112 + 4096);
  EXPECT_EQ(during.large_in_use_bytes, before.large_in_use_bytes + (size_t{8} << 20));
  for (void* p : small) free(p);
  free(large);
  rseqmalloc_stats after = Stats();
  EXPECT_LE(after.in_use_bytes, before.in_use_bytes + 4096);
  EXPECT_GE(after.front_end_hits + after.front_end_misses,
            before.front_end_hits + before.front_end_misses);
  EXPECT_STREQ(after.mode, rseqmalloc_mode());
}

// Reads the report through a pipe and checks that its byte lines add up.
TEST(Stats, PrintedReportAddsUp) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  rseqmalloc_stats_print(fds[1]);
  close(fds[1]);
  std::string text;
  char buf[4096];
  for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) text.append(buf, static_cast<size_t>(n));
  close(fds[0]);

  std::map<std::string, uint64_t> bytes;  // label -> value, for "label  N bytes (...)" lines
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    size_t at = line.find(" bytes (");
    if (at == std::string::npos) continue;
    size_t start = line.rfind(' ', at - 1) + 1;
    std::string label = line.substr(0, start);
    label.erase(0, label.find_first_not_of(' '));
    label.erase(label.find_last_not_of(' ') + 1);
    bytes[label] = std::stoull(line.substr(start, at - start));
  }
  ASSERT_TRUE(bytes.count("total mapped")) << text;
  uint64_t sum = 0;
  for (const char* part : {"in use by the program", "front-end caches", "transfer caches",
                           "central free lists", "slab tail waste", "page heap free",
                           "returned to the OS", "reserved, not yet used", "metadata"}) {
    ASSERT_TRUE(bytes.count(part)) << part << "\n" << text;
    sum += bytes[part];
  }
  EXPECT_EQ(sum, bytes["total mapped"]) << text;
  EXPECT_EQ(bytes["small objects"] + bytes["large blocks"], bytes["in use by the program"]);
  // Thread caches count hits; per-CPU caches only misses.
  EXPECT_TRUE(text.find("front-end hit rate") != std::string::npos ||
              text.find("front-end misses") != std::string::npos)
      << text;
  EXPECT_NE(text.find("rseq restarts"), std::string::npos);
  EXPECT_NE(text.find("per size class"), std::string::npos);
  // The kernel's figure beside "total mapped": present, non-zero, and not
  // one of the parts that add up.
  ASSERT_TRUE(bytes.count("resident (RSS)")) << text;
  EXPECT_GT(bytes["resident (RSS)"], 0u);

  // The page heap's free spans by length: the resident column adds up to
  // "page heap free" (nothing is being released: this test frees nothing
  // that is 5 s old), the returned one to at most "returned to the OS"
  // (which also counts address space the heap has not used yet).
  size_t table = text.find("page heap free spans");
  ASSERT_NE(table, std::string::npos) << text;
  std::istringstream rows(text.substr(text.find('\n', table) + 1));
  uint64_t resident_kib = 0, returned_kib = 0;
  int buckets = 0;
  for (std::string row; std::getline(rows, row);) {
    std::istringstream fields(row);
    std::string length;
    uint64_t resident_spans, resident, returned_spans, returned;
    if (!(fields >> length >> resident_spans >> resident >> returned_spans >> returned)) break;
    if (length.empty() || (length[0] != '>' && (length[0] < '0' || length[0] > '9'))) break;
    resident_kib += resident;
    returned_kib += returned;
    ++buckets;
  }
  EXPECT_GT(buckets, 0) << text;
  EXPECT_EQ(resident_kib * 1024, bytes["page heap free"]) << text;
  EXPECT_LE(returned_kib * 1024, bytes["returned to the OS"]) << text;
}

// Touching 64 MiB raises the resident figure by about as much; mapping
// alone (a fresh large block, untouched) does not.
TEST(Stats, ResidentFollowsTouchedMemoryNotMappedMemory) {
  constexpr size_t kSize = 64u << 20;
  uint64_t before = Stats().resident_bytes;
  ASSERT_GT(before, 0u);
  auto* p = static_cast<char*>(malloc(kSize));
  ASSERT_NE(p, nullptr);
  uint64_t mapped_only = Stats().resident_bytes;
  memset(p, 1, kSize);
  uint64_t touched = Stats().resident_bytes;
  free(p);
  EXPECT_LT(mapped_only, before + kSize / 4);
  EXPECT_GT(touched, mapped_only + kSize / 2);
}

}  // namespace
