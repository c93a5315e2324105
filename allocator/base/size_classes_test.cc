#include "allocator/base/size_classes.h"

#include <gtest/gtest.h>

#include <cstddef>

namespace rseqmalloc::internal {
namespace {

// Brute force: the smallest class >= size (and a multiple of align).
uint32_t SlowClass(size_t size, size_t align) {
  for (uint32_t c = 1; c < kNumClasses; ++c) {
    if (ClassToSize(c) >= size && ClassToSize(c) % align == 0) return c;
  }
  return 0;
}

size_t LowestSetBit(size_t x) { return x & (~x + 1); }

TEST(SizeClasses, CountIsInTheDesignRange) {
  EXPECT_GE(kNumClasses - 1, 80u);
  EXPECT_LE(kNumClasses - 1, 100u);
  EXPECT_GT(kLargeClass, kNumClasses - 1);
  EXPECT_GT(kNotOurs, kNumClasses - 1);
  EXPECT_NE(kLargeClass, kNotOurs);
}

TEST(SizeClasses, SmallestIs16AndAllAreMultiplesOf16) {
  EXPECT_EQ(ClassToSize(1), 16u);
  for (uint32_t c = 1; c < kNumClasses; ++c) EXPECT_EQ(ClassToSize(c) % 16, 0u) << c;
}

TEST(SizeClasses, StrictlyIncreasingUpToMaxSmallSize) {
  for (uint32_t c = 2; c < kNumClasses; ++c) EXPECT_GT(ClassToSize(c), ClassToSize(c - 1)) << c;
  EXPECT_EQ(ClassToSize(kNumClasses - 1), kMaxSmallSize);
}

TEST(SizeClasses, EveryPowerOfTwoIsAClass) {
  for (size_t p = 16; p <= kMaxSmallSize; p *= 2) EXPECT_EQ(ClassToSize(SizeToClass(p)), p);
}

// Objects sit at page-aligned span start + i * size, so each is aligned to
// the lowest set bit of its class size; check the layout claim for every
// object of every class's span, and that sizes from 32 KiB up are multiples
// of 4 KiB (below that the 12.5 % bound forbids it; see the header).
TEST(SizeClasses, ObjectsAreNaturallyAligned) {
  for (uint32_t c = 1; c < kNumClasses; ++c) {
    size_t size = ClassToSize(c);
    size_t natural = LowestSetBit(size);
    if (natural > 4096) natural = 4096;
    size_t span = ClassToPages(c) * kPageSize;
    for (size_t off = 0; off + size <= span; off += size) {
      ASSERT_EQ(off % natural, 0u) << "class " << c << " offset " << off;
    }
    if (size >= 32 * 1024) {
      EXPECT_EQ(size % 4096, 0u) << size;
    }
  }
}

TEST(SizeClasses, InternalFragmentationBelowOneEighthAbove128) {
  for (size_t r = 129; r <= kMaxSmallSize; ++r) {
    size_t c = ClassToSize(SizeToClass(r));
    ASSERT_GE(c, r);
    ASSERT_LT((c - r) * 8, c) << "request " << r << " class " << c;
  }
  // At or below 128 bytes the loss is bounded by the 16-byte quantum.
  for (size_t r = 1; r <= 128; ++r) {
    size_t c = ClassToSize(SizeToClass(r));
    ASSERT_GE(c, r);
    ASSERT_LT(c - r, 16u) << r;
  }
}

TEST(SizeClasses, SpanWasteAtMostOneEighth) {
  for (uint32_t c = 1; c < kNumClasses; ++c) {
    size_t span = ClassToPages(c) * kPageSize;
    size_t size = ClassToSize(c);
    ASSERT_GE(span, size) << c;
    EXPECT_LE((span % size) * 8, span) << "class " << c;
  }
}

TEST(SizeClasses, BatchesAreBounded) {
  for (uint32_t c = 1; c < kNumClasses; ++c) {
    EXPECT_GE(ClassToBatch(c), 2) << c;
    EXPECT_LE(ClassToBatch(c), 32) << c;
    if (c > 1) {
      EXPECT_LE(ClassToBatch(c), ClassToBatch(c - 1)) << c;
    }
  }
  EXPECT_EQ(ClassToBatch(SizeToClass(64)), 32);
}

TEST(SizeClasses, SizeToClassMatchesBruteForceForEverySize) {
  EXPECT_EQ(SizeToClass(0), 1u);
  for (size_t s = 1; s <= kMaxSmallSize; ++s) {
    ASSERT_EQ(SizeToClass(s), SlowClass(s, 1)) << "size " << s;
  }
}

TEST(SizeClasses, SizeToClassAlignedMatchesBruteForce) {
  for (size_t align = 1; align <= 4096; align *= 2) {
    // Every size up to 16 KiB, then a stride that hits class edges too.
    for (size_t s = 0; s <= kMaxSmallSize; s += (s < 16384 ? 1 : 61)) {
      uint32_t got = SizeToClassAligned(s, align);
      ASSERT_EQ(got, SlowClass(s == 0 ? 1 : s, align)) << "size " << s << " align " << align;
      ASSERT_NE(got, 0u);
      ASSERT_EQ(ClassToSize(got) % align, 0u);
    }
    EXPECT_EQ(SizeToClassAligned(kMaxSmallSize, align), kNumClasses - 1);
    EXPECT_EQ(SizeToClassAligned(kMaxSmallSize + 1, align), 0u);
  }
  EXPECT_EQ(SizeToClassAligned(100, kPageSize * 2), 0u);
}

}  // namespace
}  // namespace rseqmalloc::internal
