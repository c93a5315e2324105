// One snapshot of every layer's figures, and the human-readable report.
//
// The report's lines add up: "total mapped" is the sum of the lines above it
// (tests/api checks this through rseqmalloc_get_stats).
#ifndef RSEQMALLOC_ALLOCATOR_STATS_STATS_REPORT_H_
#define RSEQMALLOC_ALLOCATOR_STATS_STATS_REPORT_H_

#include <cstdint>

#include "allocator/central/central_stats.h"

namespace rseqmalloc::internal {

struct AllocatorStats {
  const char* mode;                 // front end in use ("cpu", "cid", "thread", "none")
  uint64_t in_use_bytes;            // handed to the program and not freed
  uint64_t small_in_use_bytes;      // of which in small-object classes
  uint64_t large_in_use_bytes;      // of which in large blocks
  uint64_t front_end_cached_bytes;  // per-CPU or per-thread caches
  uint64_t transfer_cache_bytes;
  uint64_t central_free_bytes;
  uint64_t span_waste_bytes;        // slab tails no object fits in
  uint64_t page_heap_free_bytes;    // free pages still resident
  uint64_t returned_bytes;          // free pages returned to the OS (or never touched)
  uint64_t unused_reserved_bytes;   // reserved address space not yet handed to the page heap
  uint64_t metadata_bytes;
  uint64_t total_mapped_bytes;      // in_use + every line above down to metadata
  uint64_t front_end_hits;
  uint64_t front_end_misses;
  uint64_t rseq_restarts;
  uint64_t released_bytes_total;    // cumulative bytes given back with madvise
  uint64_t reentrant_blocks_mapped; // re-entered calls (reentrant_blocks.h)
  uint64_t reentrant_frees_deferred;
  uint64_t resident_bytes;          // the process's RSS, read from the kernel
};

// The release policy and what it did (rseqmalloc_release_stats).
struct ReleaseStats {
  uint64_t release_delay_ms;
  uint64_t retained_cap_bytes;
  uint64_t waiting_bytes;
  uint64_t next_release_in_ms;  // UINT64_MAX: nothing waits
  uint64_t released_expired_bytes;
  uint64_t released_growth_bytes;
  uint64_t released_cap_bytes;
  uint64_t released_trim_bytes;
  uint64_t background_running;
  uint64_t background_wakeups;
  uint64_t background_passes;
  uint64_t background_released_bytes;
};
ReleaseStats SnapshotReleaseStats();

// One consistent snapshot of every layer (CentralStats is too large for a
// small thread's stack, so the snapshot uses one static buffer under a lock).
AllocatorStats SnapshotStats();

// Writes the report to `fd` with write(2).
void PrintStatsReport(int fd);

// Writes the report where the options say: RSEQMALLOC_STATS_FILE (appended,
// "%p" replaced by the process id), else stderr. For the report at exit and
// on RSEQMALLOC_STATS_SIGNAL.
void ReportStats();

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_STATS_STATS_REPORT_H_
