// Aligned allocation: posix_memalign, aligned_alloc, memalign, valloc,
// pvalloc and their aliases, with glibc 2.36's argument checking.
//
// What glibc 2.36 does with odd alignments (probed on the project machine):
// - posix_memalign: EINVAL unless the alignment is a power of two and a
//   multiple of sizeof(void*) (so 0, 1, 2, 4, 3, 24 all give EINVAL), and
//   *memptr is left untouched on any failure; ENOMEM for 1 << 63.
// - memalign and aligned_alloc are the same function in 2.36: an alignment
//   that is not a power of two is rounded up to the next one (aligned_alloc(24,
//   n) is 32-aligned), 0 and 1 mean "malloc alignment", a size that is not a
//   multiple of the alignment is accepted. Only an alignment above
//   SIZE_MAX / 2 + 1 gives NULL + EINVAL; 1 << 63 gives NULL + ENOMEM.
//   (glibc 2.38 later made aligned_alloc reject non-powers of two with
//   EINVAL; we match the libc that programs here are built against.)
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>

#include "gtest/gtest.h"
#include "tests/api/api_declarations.h"
#include "tests/util/test_util.h"

namespace rseqmalloc_test {
namespace {

constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kTopAlignment = SIZE_MAX / 2 + 1;  // 1 << 63

size_t NextPowerOfTwo(size_t n) {
  size_t p = 1;
  while (p < n) p *= 2;
  return p;
}

size_t PageSize() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }

// Checks alignment, usable size and that the whole block is writable.
void CheckBlock(void* p, size_t alignment, size_t size) {
  ASSERT_NE(p, nullptr) << "align " << alignment << " size " << size;
  RSEQMALLOC_EXPECT_OURS(p);
  EXPECT_TRUE(IsAligned(p, alignment))
      << p << " not aligned to " << alignment << " (size " << size << ")";
  EXPECT_GE(malloc_usable_size(p), size);
  uint64_t key = PatternKey(p, size, alignment);
  FillPattern(p, size, key);
  EXPECT_TRUE(PatternIntact(p, size, key));
}

using AlignedFn = void* (*)(size_t alignment, size_t size);

void* ViaPosixMemalign(size_t alignment, size_t size) {
  void* p = nullptr;
  return posix_memalign(&p, alignment, size) == 0 ? p : nullptr;
}

void ExerciseEveryPowerOfTwo(AlignedFn fn, size_t min_alignment) {
  for (size_t align = min_alignment; align <= kMiB; align *= 2) {
    const size_t sizes[] = {1, 7, align / 2 + 1, align - 1, align,
                            align + 1, 3 * align, 100000};
    for (size_t size : sizes) {
      if (size == 0) continue;
      void* p = fn(align, size);
      CheckBlock(p, align, size);
      free(p);
    }
  }
}

TEST(PosixMemalign, HonoursEveryPowerOfTwo) {
  ExerciseEveryPowerOfTwo(ViaPosixMemalign, sizeof(void*));
}

TEST(AlignedAlloc, HonoursEveryPowerOfTwo) {
  ExerciseEveryPowerOfTwo(aligned_alloc, 1);
}

TEST(Memalign, HonoursEveryPowerOfTwo) {
  ExerciseEveryPowerOfTwo(memalign, 1);
  ExerciseEveryPowerOfTwo(__libc_memalign, 1);
}

TEST(PosixMemalign, BadAlignmentGivesEinvalAndLeavesPointer) {
  const size_t bad[] = {0, 1, 2, 4, 3, 12, 24, 48, 100, 4097,
                        kTopAlignment + 1, SIZE_MAX};
  for (size_t align : bad) {
    void* sentinel = reinterpret_cast<void*>(uintptr_t{0x5EED});
    void* p = sentinel;
    EXPECT_EQ(posix_memalign(&p, Opaque(align), 16), EINVAL) << align;
    EXPECT_EQ(p, sentinel) << "*memptr changed for alignment " << align;
  }
}

TEST(PosixMemalign, ImpossibleRequestGivesEnomemAndLeavesPointer) {
  const std::pair<size_t, size_t> cases[] = {
      {64, SIZE_MAX}, {4096, SIZE_MAX - 4095}, {kTopAlignment, 16}};
  for (auto [align, size] : cases) {
    void* sentinel = reinterpret_cast<void*>(uintptr_t{0x5EED});
    void* p = sentinel;
    EXPECT_EQ(posix_memalign(&p, align, Opaque(size)), ENOMEM)
        << align << "/" << size;
    EXPECT_EQ(p, sentinel);
  }
}

TEST(PosixMemalign, ZeroSizeSucceeds) {
  void* p = nullptr;
  ASSERT_EQ(posix_memalign(&p, 64, Opaque(0)), 0);
  // POSIX allows NULL or a unique pointer; both must be freeable.
  EXPECT_TRUE(IsAligned(p, 64));
  free(p);
}

TEST(PosixMemalign, DunderAliasBehavesTheSame) {
  RSEQMALLOC_REQUIRE_SYMBOL(__posix_memalign);
  void* p = nullptr;
  ASSERT_EQ(__posix_memalign(&p, 4096, 100), 0);
  CheckBlock(p, 4096, 100);
  free(p);
  void* sentinel = reinterpret_cast<void*>(uintptr_t{0x5EED});
  p = sentinel;
  EXPECT_EQ(__posix_memalign(&p, 24, 100), EINVAL);
  EXPECT_EQ(p, sentinel);
}

// memalign rounds a non-power-of-two alignment up, as glibc does (see the
// top comment).
TEST(Memalign, NonPowerOfTwoAlignmentRoundsUpLikeGlibc) {
  const size_t odd[] = {0, 3, 12, 24, 48, 100, 4097, 65537};
  for (AlignedFn fn : {static_cast<AlignedFn>(memalign), __libc_memalign}) {
    for (size_t align : odd) {
      errno = 0;
      void* p = fn(Opaque(align), 100);
      CheckBlock(p, NextPowerOfTwo(align == 0 ? 1 : align), 100);
      free(p);
    }
  }
}

// aligned_alloc: glibc 2.36 rounds like memalign; C17 (DR 460) and glibc
// >= 2.38 reject the alignment with EINVAL, and so does rseqmalloc
// (docs/design.md), so bad input gets a clear answer.
TEST(AlignedAlloc, NonPowerOfTwoAlignment) {
  const size_t odd[] = {0, 3, 12, 24, 48, 100, 4097, 65537};
  for (size_t align : odd) {
    errno = 0;
    void* p = aligned_alloc(Opaque(align), 100);
#ifdef RSEQMALLOC_TEST_GLIBC
    CheckBlock(p, NextPowerOfTwo(align == 0 ? 1 : align), 100);
    free(p);
#else
    EXPECT_EQ(p, nullptr) << "align " << align;
    EXPECT_EQ(errno, EINVAL) << "align " << align;
#endif
  }
}

TEST(AlignedAlloc, SizeNeedNotBeAMultipleOfAlignment) {
  void* p = aligned_alloc(64, 10);
  CheckBlock(p, 64, 10);
  free(p);
}

TEST(AlignedAlloc, AlignmentAboveTopGivesEinval) {
  for (AlignedFn fn : {static_cast<AlignedFn>(aligned_alloc),
                       static_cast<AlignedFn>(memalign), __libc_memalign}) {
    for (size_t align : {kTopAlignment + 1, SIZE_MAX}) {
      errno = 0;
      EXPECT_EQ(fn(Opaque(align), 16), nullptr) << align;
      EXPECT_EQ(errno, EINVAL) << align;
    }
  }
}

TEST(AlignedAlloc, ImpossibleRequestGivesEnomem) {
  const std::pair<size_t, size_t> cases[] = {
      {64, SIZE_MAX}, {64, SIZE_MAX - 63}, {kTopAlignment, 16},
      {size_t{1} << 62, 16}, {4096, static_cast<size_t>(PTRDIFF_MAX)}};
  for (AlignedFn fn : {static_cast<AlignedFn>(aligned_alloc),
                       static_cast<AlignedFn>(memalign), __libc_memalign}) {
    for (auto [align, size] : cases) {
      errno = 0;
      EXPECT_EQ(fn(Opaque(align), Opaque(size)), nullptr)
          << align << "/" << size;
      EXPECT_EQ(errno, ENOMEM) << align << "/" << size;
    }
  }
}

TEST(Valloc, PageAligned) {
  const size_t page = PageSize();
  for (AlignedFn fn : {+[](size_t, size_t n) { return valloc(n); },
                       +[](size_t, size_t n) { return __libc_valloc(n); }}) {
    for (size_t size : {size_t{1}, size_t{100}, page - 1, page, page + 1,
                        3 * page, kMiB + 5}) {
      void* p = fn(0, size);
      CheckBlock(p, page, size);
      free(p);
    }
    void* z = fn(0, Opaque(0));
    ASSERT_NE(z, nullptr);
    EXPECT_TRUE(IsAligned(z, page));
    free(z);
  }
}

TEST(Pvalloc, RoundsSizeUpToWholePages) {
  const size_t page = PageSize();
  for (AlignedFn fn : {+[](size_t, size_t n) { return pvalloc(n); },
                       +[](size_t, size_t n) { return __libc_pvalloc(n); }}) {
    for (size_t size : {size_t{1}, page - 1, page, page + 1, 5 * page + 3}) {
      void* p = fn(0, size);
      size_t rounded = (size + page - 1) / page * page;
      // The rounding is the contract: all of `rounded` must be usable.
      CheckBlock(p, page, rounded);
      free(p);
    }
    void* z = fn(0, Opaque(0));
    ASSERT_NE(z, nullptr);
    EXPECT_TRUE(IsAligned(z, page));
    free(z);
  }
}

TEST(Valloc, ImpossibleSizesGiveEnomem) {
  for (size_t size : {SIZE_MAX, SIZE_MAX - PageSize() + 2,
                      static_cast<size_t>(PTRDIFF_MAX)}) {
    errno = 0;
    EXPECT_EQ(valloc(Opaque(size)), nullptr) << size;
    EXPECT_EQ(errno, ENOMEM);
    errno = 0;
    EXPECT_EQ(pvalloc(Opaque(size)), nullptr) << size;
    EXPECT_EQ(errno, ENOMEM);
  }
}

}  // namespace
}  // namespace rseqmalloc_test
