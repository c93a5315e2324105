// Size classes for small objects, generated at compile time.
//
// Spacing (why these numbers):
//   * 16..128 bytes: every multiple of 16 (8 classes). 16 is the malloc
//     alignment guarantee on x86-64, so no class can be finer. Requests of
//     <= 128 bytes therefore lose at most 15 bytes each: their internal
//     fragmentation is bounded by the 16-byte quantum, not by a percentage.
//   * 128..256 KiB: 8 classes per power-of-two octave; in [2^k, 2^(k+1)] the
//     classes are multiples of 2^k / 8. A request r > 128 lands in a class c
//     with c - r < 2^k / 8 <= c / 8, so internal fragmentation is < 12.5 %.
//     96 real classes in all (class 0 is unused).
//
// Alignment: spans start on a kPageSize (8 KiB) boundary and objects sit at
// span_start + i * size, so every object is aligned to the largest power of
// two dividing its class size (capped at 8 KiB). Every power of two from 16
// to 256 KiB is a class, so an aligned request always has a class (see
// SizeToClassAligned). Note: "every class >= 4 KiB is a multiple of 4 KiB"
// cannot hold together with the 12.5 % bound (a 4097-byte request would need
// a class in [4097, 4682)); here it holds from 32 KiB up, and callers that
// need 4 KiB alignment for a 4..32 KiB size use SizeToClassAligned.
//
// Span size: the fewest pages that hold at least min(batch, 16 KiB / size)
// objects (at least one) and leave at most 1/8 of the span unused at its end.
// 16 KiB, not a batch's 64 KiB: one live object keeps its whole span
// resident, and with 64 KiB spans for the 2-8 KiB classes a program that
// kept 16 MiB of 512 MiB stayed at 74 MiB resident (bench/idle_release;
// 48 MiB with 16 KiB spans; measurements in docs/design.md).
//
// Batch (objects moved per transfer between the front end and the central
// heap): clamp(64 KiB / size, 2, 32): 32 up to 2 KiB, 16 at 4 KiB, 2 from
// 32 KiB up, so a batch never carries much more than 64 KiB.
#ifndef RSEQMALLOC_ALLOCATOR_BASE_SIZE_CLASSES_H_
#define RSEQMALLOC_ALLOCATOR_BASE_SIZE_CLASSES_H_

#include <array>
#include <cstddef>
#include <cstdint>

namespace rseqmalloc::internal {

inline constexpr size_t kPageShift = 13;
inline constexpr size_t kPageSize = size_t{1} << kPageShift;
inline constexpr size_t kMaxSmallSize = size_t{256} << 10;
inline constexpr size_t kMinClassSize = 16;

namespace size_class_internal {

inline constexpr size_t kQuantumLimit = 128;  // 16-byte spacing up to here
inline constexpr int kClassesPerOctave = 8;
inline constexpr size_t kBatchTargetBytes = size_t{64} << 10;
inline constexpr size_t kSpanTargetBytes = size_t{16} << 10;
inline constexpr int kMaxBatch = 32;
inline constexpr int kMinBatch = 2;

// Calls visit(size) for every class size in increasing order.
template <typename Visit>
constexpr void ForEachClassSize(Visit visit) {
  for (size_t s = kMinClassSize; s <= kQuantumLimit; s += kMinClassSize) visit(s);
  for (size_t octave = kQuantumLimit; octave < kMaxSmallSize; octave *= 2) {
    for (int j = 1; j <= kClassesPerOctave; ++j) visit(octave + j * (octave / kClassesPerOctave));
  }
}

constexpr uint32_t CountClasses() {
  uint32_t n = 0;
  ForEachClassSize([&n](size_t) { ++n; });
  return n;
}

}  // namespace size_class_internal

// Class 0 is unused; real classes are 1 .. kNumClasses - 1.
inline constexpr uint32_t kNumClasses = 1 + size_class_internal::CountClasses();
// Reserved results of ClassifyPointer; both fit the pagemap's uint8 array.
inline constexpr uint32_t kLargeClass = 254;
inline constexpr uint32_t kNotOurs = 255;
// Most objects ClassToBatch ever returns: front ends size stack buffers by it.
inline constexpr int kMaxBatch = size_class_internal::kMaxBatch;
static_assert(kNumClasses < kLargeClass, "class ids must fit below the reserved values");

struct SizeClassInfo {
  uint32_t size;   // bytes per object
  uint16_t pages;  // pages per span
  uint16_t batch;  // objects per transfer batch
};

namespace size_class_internal {

constexpr int BatchFor(size_t size) {
  size_t b = kBatchTargetBytes / size;
  if (b > static_cast<size_t>(kMaxBatch)) b = kMaxBatch;
  if (b < static_cast<size_t>(kMinBatch)) b = kMinBatch;
  return static_cast<int>(b);
}

constexpr size_t PagesFor(size_t size) {
  size_t min_objects = kSpanTargetBytes / size;
  size_t batch = static_cast<size_t>(BatchFor(size));
  if (min_objects > batch) min_objects = batch;
  if (min_objects < 1) min_objects = 1;
  size_t pages = (min_objects * size + kPageSize - 1) / kPageSize;
  while ((pages * kPageSize) % size > (pages * kPageSize) / 8) ++pages;
  return pages;
}

constexpr std::array<SizeClassInfo, kNumClasses> MakeClassTable() {
  std::array<SizeClassInfo, kNumClasses> table{};
  uint32_t cls = 1;
  ForEachClassSize([&](size_t s) {
    table[cls].size = static_cast<uint32_t>(s);
    table[cls].pages = static_cast<uint16_t>(PagesFor(s));
    table[cls].batch = static_cast<uint16_t>(BatchFor(s));
    ++cls;
  });
  return table;
}

// Lookup index: one entry per 16-byte granule up to kMaxSmallSize (16 KiB
// of table). One shift and one load on the fast path; the entries the
// common small sizes use share a cache line or two.
constexpr size_t LookupIndex(size_t size) { return (size + 15) >> 4; }
inline constexpr size_t kLookupEntries = LookupIndex(kMaxSmallSize) + 1;

inline constexpr std::array<SizeClassInfo, kNumClasses> kClassTable = MakeClassTable();

constexpr std::array<uint8_t, kLookupEntries> MakeLookup() {
  std::array<uint8_t, kLookupEntries> lookup{};
  uint32_t cls = 1;
  for (size_t i = 0; i < kLookupEntries; ++i) {
    // The largest size with index i; every class size is a multiple of 16,
    // so all sizes with this index have the same smallest fitting class.
    size_t rep = i * 16 < kMinClassSize ? kMinClassSize : i * 16;
    while (kClassTable[cls].size < rep) ++cls;
    lookup[i] = static_cast<uint8_t>(cls);
  }
  return lookup;
}
inline constexpr std::array<uint8_t, kLookupEntries> kLookup = MakeLookup();

}  // namespace size_class_internal

// size <= kMaxSmallSize; size 0 maps to the smallest class.
inline uint32_t SizeToClass(size_t size) {
  return size_class_internal::kLookup[size_class_internal::LookupIndex(size)];
}

inline constexpr size_t ClassToSize(uint32_t cls) {
  return size_class_internal::kClassTable[cls].size;
}
inline constexpr uint32_t ClassToPages(uint32_t cls) {
  return size_class_internal::kClassTable[cls].pages;
}
inline constexpr int ClassToBatch(uint32_t cls) {
  return size_class_internal::kClassTable[cls].batch;
}

// The smallest class whose size is >= size and a multiple of align (a power of
// two). Objects of such a class are align-aligned as long as align <= kPageSize
// (spans are page-aligned). Returns 0 when size > kMaxSmallSize or
// align > kPageSize: the caller then allocates whole pages.
inline uint32_t SizeToClassAligned(size_t size, size_t align) {
  if (size > kMaxSmallSize || align > kPageSize) return 0;
  uint32_t cls = SizeToClass(size < align ? align : size);
  // Powers of two are classes, so this stops within one octave (<= 8 steps).
  while (cls < kNumClasses && (ClassToSize(cls) & (align - 1)) != 0) ++cls;
  return cls < kNumClasses ? cls : 0;
}

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_BASE_SIZE_CLASSES_H_
