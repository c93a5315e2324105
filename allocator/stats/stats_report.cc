#include "allocator/stats/stats_report.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstring>
#include <iterator>

#include "allocator/base/clock.h"
#include "allocator/base/log.h"
#include "allocator/base/no_cancel.h"
#include "allocator/central/central_heap.h"
#include "allocator/config/options.h"
#include "allocator/frontend/frontend.h"
#include "allocator/frontend/maintenance.h"
#include "allocator/frontend/thread_cache.h"
#include "allocator/frontend/reentrant_blocks.h"
#include "allocator/frontend/reentry.h"
#include "allocator/pages/pagemap.h"
#include "allocator/base/spinlock.h"
#include "rseq/restarts.h"

namespace rseqmalloc::internal {
namespace {

SpinLock g_snapshot_lock;
CentralStats g_snapshot_central;  // guarded by g_snapshot_lock

// The snapshot lock, taken inside the allocator's depth: a signal handler's
// malloc that interrupts the snapshot must not wait for our locks.
class SnapshotHold {
 public:
  SnapshotHold() = default;
  SnapshotHold(const SnapshotHold&) = delete;
  SnapshotHold& operator=(const SnapshotHold&) = delete;

 private:
  AllocatorSection section_;  // first in, last out
  SpinLockHolder hold_{&g_snapshot_lock};
};

void Line(LogLine& line, const char* label, uint64_t bytes, int fd) {
  line.Str("  ").Str(label);
  for (size_t n = strlen(label); n < 28; ++n) line.Str(" ");
  line.Dec(bytes).Str(" bytes (");
  line.Fixed(bytes * 100 / (1024 * 1024), 2).Str(" MiB)\n").Flush(fd);
}

// The whole process's resident set (second field of /proc/self/statm, in
// pages), read without allocating; 0 when unreadable.
uint64_t ResidentBytes() {
  NoCancel no_cancel;  // open, read and close are cancellation points
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[128];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  const char* p = buf;
  while (*p != '\0' && *p != ' ') ++p;  // skip the size field
  uint64_t pages = 0;
  for (++p; *p >= '0' && *p <= '9'; ++p) pages = pages * 10 + static_cast<uint64_t>(*p - '0');
  return pages * static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
}

void CollectStats(AllocatorStats* out, CentralStats* central) {
  GetCentralStats(central);
  ThreadCache::Totals threads = ThreadCache::GetTotals();
  FrontEndTotals cpus = g_cpu_cache.Totals();

  *out = AllocatorStats{};
  out->mode = ActiveModeName();
  out->front_end_cached_bytes = threads.cached_bytes + cpus.cached_bytes;
  out->front_end_hits = threads.hits + cpus.hits;
  out->front_end_misses = threads.misses + cpus.misses;
  // Objects sitting in front-end caches were handed out by RemoveBatch, so
  // the central heap counts them as in use; the program does not have them.
  uint64_t small = central->small_in_use_bytes;
  out->small_in_use_bytes =
      small > out->front_end_cached_bytes ? small - out->front_end_cached_bytes : 0;
  out->large_in_use_bytes = central->large_in_use_bytes;
  out->in_use_bytes = out->small_in_use_bytes + out->large_in_use_bytes;
  out->transfer_cache_bytes = central->transfer_cache_bytes;
  out->central_free_bytes = central->central_free_bytes;
  out->span_waste_bytes = central->span_waste_bytes;
  out->page_heap_free_bytes = central->page_heap_free_bytes;
  out->returned_bytes = central->page_heap_returned_bytes;
  out->unused_reserved_bytes = central->system_unused_bytes;
  out->metadata_bytes = central->metadata_bytes;
  out->total_mapped_bytes = central->system_reserved_bytes + central->metadata_bytes;
  out->rseq_restarts = rseq::RestartCount();
  out->released_bytes_total = central->system_released_bytes_total;
  ReentrantStats reentrant = GetReentrantStats();
  out->reentrant_blocks_mapped = reentrant.blocks_mapped;
  out->reentrant_frees_deferred = reentrant.frees_deferred;
  out->resident_bytes = ResidentBytes();
}

// Frees a signal handler deferred would otherwise count as in use.
void SettleDeferredFrees() {
  if (!InsideAllocator() && HasDeferredFrees()) ReturnDeferredFrees();
}

}  // namespace

namespace {

ReleaseStats ReleaseStatsFrom(const CentralStats& c) {
  ReleaseStats r{};
  r.release_delay_ms = c.page_heap_release_delay_ns / 1'000'000;
  r.retained_cap_bytes = c.page_heap_free_cap_bytes;
  r.waiting_bytes = c.page_heap_free_bytes;
  r.next_release_in_ms = UINT64_MAX;
  if (c.page_heap_next_release_ns != UINT64_MAX) {
    // The page heap stamps with the coarse clock.
    uint64_t now = CoarseMonotonicNs();
    uint64_t due = c.page_heap_next_release_ns;
    r.next_release_in_ms = due > now ? (due - now) / 1'000'000 : 0;
  }
  r.released_expired_bytes = c.released_expired_bytes;
  r.released_growth_bytes = c.released_growth_bytes;
  r.released_cap_bytes = c.released_cap_bytes;
  r.released_trim_bytes = c.released_trim_bytes;
  MaintenanceStats m = GetMaintenanceStats();
  r.background_running = m.running ? 1 : 0;
  r.background_wakeups = m.wakeups;
  r.background_passes = m.passes;
  r.background_released_bytes = m.released_bytes;
  return r;
}

}  // namespace

ReleaseStats SnapshotReleaseStats() {
  SnapshotHold hold;
  GetCentralStats(&g_snapshot_central);
  return ReleaseStatsFrom(g_snapshot_central);
}

AllocatorStats SnapshotStats() {
  SettleDeferredFrees();
  SnapshotHold hold;
  AllocatorStats s;
  CollectStats(&s, &g_snapshot_central);
  return s;
}

namespace {

void PrintClassSection(const CentralStats& central, int fd) {
  LogLine line;
  line.Str("  per size class (\"out\": held by the program or a front-end cache):\n").Flush(fd);
  line.Str("  (cpu: misses, capacity stolen from it, batches evicted from it; lock waits:"
           " transfer cache, central list;\n   from shards: objects refills took from"
           " another CPU shard's transfer cache;\n   to spans, from spans: objects full"
           " transfer caches sent down to the central list, objects refills\n   took"
           " from it, freed or fresh)\n").Flush(fd);
  line.Str("    class     size    slabs     out  transfer  central  cpu misses  stolen"
           "  evicted  waits tc  waits cl  from shards    to spans  from spans\n").Flush(fd);
  for (uint32_t cls = 1; cls < kNumClasses; ++cls) {
    const CentralClassStats& c = central.per_class[cls];
    const uint64_t misses = g_cpu_cache.ClassMisses(cls);
    if (c.spans == 0 && c.transfer_objects == 0 && misses == 0) continue;
    const CpuCache::ClassLosses lost = g_cpu_cache.LossesOf(cls);
    line.Str("    ").PaddedDec(cls, 5).PaddedDec(c.size, 9).PaddedDec(c.spans, 9)
        .PaddedDec(c.in_use_objects, 8).PaddedDec(c.transfer_objects, 10)
        .PaddedDec(c.central_free_objects, 9).PaddedDec(misses, 12)
        .PaddedDec(lost.steals, 8).PaddedDec(lost.evictions, 9)
        .PaddedDec(c.transfer_lock_contended, 10).PaddedDec(c.central_lock_contended, 10)
        .PaddedDec(c.transfer_from_other_shards, 13).PaddedDec(c.transfer_to_central, 12)
        .PaddedDec(c.transfer_from_central, 12).Str("\n").Flush(fd);
  }
}

// Only when it happened: calls from signal handlers that interrupted their
// own thread's allocator (reentry.h), served outside the layers above.
void PrintReentrySection(int fd) {
  ReentrantStats r = GetReentrantStats();
  if (r.blocks_mapped == 0 && r.frees_deferred == 0 && r.refused == 0) return;
  LogLine line;
  line.Str("  signal re-entry: ").Dec(r.blocks_mapped).Str(" blocks mapped directly (")
      .Dec(r.live_blocks).Str(" live, ").Dec(r.live_bytes).Str(" bytes), ")
      .Dec(r.frees_deferred).Str(" frees deferred, ").Dec(r.refused).Str(" refused\n")
      .Flush(fd);
}

void PrintReleaseSection(const CentralStats& central, int fd) {
  ReleaseStats r = ReleaseStatsFrom(central);
  MaintenanceStats m = GetMaintenanceStats();
  LogLine line;
  line.Str("  returning memory: delay ").Dec(r.release_delay_ms).Str(" ms, cap ")
      .Dec(r.retained_cap_bytes).Str(" bytes; waiting ").Dec(r.waiting_bytes).Str(" bytes");
  if (r.next_release_in_ms != UINT64_MAX) {
    line.Str(", oldest due in ").Dec(r.next_release_in_ms).Str(" ms");
  }
  line.Str("\n").Flush(fd);
  line.Str("    released: ").Dec(r.released_expired_bytes).Str(" unused for the delay, ")
      .Dec(r.released_growth_bytes).Str(" for fresh pages, ").Dec(r.released_cap_bytes)
      .Str(" over the cap, ").Dec(r.released_trim_bytes).Str(" by malloc_trim (bytes)\n")
      .Flush(fd);
  line.Str("    before growing: the transfer caches were asked ").Dec(central.growth_hook_calls)
      .Str(" times and gave ").Dec(central.growth_hook_objects)
      .Str(" objects of more than 1 KiB back to their spans\n")
      .Flush(fd);
  if (uint64_t in_calls = InsideReleasedInCalls(); in_calls != 0) {
    line.Str("    by the program's own calls (no maintenance thread): ").Dec(in_calls)
        .Str(" bytes of free objects in partly used slabs\n")
        .Flush(fd);
  }
  if (central.system_unmapped_bytes_total != 0) {
    line.Str("    unmapped: ").Dec(central.system_unmapped_bytes_total)
        .Str(" bytes of address space (a mapping was refused, or a chunk's unused tail)\n")
        .Flush(fd);
  }
  const HugePageStats& h = central.huge_pages;
  line.Str("  huge pages: ");
  if (!h.enabled && h.regions == 0) {
    line.Str("off (the default; RSEQMALLOC_HUGE_PAGES=1 asks for them)\n");
  } else if (!h.started) {
    line.Str("not yet (the heap has handed out less than ").Dec(kHugePagesFromBytes >> 20)
        .Str(" MiB, or most of what it handed out was never written: ").Dec(h.sparse_samples)
        .Str(" samples found it sparse)\n");
  } else {
    line.Str("advised on ").Dec(h.regions).Str(" mappings, ").Dec(h.advised_bytes)
        .Str(" bytes; ").Dec(h.split_units).Str(" 2 MiB units taken off by partial releases, ")
        .Dec(h.rejoined_units).Str(" advised again\n");
  }
  line.Flush(fd);
  line.Str("  maintenance thread: ").Str(m.running ? "running" : "not running").Str("; ")
      .Dec(m.wakeups).Str(" wake-ups, ").Dec(m.passes).Str(" cache passes, released ")
      .Dec(m.released_bytes).Str(" bytes (").Dec(m.inside_released_bytes)
      .Str(" of free objects in partly used slabs), ").Dec(m.transfer_objects_returned)
      .Str(" transfer-cache objects returned, ").Dec(m.ids_drained).Str(" idle ids drained\n")
      .Flush(fd);
}

// Where the page heap's free memory is, by span length: many short
// resident spans are fragments no request of their length comes for; they
// wait for the release delay.
void PrintFreeSpanSection(int fd) {
  FreeSpanHistogram h;
  GetPageHeapFreeSpans(&h);
  // FreeSpanBucket's ranges (page_heap.h), one label each.
  static const char* const kLengths[] = {"1",    "2",     "3-4",   "5-8",   "9-16",
                                         "17-32", "33-64", "65-128", ">128"};
  static_assert(std::size(kLengths) == kFreeSpanBuckets);
  LogLine line;
  line.Str("  page heap free spans   pages  resident spans      KiB   returned spans"
           "        KiB\n").Flush(fd);
  for (int b = 0; b < kFreeSpanBuckets; ++b) {
    if (h.backed_spans[b] == 0 && h.returned_spans[b] == 0) continue;
    static const char kSpaces[] = "                              ";  // 30
    line.Str(kSpaces, sizeof(kSpaces) - 1 - strlen(kLengths[b])).Str(kLengths[b])
        .PaddedDec(h.backed_spans[b], 16).PaddedDec(h.backed_pages[b] * (kPageSize >> 10), 9)
        .PaddedDec(h.returned_spans[b], 17).PaddedDec(h.returned_pages[b] * (kPageSize >> 10), 11)
        .Str("\n").Flush(fd);
  }
}

void PrintCpuSection(int fd) {
  if (g_cpu_cache.NumIds() == 0) return;
  LogLine line;
  line.Str("  per-CPU caches (ids used since their last drain):\n").Flush(fd);
  for (int id = 0; id < g_cpu_cache.NumIds(); ++id) {
    CpuCache::IdStats s = g_cpu_cache.StatsOf(id);
    if (!s.used) continue;
    line.Str("    id ").Dec(static_cast<uint64_t>(id)).Str(": cached ").Dec(s.cached_bytes)
        .Str(" of capacity ").Dec(s.capacity_bytes).Str(" bytes (budget ").Dec(s.budget_bytes)
        .Str(", raised ").Dec(s.budget_raises).Str(" lowered ").Dec(s.budget_lowers)
        .Str(" times); misses: ").Dec(s.underflows)
        .Str(" empty, ").Dec(s.overflows).Str(" full; capacity taken: ").Dec(s.steals)
        .Str(" unused, ").Dec(s.evictions).Str(" evicted\n").Flush(fd);
  }
}

}  // namespace

// Holds the snapshot lock throughout: the per-class section reads the same
// central snapshot as the totals.
void PrintStatsReport(int fd) {
  SettleDeferredFrees();
  SnapshotHold hold;
  AllocatorStats s;
  CollectStats(&s, &g_snapshot_central);
  LogLine line;
  line.Str("rseqmalloc statistics: pid ").Dec(static_cast<uint64_t>(getpid()))
      .Str(", mode ").Str(s.mode).Str("\n").Flush(fd);
  Line(line, "in use by the program", s.in_use_bytes, fd);
  Line(line, "  small objects", s.small_in_use_bytes, fd);
  Line(line, "  large blocks", s.large_in_use_bytes, fd);
  Line(line, "front-end caches", s.front_end_cached_bytes, fd);
  Line(line, "transfer caches", s.transfer_cache_bytes, fd);
  Line(line, "central free lists", s.central_free_bytes, fd);
  Line(line, "slab tail waste", s.span_waste_bytes, fd);
  Line(line, "page heap free", s.page_heap_free_bytes, fd);
  Line(line, "returned to the OS", s.returned_bytes, fd);
  Line(line, "reserved, not yet used", s.unused_reserved_bytes, fd);
  Line(line, "metadata", s.metadata_bytes, fd);
  Line(line, "total mapped", s.total_mapped_bytes, fd);
  // Mapped address space costs no memory until touched; the kernel's count
  // of what is really in memory is the figure to compare with other
  // allocators (and it includes the program's own stacks and libraries).
  Line(line, "resident (RSS)", s.resident_bytes, fd);
  line.Str("    (total mapped is address space; pages never touched or returned to the OS\n"
           "     are not resident, the program's stacks, code and libraries are)\n").Flush(fd);
  // Not in total mapped: of the array only what covers the heap is ever
  // touched, and that part is in "metadata".
  PageMap::FlatWindow window = g_pagemap.flat_window();
  if (window.pages != 0) {
    line.Str("  class map: flat for addresses ").Hex(window.first_page << kPageShift)
        .Str("-").Hex((window.first_page + window.pages) << kPageShift)
        .Str(" (").Dec(kFlatClassPages >> 20)
        .Str(" MiB of address space reserved), pagemap leaves elsewhere\n").Flush(fd);
  } else {
    line.Str("  class map: in the pagemap's leaves (the flat array was not reserved: "
             "RLIMIT_AS is set, or the kernel refused)\n").Flush(fd);
  }
  if (s.front_end_hits != 0) {
    uint64_t calls = s.front_end_hits + s.front_end_misses;
    line.Str("  front-end hit rate          ")
        .Fixed(calls == 0 ? 0 : s.front_end_hits * 10000 / calls, 2)
        .Str(" % (").Dec(s.front_end_hits).Str(" hits, ").Dec(s.front_end_misses)
        .Str(" misses)\n").Flush(fd);
  } else {
    // Per-CPU caches count no hits: a counter would cost every fast path.
    line.Str("  front-end misses            ").Dec(s.front_end_misses)
        .Str(" (per-CPU caches count misses only)\n").Flush(fd);
  }
  line.Str("  rseq restarts               ").Dec(s.rseq_restarts).Str("\n").Flush(fd);
  line.Str("  released to the OS in total ").Dec(s.released_bytes_total).Str(" bytes\n")
      .Flush(fd);
  PrintReleaseSection(g_snapshot_central, fd);
  PrintFreeSpanSection(fd);
  PrintReentrySection(fd);
  PrintCpuSection(fd);
  PrintClassSection(g_snapshot_central, fd);
}

void ReportStats() {
  const char* pattern = GetOptions().stats_file;
  if (pattern[0] == '\0') return PrintStatsReport(STDERR_FILENO);
  char path[sizeof(Options::stats_file) + 24];
  size_t n = 0;
  for (const char* c = pattern; *c != '\0' && n < sizeof(path) - 24; ++c) {
    if (c[0] == '%' && c[1] == 'p') {
      LogLine pid;
      pid.Dec(static_cast<uint64_t>(getpid()));
      memcpy(path + n, pid.data(), pid.size());
      n += pid.size();
      ++c;
    } else {
      path[n++] = *c;
    }
  }
  path[n] = '\0';
  NoCancel no_cancel;  // open, write and close are cancellation points
  int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    LogLine line;
    line.Str("rseqmalloc: cannot open RSEQMALLOC_STATS_FILE ").Str(path)
        .Str("; report on stderr\n").Flush(STDERR_FILENO);
    return PrintStatsReport(STDERR_FILENO);
  }
  PrintStatsReport(fd);
  close(fd);
}

}  // namespace rseqmalloc::internal
