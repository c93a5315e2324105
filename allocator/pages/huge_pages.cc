#include "allocator/pages/huge_pages.h"

#include <sys/mman.h>
#include <unistd.h>

#include <atomic>

#include "allocator/base/spinlock.h"

namespace rseqmalloc::internal {
namespace {

struct Region {
  uintptr_t begin;  // 2 MiB-aligned
  uintptr_t end;    // 2 MiB-aligned
  bool has_split_units;
};

constinit std::atomic<bool> g_enabled{false};
constinit std::atomic<bool> g_started{false};
constinit SpinLock g_huge_lock;
// Guarded by g_huge_lock.
constinit Region g_regions[kMaxHugeRegions] = {};
constinit int g_num_regions = 0;
constinit uint64_t g_split_units = 0;
constinit uint64_t g_rejoined_units = 0;
constinit uint64_t g_sparse_samples = 0;
constinit unsigned char g_residency[4096];  // mincore's answer, a slice at a time

uintptr_t UnitFloor(uintptr_t a) { return a & ~(kHugePageBytes - 1); }
uintptr_t UnitCeil(uintptr_t a) { return UnitFloor(a + kHugePageBytes - 1); }

void Advise(uintptr_t begin, uintptr_t end, int advice) {
  madvise(reinterpret_cast<void*>(begin), end - begin, advice);  // advice: a refusal changes nothing
}

// MADV_HUGEPAGE on the whole units of [begin, end), tracked as a region.
void AdviseAndTrackLocked(uintptr_t begin, uintptr_t end) {
  begin = UnitCeil(begin);
  end = UnitFloor(end);
  if (end <= begin || g_num_regions == kMaxHugeRegions) return;
  if (madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE) != 0) return;
  g_regions[g_num_regions++] = Region{begin, end, false};
}

void RemoveLocked(int i) { g_regions[i] = g_regions[--g_num_regions]; }

// Whether at least half of the OS pages of [begin, end) are resident: the
// program writes what it allocates. A program that touches a byte of each
// block must stay on small pages, where its resident size is what it
// touched (with huge pages, 20,000 blocks of 8-128 KiB with one byte
// written each: 1,383 MiB resident instead of 85).
bool DenseLocked(uintptr_t begin, uintptr_t end) {
  // mincore answers one byte per page of the kernel's size.
  uintptr_t os_page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  begin &= ~(os_page - 1);
  if (end <= begin) return false;
  uint64_t pages = 0;
  uint64_t resident = 0;
  for (uintptr_t at = begin; at < end;) {
    uintptr_t n = (end - at + os_page - 1) / os_page;
    if (n > sizeof g_residency) n = sizeof g_residency;
    if (mincore(reinterpret_cast<void*>(at), n * os_page, g_residency) != 0) return false;
    for (uintptr_t i = 0; i < n; ++i) resident += g_residency[i] & 1;
    pages += n;
    at += n * os_page;
  }
  return 2 * resident >= pages;
}

}  // namespace

void HugePagesEnable(bool on) { g_enabled.store(on, std::memory_order_relaxed); }

bool HugePagesStartIfDue(uint64_t handed_out, uintptr_t unused, uintptr_t chunk_end,
                         uintptr_t sample_begin, uintptr_t sample_end) {
  if (g_started.load(std::memory_order_relaxed)) return true;
  if (!g_enabled.load(std::memory_order_relaxed) || handed_out < kHugePagesFromBytes) return false;
  SpinLockHolder h(&g_huge_lock);
  if (g_started.load(std::memory_order_relaxed)) return true;
  if (!DenseLocked(sample_begin, sample_end)) {
    ++g_sparse_samples;
    return false;
  }
  // The part of the heap handed out so far stays on small pages: it may
  // already have holes given back, which a huge page would fill again.
  AdviseAndTrackLocked(unused, chunk_end);
  g_started.store(true, std::memory_order_relaxed);
  return true;
}

void HugePagesAdvise(uintptr_t begin, uintptr_t end) {
  if (!g_started.load(std::memory_order_relaxed) || !g_enabled.load(std::memory_order_relaxed)) {
    return;
  }
  SpinLockHolder h(&g_huge_lock);
  AdviseAndTrackLocked(begin, end);
}

void HugePagesTrimChunk(uintptr_t end) {
  if (!g_started.load(std::memory_order_relaxed)) return;
  SpinLockHolder h(&g_huge_lock);
  for (int i = 0; i < g_num_regions; ++i) {
    Region& r = g_regions[i];
    if (end >= r.end || end < r.begin) continue;
    // The unit `end` falls in keeps its advice on the part that stays
    // mapped, but no longer lies whole in one mapping: it cannot be huge.
    r.end = UnitFloor(end);
    if (r.end <= r.begin) RemoveLocked(i);
    return;
  }
}

void HugePagesBeforeRelease(uintptr_t p, size_t bytes) {
  if (!g_started.load(std::memory_order_relaxed)) return;
  uintptr_t end = p + bytes;
  // Under the lock: the rest of a partial unit may be a free span that
  // another thread is unmapping (HugePagesBeforeUnmap stops tracking it
  // first), and the advice must not reach a mapping that then takes its place.
  SpinLockHolder h(&g_huge_lock);
  for (int i = 0; i < g_num_regions; ++i) {
    Region& r = g_regions[i];
    uintptr_t b = p > r.begin ? p : r.begin;
    uintptr_t f = end < r.end ? end : r.end;
    if (b >= f) continue;
    uintptr_t whole_begin = UnitCeil(b);
    uintptr_t whole_end = UnitFloor(f);
    uint64_t split = 0;
    if (whole_begin >= whole_end) {
      Advise(UnitFloor(b), UnitCeil(f), MADV_NOHUGEPAGE);
      split = (UnitCeil(f) - UnitFloor(b)) / kHugePageBytes;
    } else {
      if (b < whole_begin) {
        Advise(UnitFloor(b), whole_begin, MADV_NOHUGEPAGE);
        ++split;
      }
      if (whole_end < f) {
        Advise(whole_end, UnitCeil(f), MADV_NOHUGEPAGE);
        ++split;
      }
    }
    if (split != 0) r.has_split_units = true;
    g_split_units += split;
  }
}

void HugePagesAfterRelease(uintptr_t p, size_t bytes) {
  if (!g_started.load(std::memory_order_relaxed)) return;
  uintptr_t end = p + bytes;
  SpinLockHolder h(&g_huge_lock);
  for (int i = 0; i < g_num_regions; ++i) {
    Region& r = g_regions[i];
    if (!r.has_split_units) continue;  // its units never lost the advice
    uintptr_t whole_begin = UnitCeil(p > r.begin ? p : r.begin);
    uintptr_t whole_end = UnitFloor(end < r.end ? end : r.end);
    if (whole_begin >= whole_end) continue;
    // Empty now: its next first touch may fault a huge page again.
    Advise(whole_begin, whole_end, MADV_HUGEPAGE);
    g_rejoined_units += (whole_end - whole_begin) / kHugePageBytes;
  }
}

void HugePagesBeforeUnmap(uintptr_t p, size_t bytes) {
  if (!g_started.load(std::memory_order_relaxed)) return;
  uintptr_t end = p + bytes;
  SpinLockHolder h(&g_huge_lock);
  for (int i = 0; i < g_num_regions;) {
    Region& r = g_regions[i];
    if (r.begin >= end || p >= r.end) {
      ++i;
      continue;
    }
    Advise(r.begin, r.end, MADV_NOHUGEPAGE);
    RemoveLocked(i);
  }
}

void GetHugePageStats(HugePageStats* out) {
  SpinLockHolder h(&g_huge_lock);
  out->enabled = g_enabled.load(std::memory_order_relaxed);
  out->started = g_started.load(std::memory_order_relaxed);
  out->regions = g_num_regions;
  out->advised_bytes = 0;
  for (int i = 0; i < g_num_regions; ++i) {
    out->advised_bytes += g_regions[i].end - g_regions[i].begin;
  }
  out->split_units = g_split_units;
  out->rejoined_units = g_rejoined_units;
  out->sparse_samples = g_sparse_samples;
}

void HugePagesLockForFork() { g_huge_lock.Lock(); }
void HugePagesUnlockAfterFork() { g_huge_lock.Unlock(); }

}  // namespace rseqmalloc::internal
