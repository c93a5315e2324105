// Transparent huge pages for the heap's mappings, kept compatible with giving
// memory back (docs/design.md, "Huge pages"). Only with RSEQMALLOC_HUGE_PAGES=1:
// off by default, since their first touch can cost more than the faults they
// save (on a VM whose host takes back what the guest frees).
//
// A 2 MiB unit of the heap is advised MADV_HUGEPAGE, so its first touch
// faults one huge page instead of 512 small ones (a fault costs ~12 us on
// the VM we measure on). Releasing part of a unit with MADV_DONTNEED splits
// its huge page, and khugepaged would collapse it back whole (with the
// default max_ptes_none = 511 a single resident page is enough), undoing the
// release: so a unit partly released is advised MADV_NOHUGEPAGE first, and
// a unit released whole is advised MADV_HUGEPAGE again.
//
// A mapping made for one big block (PageUse::kBigBlock) is not advised: the
// program may use it sparsely (a calloc'd table), where 2 MiB per touch
// would multiply its resident size. Advice starts once the heap has
// handed out kHugePagesFromBytes, so a small program stays on small pages,
// and only if the program writes most of what it allocates (a residency
// sample of the latest mapping, HugePagesStartIfDue).
// The units advised are tracked as at most kMaxHugeRegions regions, each
// the whole 2 MiB units of a mapping that are still all ours: a madvise never
// reaches memory the heap does not own, and the areas the flags split the
// heap into (one per unit at worst, out of the process's vm.max_map_count)
// stay bounded. Mappings beyond that bound keep small pages.
//
// system.cc calls these; the statistics reach the report through
// SystemStats. Thread-safe (a lock of their own, taken after the system
// lock).
#ifndef RSEQMALLOC_ALLOCATOR_PAGES_HUGE_PAGES_H_
#define RSEQMALLOC_ALLOCATOR_PAGES_HUGE_PAGES_H_

#include <cstddef>
#include <cstdint>

namespace rseqmalloc::internal {

inline constexpr size_t kHugePageBytes = size_t{2} << 20;
inline constexpr uint64_t kHugePagesFromBytes = uint64_t{16} << 20;
inline constexpr int kMaxHugeRegions = 1024;

struct HugePageStats {
  bool enabled;               // RSEQMALLOC_HUGE_PAGES
  bool started;               // past kHugePagesFromBytes, and a sample found it dense
  int regions;                // regions advised and tracked
  uint64_t advised_bytes;     // bytes of those regions
  uint64_t split_units;       // units advised MADV_NOHUGEPAGE by a partial release
  uint64_t rejoined_units;    // units advised MADV_HUGEPAGE again, released whole
  uint64_t sparse_samples;    // growths past the threshold that found the heap sparse
};

void HugePagesEnable(bool on);

// Before a new request: the heap has handed out `handed_out` bytes so far,
// [unused, chunk_end) is the untouched rest of the current chunk, and
// [sample_begin, sample_end) the handed-out part of the latest mapping.
// Starts the advice (on that rest) once the heap is past the threshold and
// the sample shows the program writes what it allocates (at least half of
// its pages resident), and says whether new mappings get it. Until then
// each growth looks again, at the mapping made since.
bool HugePagesStartIfDue(uint64_t handed_out, uintptr_t unused, uintptr_t chunk_end,
                         uintptr_t sample_begin, uintptr_t sample_end);

// A new mapping [begin, end), wholly ours: its whole units are advised and
// tracked once started.
void HugePagesAdvise(uintptr_t begin, uintptr_t end);

// The rest of a chunk from `end` on is being unmapped: the units it cuts
// are no longer all ours.
void HugePagesTrimChunk(uintptr_t end);

// Around SystemRelease of [p, p + bytes) (heap pages the caller owns).
void HugePagesBeforeRelease(uintptr_t p, size_t bytes);
void HugePagesAfterRelease(uintptr_t p, size_t bytes);

// [p, p + bytes) is about to be unmapped: every region it touches stops
// being tracked, advised MADV_NOHUGEPAGE as a whole first (its units may
// keep pages no release will reach again).
void HugePagesBeforeUnmap(uintptr_t p, size_t bytes);

void GetHugePageStats(HugePageStats* out);

void HugePagesLockForFork();
void HugePagesUnlockAfterFork();

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_PAGES_HUGE_PAGES_H_
