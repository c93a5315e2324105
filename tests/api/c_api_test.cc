// The C allocation entry points and their glibc semantics: errno on failure,
// zero sizes, realloc's corner cases, calloc zeroing, usable sizes, the sized
// frees and the __libc_* aliases.
#include <malloc.h>
#include <stdlib.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#include "gtest/gtest.h"
#include "tests/api/api_declarations.h"
#include "tests/util/test_util.h"

namespace rseqmalloc_test {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

// Sizes no allocator can serve; each must give NULL and ENOMEM.
std::vector<size_t> ImpossibleSizes() {
  return {SIZE_MAX,
          SIZE_MAX - 4095,
          static_cast<size_t>(PTRDIFF_MAX) + 1,
          static_cast<size_t>(PTRDIFF_MAX),
          size_t{1} << 62};
}

bool AllZero(const void* p, size_t n) {
  const auto* b = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < n; ++i) {
    if (b[i] != 0) return false;
  }
  return true;
}

TEST(Malloc, ZeroSizeGivesDistinctFreeableBlocks) {
  void* a = malloc(Opaque(0));
  void* b = malloc(Opaque(0));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_NE(a, b);
  RSEQMALLOC_EXPECT_OURS(a);
  free(a);
  free(b);
}

TEST(Malloc, ImpossibleSizesFailWithEnomem) {
  for (size_t size : ImpossibleSizes()) {
    errno = 0;
    EXPECT_EQ(malloc(Opaque(size)), nullptr) << size;
    EXPECT_EQ(errno, ENOMEM) << size;
    errno = 0;
    EXPECT_EQ(__libc_malloc(Opaque(size)), nullptr) << size;
    EXPECT_EQ(errno, ENOMEM) << size;
  }
}

// A block larger than the machine's memory and swap: glibc's mmap of it is
// refused under the kernel's default overcommit heuristic (and under the
// strict policy), so its malloc returns NULL with ENOMEM rather than a block
// that a program probing for the largest one it can get would then touch and
// be killed for. Ours must answer the same (it reserved such blocks with
// MAP_NORESERVE, which the heuristic waves through: 1 TiB "succeeded" on a
// 24 GiB machine).
TEST(Malloc, MoreThanRamAndSwapFailsUnlessTheKernelOvercommitsAlways) {
  int mode = OvercommitMode();
  if (mode != 0 && mode != 2) GTEST_SKIP() << "vm.overcommit_memory=" << mode;
  size_t machine = RamPlusSwapBytes();
  ASSERT_GT(machine, 0u);
  size_t huge = 2 * machine + (size_t{1} << 30);
  // A block granted anyway is freed at once, so that the failure is this
  // test's alone (a block realloc moved must not be freed again).
  auto expect_refused = [](void* p, const char* call) {
    EXPECT_EQ(p, nullptr) << call;
    EXPECT_EQ(errno, ENOMEM) << call;
    free(p);
  };
  errno = 0;
  expect_refused(malloc(Opaque(huge)), "malloc");
  errno = 0;
  expect_refused(calloc(Opaque(huge >> 20), kMiB), "calloc");
  errno = 0;
  expect_refused(aligned_alloc(4096, Opaque(huge)), "aligned_alloc");
  errno = 0;
  expect_refused(valloc(Opaque(huge)), "valloc");
  void* p = nullptr;
  EXPECT_EQ(posix_memalign(&p, size_t{2} << 20, Opaque(huge)), ENOMEM);
  if (p != nullptr) free(p);
  auto* block = static_cast<unsigned char*>(malloc(64));
  ASSERT_NE(block, nullptr);
  memset(block, 7, 64);
  errno = 0;
  void* moved = realloc(Launder(block), Opaque(huge));
  if (moved != nullptr) {
    expect_refused(moved, "realloc");
  } else {
    EXPECT_EQ(errno, ENOMEM);
    EXPECT_EQ(block[63], 7);
    free(block);
  }
}

TEST(Malloc, EverySizeWritableToItsUsableSize) {
  for (size_t size : SizeSpread(4 * kMiB)) {
    auto* p = static_cast<unsigned char*>(malloc(size));
    ASSERT_NE(p, nullptr) << size;
    RSEQMALLOC_EXPECT_OURS(p);
    size_t usable = malloc_usable_size(p);
    ASSERT_GE(usable, size);
    uint64_t key = PatternKey(p, usable, 1);
    FillPattern(p, usable, key);
    ASSERT_TRUE(PatternIntact(p, usable, key)) << size;
    free(p);
  }
}

TEST(Malloc, LiveBlocksDoNotOverlap) {
  Rng rng(7);
  std::vector<std::pair<uintptr_t, size_t>> blocks;
  for (int i = 0; i < 4000; ++i) {
    size_t size = rng.LogUniform(1, 512 * 1024);
    void* p = malloc(size);
    ASSERT_NE(p, nullptr);
    size_t usable = malloc_usable_size(p);
    FillPattern(p, usable, PatternKey(p, usable, 2));
    blocks.emplace_back(reinterpret_cast<uintptr_t>(p), usable);
  }
  std::sort(blocks.begin(), blocks.end());
  for (size_t i = 0; i + 1 < blocks.size(); ++i) {
    EXPECT_LE(blocks[i].first + blocks[i].second, blocks[i + 1].first)
        << "block " << i << " overlaps the next one";
  }
  for (auto [addr, usable] : blocks) {
    void* p = reinterpret_cast<void*>(addr);
    EXPECT_TRUE(PatternIntact(p, usable, PatternKey(p, usable, 2)));
    free(p);
  }
}

TEST(Calloc, ZeroedEvenWhenReusingDirtyMemory) {
  for (int round = 0; round < 3; ++round) {
    for (size_t size : SizeSpread(2 * kMiB)) {
      // Dirty a batch of blocks of this size and free them, so calloc is
      // likely to get one back from a cache rather than fresh pages.
      void* dirty[8];
      for (void*& d : dirty) {
        d = malloc(size);
        ASSERT_NE(d, nullptr);
        std::memset(d, 0xA5, malloc_usable_size(d));
      }
      for (void* d : dirty) free(d);
      void* a = calloc(1, size);
      void* b = calloc(size, 1);
      void* c = __libc_calloc(size, 1);
      for (void* p : {a, b, c}) {
        ASSERT_NE(p, nullptr) << size;
        RSEQMALLOC_EXPECT_OURS(p);
        EXPECT_TRUE(AllZero(p, size)) << "calloc(" << size << ") not zeroed";
        std::memset(p, 0x5A, size);
      }
      free(a);
      free(b);
      free(c);
    }
  }
}

TEST(Calloc, ZeroCountOrSizeGivesFreeableBlock) {
  void* a = calloc(Opaque(0), 16);
  void* b = calloc(16, Opaque(0));
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  free(a);
  free(b);
}

TEST(Calloc, OverflowFailsWithEnomem) {
  const std::pair<size_t, size_t> cases[] = {
      {SIZE_MAX / 2, 3},
      {size_t{1} << 32, size_t{1} << 32},
      {SIZE_MAX, SIZE_MAX},
      {3, SIZE_MAX / 2},
      {static_cast<size_t>(PTRDIFF_MAX), 1},  // no overflow, just too big
  };
  for (auto [n, size] : cases) {
    errno = 0;
    EXPECT_EQ(calloc(Opaque(n), Opaque(size)), nullptr) << n << "*" << size;
    EXPECT_EQ(errno, ENOMEM);
    errno = 0;
    EXPECT_EQ(__libc_calloc(Opaque(n), Opaque(size)), nullptr);
    EXPECT_EQ(errno, ENOMEM);
  }
}

TEST(Realloc, NullPointerActsAsMalloc) {
  for (size_t size : {size_t{0}, size_t{1}, size_t{100}, size_t{300 * 1024}}) {
    void* p = realloc(nullptr, Opaque(size));
    ASSERT_NE(p, nullptr) << size;
    RSEQMALLOC_EXPECT_OURS(p);
    EXPECT_GE(malloc_usable_size(p), size);
    std::memset(p, 1, size);
    free(p);
  }
}

TEST(Realloc, ZeroSizeFreesAndReturnsNull) {
  void* p = malloc(100);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(realloc(p, Opaque(0)), nullptr);
  // "Frees" is checked by volume: were realloc(p, 0) a leak, 512 touched
  // MiB would stay resident.
  size_t before = CurrentRssBytes();
  for (int i = 0; i < 512; ++i) {
    void* q = malloc(kMiB);
    ASSERT_NE(q, nullptr);
    std::memset(q, 0x11, kMiB);
    EXPECT_EQ(realloc(q, Opaque(0)), nullptr);
  }
  EXPECT_LT(CurrentRssBytes(), before + 256 * kMiB);
}

// Grows a block through every size range and back, checking at each step
// that the common prefix survived.
TEST(Realloc, PreservesContentsAcrossGrowthAndShrink) {
  std::vector<size_t> path = SizeSpread(8 * kMiB);
  std::vector<size_t> back(path.rbegin(), path.rend());
  path.insert(path.end(), back.begin(), back.end());
  void* p = malloc(1);
  size_t size = 1;
  uint64_t key = PatternKey(p, size, 3);
  FillPattern(p, size, key);
  for (size_t next : path) {
    void* q = realloc(p, next);
    ASSERT_NE(q, nullptr) << size << " -> " << next;
    RSEQMALLOC_EXPECT_OURS(q);
    size_t kept = std::min(size, next);
    ASSERT_EQ(FindPatternMismatch(q, kept, key), kept)
        << "realloc " << size << " -> " << next << " lost contents";
    p = q;
    size = next;
    key = PatternKey(p, size, 3);
    FillPattern(p, size, key);
  }
  free(p);
}

TEST(Realloc, JumpsBetweenSmallAndLarge) {
  const size_t sizes[] = {8, 4 * kMiB, 24, 300 * 1024, 17, 1000, 2 * kMiB, 1};
  void* p = malloc(sizes[0]);
  size_t size = sizes[0];
  uint64_t key = PatternKey(p, size, 4);
  FillPattern(p, size, key);
  for (size_t next : sizes) {
    void* q = __libc_realloc(p, next);
    ASSERT_NE(q, nullptr);
    size_t kept = std::min(size, next);
    ASSERT_TRUE(PatternIntact(q, kept, key)) << size << " -> " << next;
    p = q;
    size = next;
    key = PatternKey(p, size, 4);
    FillPattern(p, size, key);
  }
  free(p);
}

TEST(Realloc, FailureLeavesTheBlockIntact) {
  for (size_t size : {size_t{64}, size_t{512 * 1024}}) {
    void* p = malloc(size);
    ASSERT_NE(p, nullptr);
    uint64_t key = PatternKey(p, size, 5);
    FillPattern(p, size, key);
    for (size_t huge : ImpossibleSizes()) {
      errno = 0;
      EXPECT_EQ(realloc(Launder(p), Opaque(huge)), nullptr) << huge;
      EXPECT_EQ(errno, ENOMEM);
    }
    EXPECT_TRUE(PatternIntact(p, size, key));
    free(p);
  }
}

TEST(Reallocarray, MultipliesAndDetectsOverflow) {
  auto* p = static_cast<uint32_t*>(reallocarray(nullptr, 100, sizeof(uint32_t)));
  ASSERT_NE(p, nullptr);
  RSEQMALLOC_EXPECT_OURS(p);
  for (uint32_t i = 0; i < 100; ++i) p[i] = i * 7;
  errno = 0;
  EXPECT_EQ(reallocarray(Launder(p), Opaque(SIZE_MAX / 2), 3), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  errno = 0;
  EXPECT_EQ(reallocarray(Launder(p), Opaque(size_t{1} << 33), size_t{1} << 31), nullptr);
  EXPECT_EQ(errno, ENOMEM);
  p = static_cast<uint32_t*>(reallocarray(p, 100000, sizeof(uint32_t)));
  ASSERT_NE(p, nullptr);
  for (uint32_t i = 0; i < 100; ++i) ASSERT_EQ(p[i], i * 7);
  free(p);
}

TEST(MallocUsableSize, AtLeastRequestedAndNullIsZero) {
  EXPECT_EQ(malloc_usable_size(nullptr), 0u);
  for (size_t size : SizeSpread(kMiB)) {
    void* p = calloc(1, size);
    ASSERT_NE(p, nullptr);
    size_t usable = malloc_usable_size(p);
    EXPECT_GE(usable, size);
    // Usable must mean writable, and stable while the block lives.
    std::memset(p, 0xEE, usable);
    EXPECT_EQ(malloc_usable_size(p), usable);
    free(p);
  }
}

TEST(Free, NullIsANoOp) {
  free(nullptr);
  __libc_free(nullptr);
  if (&cfree != nullptr) cfree(nullptr);
  if (&free_sized != nullptr) free_sized(nullptr, 0);
  if (&free_aligned_sized != nullptr) free_aligned_sized(nullptr, 64, 0);
  void* p = malloc(10);
  EXPECT_NE(p, nullptr);
  free(p);
}

TEST(Free, AnyEntryPointFreesAnyOther) {
  // glibc's own code frees with __libc_free what the program got with
  // malloc and the other way round; both must be the same heap.
  for (size_t size : {size_t{16}, size_t{4000}, size_t{600 * 1024}}) {
    void* a = malloc(size);
    void* b = __libc_malloc(size);
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    RSEQMALLOC_EXPECT_OURS(b);
    __libc_free(a);
    free(b);
  }
}

TEST(FreeSized, FreesEverySize) {
  RSEQMALLOC_REQUIRE_SYMBOL(free_sized);
  for (int round = 0; round < 2; ++round) {
    for (size_t size : SizeSpread(2 * kMiB)) {
      void* p = malloc(size);
      ASSERT_NE(p, nullptr);
      std::memset(p, 3, size);
      free_sized(p, size);
    }
  }
  void* z = malloc(0);
  free_sized(z, 0);
}

TEST(FreeAlignedSized, FreesAlignedBlocks) {
  RSEQMALLOC_REQUIRE_SYMBOL(free_aligned_sized);
  for (size_t align = 8; align <= kMiB; align *= 2) {
    for (size_t size : {align, 3 * align, align * 2}) {
      void* p = aligned_alloc(align, size);
      ASSERT_NE(p, nullptr);
      ASSERT_TRUE(IsAligned(p, align));
      std::memset(p, 4, size);
      free_aligned_sized(p, align, size);
    }
  }
}

TEST(Cfree, FreesLikeFree) {
  RSEQMALLOC_REQUIRE_SYMBOL(cfree);
  for (size_t size : {size_t{1}, size_t{1024}, size_t{400 * 1024}}) {
    void* p = malloc(size);
    ASSERT_NE(p, nullptr);
    cfree(p);
  }
}

}  // namespace
}  // namespace rseqmalloc_test
