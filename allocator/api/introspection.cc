#include "allocator/api/introspection.h"

#include <unistd.h>

#include <climits>

#include "allocator/base/log.h"
#include "allocator/central_heap.h"
#include "allocator/frontend/cpu_cache.h"
#include "allocator/frontend/frontend.h"
#include "allocator/frontend/stats_report.h"
#include "allocator/frontend/thread_cache.h"

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

// Returns cached memory of every layer to the OS: per-CPU caches are drained
// remotely, the calling thread's cache is flushed (other threads' caches
// belong to them), then every free page is released. 1 if memory was
// released, as glibc.
int MallocTrim(size_t /*pad*/) {
  EnsureInitialized();
  AllocatorStats before = SnapshotStats();
  CpuCache::DrainAll();
  if (ThreadCache* cache = ThreadCache::Current()) cache->Flush();
  ReleaseFreeMemory();
  AllocatorStats after = SnapshotStats();
  return after.returned_bytes > before.returned_bytes ? 1 : 0;
}

void MallocStats() {
  EnsureInitialized();
  PrintStatsReport(STDERR_FILENO);
}

// The same figures as the report, as the XML element malloc_info promises.
int MallocInfo(int options, FILE* out) {
  if (options != 0) return EINVAL;  // glibc returns the error, errno untouched
  if (out == nullptr) return -1;
  EnsureInitialized();
  AllocatorStats s = SnapshotStats();
  int fd = fileno(out);
  if (fd < 0) return -1;
  fflush(out);  // keep whatever the caller wrote before ours
  LogLine line;
  line.Str("<malloc version=\"rseqmalloc-1\" mode=\"").Str(s.mode).Str("\">\n").Flush(fd);
  line.Str("<total type=\"in_use\" size=\"").Dec(s.in_use_bytes).Str("\"/>\n").Flush(fd);
  line.Str("<total type=\"front_end_cached\" size=\"").Dec(s.front_end_cached_bytes)
      .Str("\"/>\n").Flush(fd);
  line.Str("<total type=\"transfer_cache\" size=\"").Dec(s.transfer_cache_bytes).Str("\"/>\n")
      .Flush(fd);
  line.Str("<total type=\"central_free\" size=\"").Dec(s.central_free_bytes).Str("\"/>\n")
      .Flush(fd);
  line.Str("<total type=\"page_heap_free\" size=\"").Dec(s.page_heap_free_bytes).Str("\"/>\n")
      .Flush(fd);
  line.Str("<total type=\"returned\" size=\"").Dec(s.returned_bytes).Str("\"/>\n").Flush(fd);
  line.Str("<total type=\"mapped\" size=\"").Dec(s.total_mapped_bytes).Str("\"/>\n").Flush(fd);
  line.Str("</malloc>\n").Flush(fd);
  return 0;
}

// glibc's tuning parameters do not apply to this design; like glibc for a
// parameter it does not know, report failure (0) and change nothing.
int Mallopt(int /*param*/, int /*value*/) { return 0; }

}  // namespace rseqmalloc::internal
