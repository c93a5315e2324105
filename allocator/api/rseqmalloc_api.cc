// rseqmalloc's own C API (rseqmalloc.h).
#include "allocator/api/rseqmalloc.h"

#include "allocator/central_heap.h"
#include "allocator/frontend/frontend.h"
#include "allocator/frontend/stats_report.h"
#include "allocator/reentrant_blocks.h"

namespace in = rseqmalloc::internal;

extern "C" {

__attribute__((visibility("default"))) const char* rseqmalloc_version(void) {
  return RSEQMALLOC_VERSION;
}

__attribute__((visibility("default"))) const char* rseqmalloc_mode(void) {
  return in::ActiveModeName();
}

// Small objects: the pointer must be a multiple of the class size from the
// start of its slab (whether that object is free right now is unknowable
// without a walk of the free lists). Large: ClassifyPointer already checks.
__attribute__((visibility("default"))) int rseqmalloc_owns(const void* p) {
  uint32_t cls = in::ClassifyPointer(p);
  if (cls == in::kLargeClass) return 1;
  if (cls == in::kNotOurs) return in::ReentrantUsableSize(p) != 0 ? 1 : 0;
  if (p == nullptr) return 0;
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  const in::Span* span = in::g_pagemap.GetSpan(a >> in::kPageShift);
  return span != nullptr && (a - span->start_address()) % in::ClassToSize(cls) == 0 ? 1 : 0;
}

__attribute__((visibility("default"))) void rseqmalloc_stats_print(int fd) {
  in::EnsureInitialized();
  in::PrintStatsReport(fd);
}

__attribute__((visibility("default"))) int rseqmalloc_get_stats(struct rseqmalloc_stats* out) {
  if (out == nullptr) return -1;
  in::EnsureInitialized();
  in::AllocatorStats s = in::SnapshotStats();
  static_assert(sizeof(in::AllocatorStats) == sizeof(struct rseqmalloc_stats));
  *out = rseqmalloc_stats{s.mode,
                          s.in_use_bytes,
                          s.small_in_use_bytes,
                          s.large_in_use_bytes,
                          s.front_end_cached_bytes,
                          s.transfer_cache_bytes,
                          s.central_free_bytes,
                          s.span_waste_bytes,
                          s.page_heap_free_bytes,
                          s.returned_bytes,
                          s.unused_reserved_bytes,
                          s.metadata_bytes,
                          s.total_mapped_bytes,
                          s.front_end_hits,
                          s.front_end_misses,
                          s.rseq_restarts,
                          s.released_bytes_total,
                          s.reentrant_blocks_mapped,
                          s.reentrant_frees_deferred,
                          s.resident_bytes};
  return 0;
}

__attribute__((visibility("default"))) int rseqmalloc_get_release_stats(
    struct rseqmalloc_release_stats* out) {
  if (out == nullptr) return -1;
  in::EnsureInitialized();
  in::ReleaseStats r = in::SnapshotReleaseStats();
  static_assert(sizeof(in::ReleaseStats) == sizeof(struct rseqmalloc_release_stats));
  *out = rseqmalloc_release_stats{r.release_delay_ms,       r.retained_cap_bytes,
                                  r.waiting_bytes,          r.next_release_in_ms,
                                  r.released_expired_bytes, r.released_growth_bytes,
                                  r.released_cap_bytes,     r.released_trim_bytes,
                                  r.background_running,     r.background_wakeups,
                                  r.background_passes,      r.background_released_bytes};
  return 0;
}

}  // extern "C"
