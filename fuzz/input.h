// How the fuzzer reads its input: a byte cursor that yields zeros once the
// input is exhausted (so every prefix of an input is itself a valid input),
// and the decoders of sizes and alignments.
//
// Size (first byte k, then operand bytes):
//   k % 8 == 0  one byte: 0..255
//            1  a class size +/- 1: class 1 + byte % (classes - 1), delta (k / 8) % 3 - 1
//            2  two bytes: 0..65535
//            3  three bytes, up to the largest small size (256 KiB)
//            4  large: 256 KiB + up to 4 MiB, log-distributed (most
//               below 1 MiB: filling and checking 4 MiB blocks is slow)
//            5  zero
//            6  a power of two 2^(byte % 23) +/- 1, delta (k / 8) % 3 - 1
//            7  huge (from kHugeSizes): every allocation of it must fail
// Alignment (one byte a):
//   a < 0xf0    2^(a % 23): 1 .. 4 MiB
//   a >= 0xf0   kOddAlignments[a - 0xf0]: zero, non-powers of two, not a
//               multiple of sizeof(void*), impossibly large
#ifndef RSEQMALLOC_FUZZ_INPUT_H_
#define RSEQMALLOC_FUZZ_INPUT_H_

#include <cstddef>
#include <cstdint>

#include "allocator/base/size_classes.h"

namespace rseqmalloc_fuzz {

namespace rm = rseqmalloc::internal;

// Sizes and alignments at or above this cannot be mapped in any x86-64
// address space (even with 5-level paging, 2^56 bytes): asking for them must
// fail. Everything the decoders return below kMaxSaneRequest must succeed.
inline constexpr size_t kImpossible = size_t{1} << 57;
inline constexpr size_t kMaxSaneRequest = size_t{8} << 20;

inline constexpr size_t kHugeSizes[] = {
    SIZE_MAX,          SIZE_MAX - 1,        SIZE_MAX - 4095,
    SIZE_MAX / 2 + 1,  SIZE_MAX / 2,        SIZE_MAX / 2 - 4095,
    size_t{1} << 62,   kImpossible,
};

inline constexpr size_t kOddAlignments[] = {
    0,    2,    3,   24,   48,  100, 4097, 3 << 20,
    // impossibly large powers of two, then non-powers of two beyond any
    kImpossible, size_t{1} << 62, SIZE_MAX / 2 + 1, SIZE_MAX / 2 + 2,
    SIZE_MAX, SIZE_MAX - 15, (size_t{1} << 20) + 16, 12,
};
static_assert(sizeof(kOddAlignments) / sizeof(kOddAlignments[0]) == 16);

class Input {
 public:
  Input(const uint8_t* data, size_t size) : data_(data), size_(size) {}

  bool Empty() const { return pos_ >= size_; }

  uint8_t Byte() { return pos_ < size_ ? data_[pos_++] : 0; }

  // `n` bytes, little-endian.
  uint64_t Bytes(int n) {
    uint64_t v = 0;
    for (int i = 0; i < n; ++i) v |= static_cast<uint64_t>(Byte()) << (8 * i);
    return v;
  }

  size_t Size() {
    uint8_t k = Byte();
    int delta = (k / 8) % 3 - 1;
    switch (k % 8) {
      case 0:
        return Byte();
      case 1: {
        uint32_t cls = 1 + Byte() % (rm::kNumClasses - 1);
        return rm::ClassToSize(cls) + delta;  // class sizes are >= 16
      }
      case 2:
        return Bytes(2);
      case 3:
        return Bytes(3) % (rm::kMaxSmallSize + 1);
      case 4: {
        uint64_t v = Bytes(3);
        return rm::kMaxSmallSize + v % (size_t{1} << (12 + v % 11));
      }
      case 5:
        return 0;
      case 6: {
        size_t p = size_t{1} << (Byte() % 23);
        return p + delta;  // p >= 1, so p - 1 >= 0
      }
      default:
        return kHugeSizes[Byte() % (sizeof(kHugeSizes) / sizeof(kHugeSizes[0]))];
    }
  }

  // A count for calloc / reallocarray: mostly small, sometimes huge so that
  // count * size overflows.
  size_t Count() {
    uint8_t k = Byte();
    if (k < 0xe0) return k % 64;
    if (k < 0xf0) return Bytes(2);
    return kHugeSizes[k % (sizeof(kHugeSizes) / sizeof(kHugeSizes[0]))];
  }

  size_t Alignment() {
    uint8_t a = Byte();
    if (a < 0xf0) return size_t{1} << (a % 23);
    return kOddAlignments[a - 0xf0];
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
};

}  // namespace rseqmalloc_fuzz

#endif  // RSEQMALLOC_FUZZ_INPUT_H_
