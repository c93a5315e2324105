// Statistics of the central heap (everything below the front end), filled
// by GetCentralStats from one snapshot taken with the central locks held.
//
// Identities (exact when no thread is inside the central heap; a batch in
// flight between two layers can make a concurrent snapshot off by it):
//   (1) system_reserved_bytes == page_heap_bytes + system_unused_bytes
//       (metadata is mapped separately and counted in metadata_bytes)
//   (2) page_heap_bytes == small_span_bytes + large_in_use_bytes
//                          + page_heap_free_bytes + page_heap_returned_bytes
//   (3) small_span_bytes == central_free_bytes + transfer_cache_bytes
//                           + small_in_use_bytes + span_waste_bytes
//   and (3) per class with objects:
//       span_bytes == (central_free_objects + transfer_objects
//                      + in_use_objects) * size + spans * per-span waste.
// small_span_bytes comes from the page heap's own count and the per-class
// figures from the central lists and transfer caches, so (3) checks that the
// layers agree; in_use_objects is counted by RemoveBatch / InsertBatch.
#ifndef RSEQMALLOC_ALLOCATOR_CENTRAL_CENTRAL_STATS_H_
#define RSEQMALLOC_ALLOCATOR_CENTRAL_CENTRAL_STATS_H_

#include <cstdint>

#include "allocator/base/size_classes.h"
#include "allocator/pages/huge_pages.h"

namespace rseqmalloc::internal {

struct CentralClassStats {
  uint64_t size;                  // bytes per object
  uint64_t spans;                 // slabs of this class
  uint64_t span_bytes;            // their pages
  uint64_t central_free_objects;  // free in the slabs (carved or not)
  uint64_t transfer_objects;      // in the transfer cache
  uint64_t in_use_objects;        // handed out by RemoveBatch, not returned
  uint64_t transfer_lock_contended;  // acquisitions of its locks that had to
  uint64_t central_lock_contended;   //   wait, since the start
  uint64_t transfer_from_other_shards;  // objects refills took from another
                                        //   CPU shard's transfer cache
  uint64_t transfer_to_central;    // objects full transfer caches sent to the
  uint64_t transfer_from_central;  //   central list / refills took from it
};

struct CentralStats {
  // System layer.
  uint64_t system_reserved_bytes;        // heap address space mapped
  uint64_t system_unused_bytes;          // mapped, never given to the page heap
  uint64_t system_released_bytes_total;  // cumulative madvise(DONTNEED) bytes

  // Page heap.
  uint64_t page_heap_bytes;           // obtained from the system
  uint64_t small_span_bytes;          // slabs of small objects
  uint64_t large_in_use_bytes;        // large allocations (whole pages)
  uint64_t page_heap_free_bytes;      // free, possibly resident
  uint64_t page_heap_returned_bytes;  // free, returned to the OS / untouched
  uint64_t page_heap_free_cap_bytes;  // cap on free backed bytes in force
  uint64_t page_heap_release_delay_ns;   // free backed pages older than this go back
  uint64_t page_heap_next_release_ns;    // monotonic deadline of the oldest (or UINT64_MAX)
  uint64_t released_expired_bytes;       // of system_released_bytes_total: aged out,
  uint64_t released_growth_bytes;        //   made room for fresh pages,
  uint64_t released_cap_bytes;           //   over the cap,
  uint64_t released_trim_bytes;          //   malloc_trim / ReleaseFreeMemory
  uint64_t growth_hook_calls;      // the page heap asked the transfer caches for spans before growing
  uint64_t growth_hook_objects;    //   and the cached objects over 1 KiB they gave back
  uint64_t system_unmapped_bytes_total;  // heap address space unmapped (RLIMIT_AS, chunk tails)
  uint64_t free_spans;
  HugePageStats huge_pages;

  // Small objects, summed over classes.
  uint64_t central_free_bytes;
  uint64_t transfer_cache_bytes;
  uint64_t small_in_use_bytes;
  uint64_t span_waste_bytes;  // unusable tails of slabs

  // Metadata: arena blocks and pagemap leaves (address space mapped).
  uint64_t metadata_bytes;
  uint64_t spans_metadata;  // Span structs in use

  CentralClassStats per_class[kNumClasses];  // index 0 unused (zero)
};

// One snapshot of every figure above, taken with every central lock held
// in the heap's lock order (central_heap.h). Defined in central_heap.cc.
void GetCentralStats(CentralStats* out);

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_CENTRAL_CENTRAL_STATS_H_
