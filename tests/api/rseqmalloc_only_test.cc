// What rseqmalloc promises beyond glibc: the cache mode it reports, its
// ownership query, and refusing (aborting on) pointers it never handed out.
#include <malloc.h>
#include <pthread.h>
#include <sys/mman.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/api/api_declarations.h"
#include "tests/util/test_util.h"

#ifdef RSEQMALLOC_TEST_GLIBC
#error "rseqmalloc_only_test has no glibc variant"
#endif

namespace rseqmalloc_test {
namespace {

constexpr size_t kMiB = size_t{1} << 20;
char global_buffer[4096];

// The version the library reports is the header's, in MAJOR.MINOR.PATCH
// form (tools/package.sh names the package after it).
TEST(Version, LibraryReportsTheHeadersVersion) {
  const char* v = rseqmalloc_version();
  ASSERT_NE(v, nullptr);
  EXPECT_STREQ(v, RSEQMALLOC_VERSION);
  int major = -1, minor = -1, patch = -1, end = 0;
  ASSERT_EQ(sscanf(v, "%d.%d.%d%n", &major, &minor, &patch, &end), 3) << v;
  EXPECT_EQ(v[end], '\0') << v;
}

TEST(CacheMode, MainThreadReportsTheConfiguredMode) {
  void* p = malloc(64);  // the mode may be settled by the first allocation
  ASSERT_NE(rseqmalloc_mode(), nullptr);
  EXPECT_STREQ(rseqmalloc_mode(), ExpectedCacheMode())
      << "RSEQMALLOC_CACHE=" << (getenv("RSEQMALLOC_CACHE") ?: "(unset)")
      << " GLIBC_TUNABLES=" << (getenv("GLIBC_TUNABLES") ?: "(unset)");
  free(p);
}

void* ModeOfNewThread(void* first_call_allocates) {
  void* p = nullptr;
  if (first_call_allocates != nullptr) p = malloc(32);
  const char* mode = rseqmalloc_mode();
  free(p);
  return const_cast<char*>(mode);
}

TEST(CacheMode, EveryThreadReportsTheSameMode) {
  for (int allocate_first = 0; allocate_first < 2; ++allocate_first) {
    for (int i = 0; i < 8; ++i) {
      pthread_t t;
      ASSERT_EQ(pthread_create(&t, nullptr, ModeOfNewThread,
                               allocate_first ? &t : nullptr),
                0);
      void* mode = nullptr;
      pthread_join(t, &mode);
      ASSERT_NE(mode, nullptr);
      EXPECT_STREQ(static_cast<const char*>(mode), ExpectedCacheMode())
          << (allocate_first ? "after" : "before") << " a first malloc";
    }
  }
}

TEST(Owns, LiveBlocksOfEveryEntryPoint) {
  for (size_t size : SizeSpread(2 * kMiB)) {
    void* a = malloc(size);
    void* b = calloc(1, size);
    void* c = aligned_alloc(256, size);
    void* d = ::operator new(size);
    for (void* p : {a, b, c, d}) {
      ASSERT_NE(p, nullptr);
      EXPECT_EQ(rseqmalloc_owns(p), 1) << size;
    }
    free(a);
    free(b);
    free(c);
    ::operator delete(d);
  }
}

TEST(Owns, RejectsPointersItNeverHandedOut) {
  int on_stack = 0;
  EXPECT_EQ(rseqmalloc_owns(nullptr), 0);
  EXPECT_EQ(rseqmalloc_owns(&on_stack), 0);
  EXPECT_EQ(rseqmalloc_owns(global_buffer), 0);
  void* page = mmap(nullptr, 1 << 16, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(page, MAP_FAILED);
  EXPECT_EQ(rseqmalloc_owns(page), 0);
  munmap(page, 1 << 16);
}

TEST(Owns, RejectsInteriorPointers) {
  for (size_t size : {size_t{64}, size_t{4096}, size_t{300 * 1024}, 3 * kMiB}) {
    auto* p = static_cast<char*>(malloc(size));
    ASSERT_NE(p, nullptr);
    EXPECT_EQ(rseqmalloc_owns(p), 1);
    EXPECT_EQ(rseqmalloc_owns(p + 16), 0) << size;
    EXPECT_EQ(rseqmalloc_owns(p + size / 2), 0) << size;
    free(p);
  }
}

TEST(Owns, LargeBlockIsNotLiveAfterFree) {
  // A freed large block goes back to the page heap: no longer "live".
  void* p = malloc(4 * kMiB);
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(rseqmalloc_owns(p), 1);
  free(p);
  EXPECT_EQ(rseqmalloc_owns(Launder(p)), 0);
}

// free() of a pointer the allocator never handed out must stop the program
// rather than corrupt a free list.
class InvalidFreeDeathTest : public testing::Test {
 protected:
  void SetUp() override { GTEST_FLAG_SET(death_test_style, "threadsafe"); }
};

TEST_F(InvalidFreeDeathTest, StackPointerAborts) {
  EXPECT_DEATH(
      {
        char on_stack[64];
        Escape(on_stack);
        free(Launder(on_stack));
      },
      "");
}

TEST_F(InvalidFreeDeathTest, GlobalPointerAborts) {
  EXPECT_DEATH(free(Launder(global_buffer + 64)), "");
}

TEST_F(InvalidFreeDeathTest, ForeignMmapPointerAborts) {
  void* page = mmap(nullptr, 1 << 16, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(page, MAP_FAILED);
  EXPECT_DEATH(free(page), "");
  EXPECT_DEATH(::operator delete(page), "");
  munmap(page, 1 << 16);
}

TEST_F(InvalidFreeDeathTest, ReallocOfForeignPointerAborts) {
  EXPECT_DEATH(Escape(realloc(Launder(global_buffer + 128), 100)), "");
}

// --- realloc of small blocks (docs/api.md) ---------------------------------

// A size that still fills at least half of the block stays; less moves.
TEST(Realloc, SmallBlockStaysWhileItFillsHalf) {
  void* p = malloc(Opaque(1000));
  ASSERT_NE(p, nullptr);
  size_t usable = malloc_usable_size(p);
  void* q = realloc(p, Opaque(usable / 2 + 8));
  EXPECT_EQ(q, p) << "shrunk to just over half";
  q = realloc(q, Opaque(usable));
  EXPECT_EQ(q, p) << "grown back to the block's size";
  void* r = realloc(q, Opaque(usable / 4));
  ASSERT_NE(r, nullptr);
  EXPECT_NE(r, p) << "a quarter of the block should have moved to a smaller class";
  EXPECT_LT(malloc_usable_size(r), usable);
  free(r);
}

// A buffer grown one byte at a time moves O(log n) times: the bytes copied
// add up to a few times its final size (each move leaves a quarter more
// room), not to one copy per size class (11.5 times, before).
TEST(Realloc, GrowingBufferCopiesAFewTimesItsFinalSize) {
  constexpr size_t kFinal = size_t{256} << 10;
  char* p = static_cast<char*>(malloc(1));
  ASSERT_NE(p, nullptr);
  p[0] = 0;
  size_t copied = 0;
  for (size_t n = 2; n <= kFinal; ++n) {
    size_t usable = malloc_usable_size(p);
    char* q = static_cast<char*>(realloc(p, Opaque(n)));
    ASSERT_NE(q, nullptr);
    if (q != p) copied += std::min(usable, n - 1);
    q[n - 1] = static_cast<char>(n);
    p = q;
  }
  for (size_t n = 2; n <= kFinal; n += 4093) ASSERT_EQ(p[n - 1], static_cast<char>(n)) << n;
  free(p);
  EXPECT_LE(copied, 6 * kFinal);
}

// A large block that grows in place takes an eighth more (up to a MiB)
// when it is free after it, and a size that leaves at most a quarter of it
// unused keeps its pages: a buffer grown a page at a time then reaches the
// page heap's lock a few dozen times, not once per call (docs/api.md).
TEST(Realloc, LargeBlockGrowsInPlaceWithRoomToSpare) {
  constexpr size_t kSize = size_t{1} << 20;
  // The shrink frees the pages right after the block, for the growth.
  void* p = realloc(malloc(Opaque(8 * kSize)), Opaque(kSize));
  ASSERT_NE(p, nullptr);
  ASSERT_LT(malloc_usable_size(p), kSize + kSize / 4);
  void* q = realloc(p, Opaque(kSize + 1));
  ASSERT_EQ(q, p) << "the pages after the block are free";
  size_t usable = malloc_usable_size(q);
  EXPECT_GE(usable, kSize + kSize / 8);
  EXPECT_EQ(realloc(q, Opaque(usable)), q);
  EXPECT_EQ(realloc(q, Opaque(kSize - kSize / 16)), q) << "a small shrink keeps the pages";
  EXPECT_EQ(malloc_usable_size(q), usable);
  EXPECT_EQ(realloc(q, Opaque(kSize / 2)), q);
  EXPECT_LT(malloc_usable_size(q), usable) << "a big shrink gives the tail back";
  free(q);
  // A big block keeps at most 2 MiB it does not use.
  void* big = malloc(Opaque(64 * kSize));
  ASSERT_NE(big, nullptr);
  EXPECT_EQ(realloc(big, Opaque(63 * kSize)), big);
  EXPECT_EQ(malloc_usable_size(big), 64 * kSize);
  EXPECT_EQ(realloc(big, Opaque(60 * kSize)), big);
  EXPECT_EQ(malloc_usable_size(big), 60 * kSize);
  free(big);
}

// free_sized with the size realloc was last given frees the block to its
// own class: a block kept in place by a shrink is not handed out again as
// a smaller class's block (which a class taken from the size would do).
TEST(Realloc, FreeSizedOfABlockShrunkInPlaceReturnsItToItsClass) {
  RSEQMALLOC_REQUIRE_SYMBOL(free_sized);
  void* probe = malloc(Opaque(600));
  ASSERT_NE(probe, nullptr);
  const size_t small_usable = malloc_usable_size(probe);
  free(probe);
  void* p = malloc(Opaque(1000));
  ASSERT_NE(p, nullptr);
  ASSERT_GT(malloc_usable_size(p), small_usable) << "600 and 1000 share a class";
  void* q = realloc(p, Opaque(600));
  ASSERT_EQ(q, p) << "the shrink should have stayed in place";
  free_sized(q, 600);
  std::vector<void*> blocks;
  for (int i = 0; i < 256; ++i) {
    void* r = malloc(Opaque(600));
    ASSERT_NE(r, nullptr);
    EXPECT_EQ(malloc_usable_size(r), small_usable) << "block " << i << " at " << r;
    blocks.push_back(r);
  }
  for (void* r : blocks) free(r);
}

}  // namespace
}  // namespace rseqmalloc_test
