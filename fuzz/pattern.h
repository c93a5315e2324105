// Byte patterns the fuzzer writes into every block and checks before the
// block is freed or reallocated.
//
// The byte at offset i of a block is a function of (key, i), so a block that
// another block overlaps, that was shifted by a bad realloc copy, or that was
// handed out twice and overwritten, reads back wrong. Ranges are half-open and
// may start anywhere, because realloc keeps a prefix of the old block and the
// fuzzer fills only the rest.
#ifndef RSEQMALLOC_FUZZ_PATTERN_H_
#define RSEQMALLOC_FUZZ_PATTERN_H_

#include <cstddef>
#include <cstdint>
#include <cstring>

namespace rseqmalloc_fuzz {

// A different 64-bit word for every (key, word index).
inline uint64_t PatternWord(uint64_t key, size_t word) {
  uint64_t x = key ^ (static_cast<uint64_t>(word) * 0x9e3779b97f4a7c15ull);
  x ^= x >> 31;
  x *= 0xbf58476d1ce4e5b9ull;
  return x ^ (x >> 29);
}

inline uint8_t PatternByte(uint64_t key, size_t offset) {
  return static_cast<uint8_t>(PatternWord(key, offset / 8) >> (8 * (offset % 8)));
}

// Writes the pattern into bytes [from, to) of the block at p.
inline void FillPattern(void* p, size_t from, size_t to, uint64_t key) {
  auto* bytes = static_cast<uint8_t*>(p);
  size_t i = from;
  for (; i < to && i % 8 != 0; ++i) bytes[i] = PatternByte(key, i);
  for (; i + 8 <= to; i += 8) {
    uint64_t w = PatternWord(key, i / 8);
    memcpy(bytes + i, &w, 8);
  }
  for (; i < to; ++i) bytes[i] = PatternByte(key, i);
}

// Offset of the first byte in [from, to) that does not hold the pattern, or
// `to` when all do.
inline size_t FindMismatch(const void* p, size_t from, size_t to, uint64_t key) {
  const auto* bytes = static_cast<const uint8_t*>(p);
  size_t i = from;
  for (; i < to && i % 8 != 0; ++i) {
    if (bytes[i] != PatternByte(key, i)) return i;
  }
  for (; i + 8 <= to; i += 8) {
    uint64_t w;
    memcpy(&w, bytes + i, 8);
    if (w != PatternWord(key, i / 8)) break;  // the byte loop finds which one
  }
  for (; i < to; ++i) {
    if (bytes[i] != PatternByte(key, i)) return i;
  }
  return to;
}

// Offset of the first non-zero byte in [0, n), or n.
inline size_t FindNonZero(const void* p, size_t n) {
  const auto* bytes = static_cast<const uint8_t*>(p);
  for (size_t i = 0; i < n; ++i) {
    if (bytes[i] != 0) return i;
  }
  return n;
}

}  // namespace rseqmalloc_fuzz

#endif  // RSEQMALLOC_FUZZ_PATTERN_H_
