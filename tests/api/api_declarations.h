// Declarations the public headers do not give, and the ownership check.
//
// glibc exports the __libc_* aliases but declares none of them. It does not
// have free_sized / free_aligned_sized (C23, glibc 2.40+) nor __posix_memalign,
// and keeps cfree only as a compat symbol a new program cannot link to: those
// are weak, so the glibc variant links and skips them, while the rseqmalloc
// variants require them (rseqmalloc must export them).
#ifndef RSEQMALLOC_TESTS_API_API_DECLARATIONS_H_
#define RSEQMALLOC_TESTS_API_API_DECLARATIONS_H_

#include <cstddef>

#include "gtest/gtest.h"
#include "tests/util/test_util.h"

#ifndef RSEQMALLOC_TEST_GLIBC
#include "allocator/api/rseqmalloc.h"
#endif

extern "C" {
void* __libc_malloc(size_t size);
void __libc_free(void* p);
void* __libc_calloc(size_t n, size_t size);
void* __libc_realloc(void* p, size_t size);
void* __libc_memalign(size_t alignment, size_t size);
void* __libc_valloc(size_t size);
void* __libc_pvalloc(size_t size);

int __posix_memalign(void** out, size_t alignment, size_t size)
    __attribute__((weak));
void cfree(void* p) __attribute__((weak));
void free_sized(void* p, size_t size) __attribute__((weak));
void free_aligned_sized(void* p, size_t alignment, size_t size)
    __attribute__((weak));
}

// A weak entry point must be present in rseqmalloc variants; in the glibc
// variant an absent one skips the test.
#define RSEQMALLOC_REQUIRE_SYMBOL(fn)                                   \
  do {                                                                 \
    if (&(fn) == nullptr) {                                            \
      if (::rseqmalloc_test::kGlibcVariant) {                          \
        GTEST_SKIP() << #fn " is not exported by this libc";           \
      }                                                                \
      FAIL() << #fn " is not exported by rseqmalloc";                  \
    }                                                                  \
  } while (0)

// In rseqmalloc variants, p must be the start of a live allocation of ours:
// proves that the entry point under test is really rseqmalloc's and not
// glibc's. Nothing to check in the glibc variant.
#ifdef RSEQMALLOC_TEST_GLIBC
#define RSEQMALLOC_EXPECT_OURS(p) ((void)(p))
#else
#define RSEQMALLOC_EXPECT_OURS(p) \
  EXPECT_EQ(rseqmalloc_owns(p), 1) << "not an rseqmalloc block: " << (p)
#endif

#endif  // RSEQMALLOC_TESTS_API_API_DECLARATIONS_H_
