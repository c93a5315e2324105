// Large blocks without pathological costs: repeated realloc growth is
// linear overall, huge alignments reuse their address space, and calloc of
// fresh pages does not touch them.
//
// These are properties, not timings: how many times a growing block moves,
// how much address space a loop maps, how much resident memory a calloc
// adds. (How fast each is, beside the other allocators, is the business of
// bench/realloc_growth and bench/large_calloc.)
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "gtest/gtest.h"
#include "tests/util/test_util.h"

namespace rseqmalloc_test {
namespace {

constexpr size_t kKiB = size_t{1} << 10;
constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kGiB = size_t{1} << 30;

// Address space mapped by the process (first field of /proc/self/statm).
size_t MappedBytes() {
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[128];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  return static_cast<size_t>(std::strtoull(buf, nullptr, 10)) *
         static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

// Grows one block from 300 KiB to `limit` in 4 KiB steps, writing a byte in
// each new step and checking them all at the end. Returns how often the
// block moved (-1 when realloc failed or a byte was lost).
long GrowAndCountMoves(size_t limit) {
  size_t size = 300 * kKiB;
  auto* p = static_cast<unsigned char*>(malloc(size));
  if (p == nullptr) return -1;
  memset(p, 0, size);
  long moves = 0;
  for (size_t next = size + 4 * kKiB; next <= limit; next += 4 * kKiB) {
    auto* q = static_cast<unsigned char*>(realloc(p, next));
    if (q == nullptr) {
      free(p);
      return -1;
    }
    if (q != p) ++moves;
    p = q;
    p[next - 1] = static_cast<unsigned char>(next >> 12);
    size = next;
  }
  bool intact = true;
  for (size_t end = 300 * kKiB + 4 * kKiB; end <= size; end += 4 * kKiB) {
    if (p[end - 1] != static_cast<unsigned char>(end >> 12)) intact = false;
  }
  free(p);
  return intact ? moves : -1;
}

// Every move copies the whole block, so a block that moves on each of its
// ~8,000 steps costs quadratic time (it took 29 s to reach 32 MiB). Growth
// in place and amortised (geometric) growth keep the moves logarithmic.
TEST(LargeRealloc, GrowthByPagesMovesRarely) {
  long moves = GrowAndCountMoves(32 * kMiB);
  ASSERT_GE(moves, 0) << "realloc failed or lost data";
  if (!kGlibcVariant) {
    EXPECT_LE(moves, 100) << "the block moved on most steps";
  }
}

TEST(LargeRealloc, ConcurrentGrowthMovesRarely) {
  constexpr int kThreads = 4;
  pthread_t threads[kThreads];
  long moves[kThreads];
  for (int i = 0; i < kThreads; ++i) {
    pthread_create(
        &threads[i], nullptr,
        [](void* out) -> void* {
          *static_cast<long*>(out) = GrowAndCountMoves(16 * kMiB);
          return nullptr;
        },
        &moves[i]);
  }
  for (pthread_t& t : threads) pthread_join(t, nullptr);
  for (long m : moves) {
    ASSERT_GE(m, 0) << "realloc failed or lost data";
    // Interleaved blocks cannot always grow in place; amortised growth
    // bounds the moves anyway.
    if (!kGlibcVariant) {
      EXPECT_LE(m, 100);
    }
  }
}

// Bytes realloc copied while growing one block from 4 KiB to `limit` in
// 4 KiB steps, as CPython grows a bytes object (the old size at every
// move); -1 when realloc failed.
long long GrowAndCountCopiedBytes(size_t limit) {
  size_t size = 4 * kKiB;
  auto* p = static_cast<unsigned char*>(malloc(size));
  if (p == nullptr) return -1;
  long long copied = 0;
  for (size_t next = size + 4 * kKiB; next <= limit; next += 4 * kKiB) {
    auto* q = static_cast<unsigned char*>(realloc(p, next));
    if (q == nullptr) {
      free(p);
      return -1;
    }
    if (q != p) copied += static_cast<long long>(size);
    p = q;
    p[next - 1] = 1;
    size = next;
  }
  free(p);
  return copied;
}

// A block that moves because it grows goes to the start of the longest free
// run, so the growths after it stay in place. Placed by best fit, a buffer
// grown to 16 MiB again after the last one was freed ran into a neighbour at
// 14 MiB and copied those 14 MiB, every time (glibc copies nothing: it grows
// at the top of its heap). What is left are the moves through the small
// classes, about 1.2 MiB in all.
TEST(LargeRealloc, AGrowingBlockMovesWhereItCanKeepGrowing) {
  ASSERT_GE(GrowAndCountCopiedBytes(16 * kMiB), 0);  // leaves a 16 MiB free run
  long long copied = GrowAndCountCopiedBytes(16 * kMiB);
  ASSERT_GE(copied, 0) << "realloc failed";
  if (!kGlibcVariant) {
    EXPECT_LE(copied, 2LL * static_cast<long long>(kMiB));
  }
}

// Two buffers grown in turn, as two threads each growing one do. The
// second to move used to go right after the first, which then met it,
// moved past it, and stopped it in turn: the pair copied 15-37 MiB per
// round on the way to 16 MiB. Now it goes to the middle of the free run
// and both grow in place; what is left are the small classes' moves.
//
// They share the longest resident run; one block of 40 MiB freed first
// makes sure that run holds both (in a heap where the longest resident run
// had 20 MiB, both moved at 10 MiB; placing the second in a longer run of
// returned pages instead made `large_realloc` slower: its growths fault).
TEST(LargeRealloc, TwoBlocksGrownInTurnBothKeepGrowing) {
  free(malloc(40 * kMiB));
  for (int round = 0; round < 3; ++round) {
    unsigned char* p[2] = {nullptr, nullptr};
    long long copied = 0;
    for (size_t next = 4 * kKiB; next <= 16 * kMiB; next += 4 * kKiB) {
      for (unsigned char*& block : p) {
        auto* q = static_cast<unsigned char*>(realloc(block, next));
        ASSERT_NE(q, nullptr);
        if (block != nullptr && q != block) copied += static_cast<long long>(next - 4 * kKiB);
        block = q;
        block[next - 1] = static_cast<unsigned char>(round);
      }
    }
    free(p[0]);
    free(p[1]);
    if (!kGlibcVariant && round > 0) {
      EXPECT_LE(copied, 6LL * static_cast<long long>(kMiB)) << "round " << round;
    }
  }
}

TEST(LargeRealloc, ShrinkKeepsContents) {
  auto* p = static_cast<unsigned char*>(malloc(8 * kMiB));
  ASSERT_NE(p, nullptr);
  for (size_t i = 0; i < 8 * kMiB; i += 4096) p[i] = static_cast<unsigned char>(i >> 12);
  p = static_cast<unsigned char*>(realloc(p, 1 * kMiB));
  ASSERT_NE(p, nullptr);
  for (size_t i = 0; i < 1 * kMiB; i += 4096) {
    ASSERT_EQ(p[i], static_cast<unsigned char>(i >> 12)) << i;
  }
  p = static_cast<unsigned char*>(realloc(p, 6 * kMiB));
  ASSERT_NE(p, nullptr);
  for (size_t i = 0; i < 1 * kMiB; i += 4096) {
    ASSERT_EQ(p[i], static_cast<unsigned char>(i >> 12)) << i;
  }
  memset(p, 1, 6 * kMiB);
  free(p);
}

// Trimming a huge alignment left a free page between two returned pieces
// that never merged, so each iteration mapped another GiB (2.1 TiB after a
// while; ENOMEM under `ulimit -v 16G` at iteration 15 with 64 bytes live).
TEST(HugeAlignment, LoopStaysFlatInAddressSpace) {
  void* warm = nullptr;
  ASSERT_EQ(posix_memalign(&warm, kGiB, 64), 0);
  free(warm);
  size_t before = MappedBytes();
  for (int i = 0; i < 64; ++i) {
    void* p = nullptr;
    ASSERT_EQ(posix_memalign(&p, kGiB, 64), 0) << "iteration " << i;
    ASSERT_TRUE(IsAligned(p, kGiB));
    memset(p, 0x7e, 64);
    free(p);
  }
  size_t after = MappedBytes();
  EXPECT_LE(after, before + 2 * kGiB) << "mapped " << (after - before) / kMiB
                                      << " MiB more over 64 iterations";
}

TEST(HugeAlignment, MixedAlignmentsStayFlat) {
  size_t before = 0;
  for (int round = 0; round < 4; ++round) {
    if (round == 1) before = MappedBytes();
    std::vector<void*> blocks;
    for (size_t align = 64 * kKiB; align <= 256 * kMiB; align *= 4) {
      void* p = nullptr;
      ASSERT_EQ(posix_memalign(&p, align, align / 2 + 100), 0);
      ASSERT_TRUE(IsAligned(p, align));
      blocks.push_back(p);
    }
    for (void* p : blocks) free(p);
  }
  EXPECT_LE(MappedBytes(), before + 1 * kGiB);
}

// Fresh pages are zero already: writing zeros into them costs resident
// memory and time for nothing (calloc(1 GiB) added 1 GiB of RSS).
TEST(Calloc, FreshLargeBlockCostsNoResidentMemory) {
  size_t rss_before = CurrentRssBytes();
  auto* p = static_cast<unsigned char*>(calloc(1, kGiB));
  ASSERT_NE(p, nullptr);
  size_t rss_after = CurrentRssBytes();
  EXPECT_LT(rss_after, rss_before + 64 * kMiB)
      << "calloc(1 GiB) made " << (rss_after - rss_before) / kMiB << " MiB resident";
  for (size_t i = 0; i < kGiB; i += 64 * kMiB + 4096) ASSERT_EQ(p[i], 0) << i;
  free(p);
}

// Larger than half the machine's memory, touched only where written: fine
// for glibc (fresh mmap) and must be for us.
TEST(Calloc, SparseBlockLargerThanHalfOfMemory) {
  struct sysinfo info;
  ASSERT_EQ(sysinfo(&info), 0);
  size_t ram = static_cast<size_t>(info.totalram) * info.mem_unit;
  size_t size = ram / 4 * 3;
  auto* p = static_cast<unsigned char*>(calloc(1, size));
  ASSERT_NE(p, nullptr) << "calloc of " << size / kMiB << " MiB";
  p[0] = 1;
  p[size / 2] = 2;
  p[size - 1] = 3;
  EXPECT_EQ(p[size / 4], 0);
  free(p);
}

// A big block freed a moment ago keeps its pages resident (the page heap
// releases them only after a delay). A calloc that reuses them gives them
// back instead of writing zeros into them: only what the caller then
// touches becomes resident, as with a fresh mapping.
TEST(Calloc, ReusedResidentBigBlockIsZeroedWithoutWriting) {
#ifdef RSEQMALLOC_TEST_GLIBC
  GTEST_SKIP() << "glibc unmaps a freed 64 MiB block: there is nothing resident to reuse";
#endif
  constexpr size_t kSize = 64 * kMiB;
  void* dirty = malloc(kSize);
  ASSERT_NE(dirty, nullptr);
  memset(dirty, 0xab, kSize);
  free(dirty);
  const size_t rss_before = CurrentRssBytes();
  auto* p = static_cast<unsigned char*>(calloc(1, kSize));
  ASSERT_NE(p, nullptr);
  const size_t rss_after = CurrentRssBytes();
  EXPECT_LT(rss_after + 32 * kMiB, rss_before)
      << "RSS " << rss_before / kMiB << " MiB before the calloc, " << rss_after / kMiB << " after";
  for (size_t i = 0; i < kSize; i += 4096) ASSERT_EQ(p[i], 0) << i;
  free(p);
}

// The other side of the same bookkeeping: a large block whose pages were
// used and freed must be zeroed again, whatever state its pages are in.
TEST(Calloc, ReusedLargeBlocksAreZeroed) {
  for (size_t size : {300 * kKiB, 2 * kMiB, 9 * kMiB + 12345}) {
    for (int round = 0; round < 3; ++round) {
      void* dirty = malloc(size);
      ASSERT_NE(dirty, nullptr);
      memset(dirty, 0xff, size);
      free(dirty);
      auto* p = static_cast<unsigned char*>(calloc(1, size));
      ASSERT_NE(p, nullptr);
      for (size_t i = 0; i < size; ++i) {
        if (p[i] != 0) FAIL() << "byte " << i << " of a calloc(" << size << ") is " << int{p[i]};
      }
      memset(p, 0xee, size);
      free(p);
    }
  }
}

}  // namespace
}  // namespace rseqmalloc_test
