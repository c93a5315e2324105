// What rseqmalloc promises beyond glibc: the cache mode it reports, its
// ownership query, and refusing (aborting on) pointers it never handed out.
#include <pthread.h>
#include <sys/mman.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

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

}  // namespace
}  // namespace rseqmalloc_test
