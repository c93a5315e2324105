#include "allocator/stats/introspection.h"

#include <malloc.h>
#include <unistd.h>

#include <climits>

#include "allocator/base/log.h"
#include "allocator/base/no_cancel.h"
#include "allocator/api/rseqmalloc.h"
#include "allocator/frontend/frontend.h"
#include "allocator/stats/stats_report.h"

namespace rseqmalloc::internal {
namespace {

int Clamp(uint64_t v) { return v > INT_MAX ? INT_MAX : static_cast<int>(v); }

}  // namespace

// Field meanings follow glibc's where they carry over: arena is all the
// memory we have mapped, uordblks what the program holds, fordblks what we
// hold free (caches, free lists, free pages still resident), hblkhd the
// large blocks, keepcost the free memory malloc_trim could return.
struct mallinfo2 MallInfo2() {
  EnsureInitialized();
  AllocatorStats s = SnapshotStats();
  struct mallinfo2 mi = {};
  mi.arena = s.total_mapped_bytes;
  mi.ordblks = 0;
  mi.hblks = 0;
  mi.hblkhd = s.large_in_use_bytes;
  mi.uordblks = s.in_use_bytes;
  mi.fordblks = s.front_end_cached_bytes + s.transfer_cache_bytes + s.central_free_bytes +
                s.page_heap_free_bytes;
  mi.keepcost = s.page_heap_free_bytes;
  return mi;
}

struct mallinfo MallInfo() {
  struct mallinfo2 m = MallInfo2();
  struct mallinfo mi = {};
  mi.arena = Clamp(m.arena);
  mi.hblkhd = Clamp(m.hblkhd);
  mi.uordblks = Clamp(m.uordblks);
  mi.fordblks = Clamp(m.fordblks);
  mi.keepcost = Clamp(m.keepcost);
  return mi;
}

// 1 if memory was released, as glibc.
int MallocTrim(size_t /*pad*/) {
  EnsureInitialized();
  AllocatorStats before = SnapshotStats();
  TrimCaches();
  AllocatorStats after = SnapshotStats();
  return after.returned_bytes > before.returned_bytes ? 1 : 0;
}

void MallocStats() {
  EnsureInitialized();
  PrintStatsReport(STDERR_FILENO);
}

// Writes one line of a stream through stdio: the caller's FILE* may have no
// file descriptor behind it (open_memstream, fmemopen). Not inside any lock
// of ours, so stdio may allocate (a memory stream grows through malloc).
void PutLine(FILE* out, LogLine& line) {
  NoCancel no_cancel;  // stdio's writes may be cancellation points
  fwrite(line.data(), 1, line.size(), out);
  line.Clear();
}

// The same figures as the report, as the XML element malloc_info promises.
int MallocInfo(int options, FILE* out) {
  if (options != 0) return EINVAL;  // glibc returns the error, errno untouched
  if (out == nullptr) return -1;
  EnsureInitialized();
  AllocatorStats s = SnapshotStats();
  LogLine line;
  line.Str("<malloc version=\"rseqmalloc-1\" mode=\"").Str(s.mode).Str("\">\n");
  PutLine(out, line);
  const struct {
    const char* type;
    uint64_t bytes;
  } totals[] = {
      {"in_use", s.in_use_bytes},
      {"front_end_cached", s.front_end_cached_bytes},
      {"transfer_cache", s.transfer_cache_bytes},
      {"central_free", s.central_free_bytes},
      {"page_heap_free", s.page_heap_free_bytes},
      {"returned", s.returned_bytes},
      {"mapped", s.total_mapped_bytes},
  };
  for (const auto& t : totals) {
    line.Str("<total type=\"").Str(t.type).Str("\" size=\"").Dec(t.bytes).Str("\"/>\n");
    PutLine(out, line);
  }
  line.Str("</malloc>\n");
  PutLine(out, line);
  return ferror(out) ? -1 : 0;
}

// glibc's parameters (<malloc.h>), with glibc 2.36's answers: 1 for every
// documented one, except M_MXFAST outside 0..160 (glibc's MAX_FAST_SIZE).
// None changes anything here: the design has no arenas, no fastbins, no
// sbrk top and no mmap threshold (docs/api.md). An unknown parameter gets 0,
// glibc's documented answer for an error (glibc 2.36 itself answers 1).
int Mallopt(int param, int value) {
  constexpr int kGlibcMaxFast = 160;
  switch (param) {
    case M_MXFAST:
      return value >= 0 && value <= kGlibcMaxFast ? 1 : 0;
    case M_TRIM_THRESHOLD:
    case M_TOP_PAD:
    case M_MMAP_THRESHOLD:
    case M_MMAP_MAX:
    case M_CHECK_ACTION:
    case M_PERTURB:
    case M_ARENA_TEST:
    case M_ARENA_MAX:
      return 1;
    default:
      return 0;
  }
}

void StatsPrint(int fd) {
  EnsureInitialized();
  PrintStatsReport(fd);
}

int GetPublicStats(rseqmalloc_stats* out) {
  if (out == nullptr) return -1;
  EnsureInitialized();
  AllocatorStats s = SnapshotStats();
  static_assert(sizeof(AllocatorStats) == sizeof(rseqmalloc_stats));
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

int GetPublicReleaseStats(rseqmalloc_release_stats* out) {
  if (out == nullptr) return -1;
  EnsureInitialized();
  ReleaseStats r = SnapshotReleaseStats();
  static_assert(sizeof(ReleaseStats) == sizeof(rseqmalloc_release_stats));
  *out = rseqmalloc_release_stats{r.release_delay_ms,       r.retained_cap_bytes,
                                  r.waiting_bytes,          r.next_release_in_ms,
                                  r.released_expired_bytes, r.released_growth_bytes,
                                  r.released_cap_bytes,     r.released_trim_bytes,
                                  r.background_running,     r.background_wakeups,
                                  r.background_passes,      r.background_released_bytes};
  return 0;
}

}  // namespace rseqmalloc::internal
