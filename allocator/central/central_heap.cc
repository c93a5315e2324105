#include "allocator/central/central_heap.h"

#include <sched.h>

#include <atomic>
#include <cstring>

#include "allocator/base/clock.h"
#include "allocator/pages/arena.h"
#include "allocator/central/central_freelist.h"
#include "allocator/pages/page_heap.h"
#include "allocator/base/spinlock.h"
#include "allocator/pages/system.h"
#include "allocator/central/transfer_cache.h"
#include "allocator/central/transfer_shards.h"

namespace rseqmalloc::internal {
namespace {

// Beyond this a byte count cannot name pages inside a 48-bit address space.
constexpr size_t kMaxLargeBytes = size_t{1} << (kAddressBits - 1);

constinit SpinLock g_init_lock;
constinit std::atomic<bool> g_initialized{false};
constinit PageHeap g_page_heap;
constinit CentralFreeList g_central[kNumClasses];
// One transfer cache per class and CPU shard (docs/design.md, "Transfer
// caches per CPU shard"): CPUs that free and allocate in runs keep their
// objects to themselves, and their refills take from the other shards'
// caches before the central list.
constinit int g_transfer_shards = 1;
constinit TransferCache g_transfer[kMaxTransferShards][kNumClasses];
constinit OccupiedShards g_occupied[kNumClasses];  // transfer_shards.h

int CountTransferShards() {
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof(allowed), &allowed) != 0) return 1;
  int cpus = CPU_COUNT(&allowed);
  return cpus < 1 ? 1 : cpus < kMaxTransferShards ? cpus : kMaxTransferShards;
}

int TransferShard() {
  if (g_transfer_shards == 1) return 0;
  int cpu = sched_getcpu();  // glibc's rseq area, else the vDSO: no system call
  return cpu < 0 ? 0 : cpu % g_transfer_shards;
}

template <typename F>
void ForEachTransferCache(F f) {
  for (int s = 0; s < g_transfer_shards; ++s) {
    for (uint32_t cls = 1; cls < kNumClasses; ++cls) f(g_transfer[s][cls]);
  }
}

void LockTransferCaches() {
  ForEachTransferCache([](TransferCache& t) { t.Lock(); });
}
void UnlockTransferCaches() {
  ForEachTransferCache([](TransferCache& t) { t.Unlock(); });
}

size_t PagesFor(size_t bytes) { return bytes == 0 ? 1 : (bytes + kPageSize - 1) >> kPageShift; }

// The bytes of slot arrays for every class's caches.
size_t TransferSlotsBytes(int shards, bool may_grow) {
  size_t total_slots = 0;
  for (uint32_t cls = 1; cls < kNumClasses; ++cls) {
    total_slots += static_cast<size_t>(TransferCache::SlotsFor(cls, shards, may_grow)) *
                   static_cast<size_t>(shards);
  }
  return PagesFor(total_slots * sizeof(void*)) << kPageShift;
}

// Mapped apart from the arena: reserved for grown caches, touched only as
// used, and partly given back when they shrink. nullptr when the system
// refuses the mapping.
void** MapTransferSlots(int shards, bool may_grow) {
  return static_cast<void**>(SystemMapMetadata(TransferSlotsBytes(shards, may_grow)));
}

// Growth's reservation (32 MiB) is made only when it is at most this
// share of an address-space limit: under a limit of 40 MiB it would leave
// the heap a few MiB.
constexpr size_t kTransferGrowthShareOfLimit = 32;

// The page heap's growth hook: before it takes fresh pages, the transfer
// caches of the classes over 1 KiB give every object they hold back to its
// span. Those caches grow as the small ones do since 2026-12-05 (up to
// 16 MiB of objects a class; before, 1 MiB), and a program that keeps a
// burst of such blocks cached while it needs memory for something else
// would otherwise grow by that much (redis' 18 KiB query buffers: peak RSS
// 77 against 67 MiB). Their spans hold few objects each, so they come free.
// The small classes keep theirs, as they did before: a span holds many of
// them, and threading each one back would free few spans for the work.
// The bound, kGiveBackAboveBytes, is in central_heap.h.

size_t GiveBigCachedObjectsToTheSpans() {
  size_t given = 0;
  for (uint32_t cls = 1; cls < kNumClasses; ++cls) {
    if (ClassToSize(cls) <= kGiveBackAboveBytes) continue;
    for (int s = 0; s < g_transfer_shards; ++s) {
      given += static_cast<size_t>(g_transfer[s][cls].GiveAll());
    }
  }
  return given;
}

[[gnu::noinline, gnu::cold]] void InitSlow() {
  SpinLockHolder h(&g_init_lock);
  if (g_initialized.load(std::memory_order_relaxed)) return;
  g_pagemap.ChooseClassBytes();  // before any heap mapping (pagemap.h)
  g_transfer_shards = CountTransferShards();
  // Slots for grown caches first; under an address-space limit (RLIMIT_AS)
  // too low for them, caches that keep their first capacity, then one shard
  // of those: a program limited to a few tens of MiB still allocates
  // (docs/reliability.md, "A low address-space limit").
  bool may_grow =
      ReservationFitsLimit(TransferSlotsBytes(g_transfer_shards, true), kTransferGrowthShareOfLimit);
  void** slots = MapTransferSlots(g_transfer_shards, may_grow);
  if (slots == nullptr && may_grow) {
    may_grow = false;
    slots = MapTransferSlots(g_transfer_shards, may_grow);
  }
  if (slots == nullptr && g_transfer_shards > 1) {
    g_transfer_shards = 1;
    slots = MapTransferSlots(g_transfer_shards, may_grow);
  }
  if (slots == nullptr) Crash("cannot map memory for the transfer caches");
  for (uint32_t cls = 1; cls < kNumClasses; ++cls) {
    g_central[cls].Init(cls, &g_page_heap);
    for (int s = 0; s < g_transfer_shards; ++s) {
      g_transfer[s][cls].Init(cls, &g_central[cls], slots, g_transfer_shards, may_grow);
      if (g_transfer_shards > 1) {
        g_transfer[s][cls].TrackOccupancy(&g_occupied[cls].bits, uint32_t{1} << s);
      }
      slots += TransferCache::SlotsFor(cls, g_transfer_shards, may_grow);
    }
  }
  g_page_heap.SetGrowthHook(&GiveBigCachedObjectsToTheSpans);
  g_initialized.store(true, std::memory_order_release);
}

// When the next idle-return pass is due (0: the first interval has not
// started).
constinit std::atomic<uint64_t> g_next_idle_return_ns{0};
// A pass asked for this much before it is due runs anyway: the maintenance
// thread's passes are a period apart on the precise clock, which the coarse
// one trails by up to a tick.
constexpr uint64_t kIdleReturnSlackNs = 20'000'000;
// Whether RemoveBatch / InsertBatch run the passes: only while no
// maintenance thread does (a pass can move many objects; a program's call
// should not pay for that when a thread of ours can).
constinit std::atomic<bool> g_idle_return_in_calls{true};

// Whether the caller may run the idle pass due at `now`: at most one per
// kIdleReturnPeriodNs, whoever asks.
bool ClaimIdlePass(uint64_t now) {
  uint64_t next = g_next_idle_return_ns.load(std::memory_order_relaxed);
  if (now + kIdleReturnSlackNs < next) return false;
  if (!g_next_idle_return_ns.compare_exchange_strong(next, now + kIdleReturnPeriodNs,
                                                     std::memory_order_relaxed)) {
    return false;  // another thread runs this pass
  }
  return next != 0;  // 0: the first interval starts now
}

uint64_t ReturnIdleTransferObjectsNow() {
  uint64_t moved = 0;
  ForEachTransferCache([&](TransferCache& t) { moved += static_cast<uint64_t>(t.ReturnIdle()); });
  return moved;
}

// Bytes the program's own calls released from idle classes' partly used
// slabs (IdlePassInCall), for the report.
constinit std::atomic<uint64_t> g_inside_released_in_calls{0};

// With no maintenance thread (a single-threaded process,
// RSEQMALLOC_BACKGROUND_THREAD=0, RSEQMALLOC_CACHE=none, a fork child),
// RemoveBatch and InsertBatch run its idle passes themselves, at most once
// a second: idle transfer-cache objects go back to the spans, and idle
// classes give back the pages of free objects in their partly used slabs.
// Without the second, a single-threaded program never got those pages
// back.
void IdlePassInCall() {
  uint64_t now = CoarseMonotonicNs();
  if (!ClaimIdlePass(now)) return;
  ReturnIdleTransferObjectsNow();
  uint64_t released = 0;
  ReleaseInsideIdleFreeObjects(now, &released);
  if (released != 0) g_inside_released_in_calls.fetch_add(released, std::memory_order_relaxed);
}

bool ValidClass(uint32_t cls) { return cls >= 1 && cls < kNumClasses; }

// The span of the in-use large block that starts at p; crashes naming p
// otherwise (anything else would corrupt the heap).
Span* LiveLargeSpan(void* p, const char* what) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  Span* span = g_pagemap.GetSpan(a >> kPageShift);
  if (span == nullptr || span->start_address() != a || span->size_class != kLargeClass ||
      span->location != SpanLocation::kInUse || span->owner != &g_page_heap) {
    CrashWithPointer(what, p);
  }
  return span;
}

}  // namespace

void InitCentralHeap() {
  if (__builtin_expect(!g_initialized.load(std::memory_order_acquire), 0)) InitSlow();
}

int RemoveBatch(uint32_t cls, void** out, int n) {
  InitCentralHeap();
  if (!ValidClass(cls) || n <= 0) return 0;
  if (g_idle_return_in_calls.load(std::memory_order_relaxed)) IdlePassInCall();
  int shard = TransferShard();
  int ask[kMaxTransferShards - 1];
  TransferCache& own = g_transfer[shard][cls];
  int count = own.Robbed()
                  ? 0
                  : ShardsToAsk(g_occupied[cls].bits.load(std::memory_order_relaxed), shard, ask);
  TransferCache* others[kMaxTransferShards - 1];
  for (int i = 0; i < count; ++i) others[i] = &g_transfer[ask[i]][cls];
  return own.RemoveRange(out, n, others, count);
}

void InsertBatch(uint32_t cls, void* const* items, int n) {
  InitCentralHeap();
  if (!ValidClass(cls)) Crash("InsertBatch: invalid size class");
  if (n <= 0) return;
  if (g_idle_return_in_calls.load(std::memory_order_relaxed)) IdlePassInCall();
  g_transfer[TransferShard()][cls].InsertRange(items, n);
}

// calloc-sized blocks from this size up are zeroed by madvise, not memset.
constexpr size_t kZeroByReleaseBytes = size_t{2} << 20;

bool LargeRequestIsHopeless(size_t size) { return SystemRequestExceedsMemory(size); }

void* AllocateLarge(size_t size, size_t align, bool* zeroed, bool grows) {
  InitCentralHeap();
  if (align < kPageSize) align = kPageSize;
  if ((align & (align - 1)) != 0 || align > kMaxLargeBytes || size > kMaxLargeBytes) {
    return nullptr;
  }
  Span* span = g_page_heap.New(PagesFor(size), kLargeClass, align >> kPageShift, kNoLocality,
                               grows ? Placement::kRoomToGrow : Placement::kBestFit);
  if (span == nullptr) return nullptr;
  if (zeroed != nullptr) {
    *zeroed = span->was_returned;
    // A big block on resident pages (freed recently, kept for reuse) is
    // zeroed by giving its pages back rather than by writing them: the
    // caller touches only what it uses, and its RSS starts at zero, as with
    // the fresh mapping glibc would give it. Below the threshold memset is
    // cheaper than the faults that follow.
    if (!*zeroed && span->bytes() >= kZeroByReleaseBytes) {
      *zeroed = SystemRelease(span->start(), span->bytes());
    }
  }
  return span->start();
}

void FreeLarge(void* p) {
  g_page_heap.Delete(LiveLargeSpan(p, "free(): invalid pointer (not the start of a live large block)"));
}

bool ResizeLargeInPlace(void* p, size_t size, size_t room) {
  if (size > kMaxLargeBytes) return false;
  if (room > kMaxLargeBytes) room = kMaxLargeBytes;
  Span* span = LiveLargeSpan(p, "realloc(): invalid pointer (not the start of a live large block)");
  return g_page_heap.ResizeLarge(span, PagesFor(size), PagesFor(room));
}

void* AllocateMetadata(size_t bytes) { return ArenaAlloc(bytes); }

bool ReservationFitsLimit(size_t bytes, size_t share) {
  return bytes <= SystemAddressSpaceLimit() / share;
}

bool IsObjectStart(const void* p) {
  uint32_t cls = ClassifyPointer(p);
  if (cls == kLargeClass) return true;
  if (cls == kNotOurs || p == nullptr) return false;
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  const Span* span = g_pagemap.GetSpan(a >> kPageShift);
  return span != nullptr && (a - span->start_address()) % ClassToSize(cls) == 0;
}

size_t UsableSize(const void* p) {
  uint32_t cls = ClassifyPointer(p);
  if (cls == kNotOurs) return 0;
  if (cls != kLargeClass) return ClassToSize(cls);
  Span* span = g_pagemap.GetSpan(reinterpret_cast<uintptr_t>(p) >> kPageShift);
  return span == nullptr ? 0 : span->bytes();
}

void ReleaseFreeMemory() {
  InitCentralHeap();
  ForEachTransferCache([](TransferCache& t) { t.Drain(); });
  g_page_heap.ReleaseAll();
}

void SetPageHeapFreeCap(size_t bytes) { g_page_heap.SetFreeCap(bytes); }
size_t PageHeapFreeCap() { return g_page_heap.free_cap(); }
void SetPageHeapReleaseDelay(uint64_t ns) { g_page_heap.SetReleaseDelay(ns); }
void GetPageHeapFreeSpans(FreeSpanHistogram* out) { g_page_heap.GetFreeSpanHistogram(out); }
uint64_t PageHeapReleaseDelay() { return g_page_heap.release_delay(); }
void UseHugePages(bool on) { SystemUseHugePages(on); }

uint64_t ReleaseExpiredPages(uint64_t* released) { return g_page_heap.ReleaseExpired(released); }
uint64_t NextPageReleaseDeadline() { return g_page_heap.next_release_deadline(); }
uint64_t PagesWaitingForReleaseBytes() { return g_page_heap.waiting_bytes(); }
void SetBackgroundPageRelease(bool on) {
  g_page_heap.SetBackgroundSweeps(on);
  g_idle_return_in_calls.store(!on, std::memory_order_relaxed);
}
void SetPageReleaseDeadlineHook(void (*hook)()) { g_page_heap.SetDeadlineHook(hook); }

uint64_t TransferCacheObjects() {
  InitCentralHeap();
  uint64_t objects = 0;
  ForEachTransferCache([&](TransferCache& cache) {
    TransferCacheStats t;
    cache.GetStats(&t);
    objects += t.objects;
  });
  return objects;
}

uint64_t ReturnIdleTransferObjects() {
  InitCentralHeap();
  return ClaimIdlePass(CoarseMonotonicNs()) ? ReturnIdleTransferObjectsNow() : 0;
}

namespace {

// What ReleaseInsideIdleFreeObjects last saw of each list: its activity,
// and since when (one caller at a time: g_inside_pass_lock).
struct IdleWatch {
  uint64_t activity;
  uint64_t since_ns;
};
constinit IdleWatch g_idle_watch[kNumClasses] = {};
// A list that had a batch while it was being looked at is looked at again
// after the delay, and never sooner than this (with a delay of 0 the thread
// would otherwise spin on a list in use).
constexpr uint64_t kInsideRetryNs = 100'000'000;
// The maintenance thread runs the pass, or a program's call while there is
// no thread (IdlePassInCall); both at once only while the thread starts.
constinit SpinLock g_inside_pass_lock;

uint64_t ReleaseInsideIdleFreeObjectsLocked(uint64_t now, uint64_t* released) {
  uint64_t delay = g_page_heap.release_delay();
  uint64_t next = UINT64_MAX;
  for (uint32_t cls = 1; cls < kNumClasses; ++cls) {
    CentralFreeList& list = g_central[cls];
    uint64_t activity = list.activity();
    IdleWatch& watch = g_idle_watch[cls];
    if (activity != watch.activity) watch = {activity, now};
    if (list.ReleasedAt(activity)) continue;
    uint64_t due = watch.since_ns + delay;
    if (now < due) {
      next = next < due ? next : due;
    } else if (!list.ReleaseInsideFreeObjects(activity, released)) {
      uint64_t retry = now + (delay > kInsideRetryNs ? delay : kInsideRetryNs);
      if (retry < next) next = retry;  // a batch came meanwhile
    }
  }
  return next;
}

}  // namespace

uint64_t ReleaseInsideIdleFreeObjects(uint64_t now, uint64_t* released) {
  InitCentralHeap();
  if (!g_inside_pass_lock.TryLock()) return now + kInsideRetryNs;
  uint64_t next = ReleaseInsideIdleFreeObjectsLocked(now, released);
  g_inside_pass_lock.Unlock();
  return next;
}

bool TryLockInsidePassForTesting() { return g_inside_pass_lock.TryLock(); }
void UnlockInsidePassForTesting() { g_inside_pass_lock.Unlock(); }

uint64_t InsideReleasedInCalls() {
  return g_inside_released_in_calls.load(std::memory_order_relaxed);
}

void GetCentralStats(CentralStats* out) {
  InitCentralHeap();
  memset(out, 0, sizeof(*out));
  LockTransferCaches();
  for (uint32_t cls = 1; cls < kNumClasses; ++cls) g_central[cls].Lock();
  g_page_heap.Lock();

  for (uint32_t cls = 1; cls < kNumClasses; ++cls) {
    CentralFreeListStats c;
    TransferCacheStats t{};
    g_central[cls].GetStatsLocked(&c);
    for (int s = 0; s < g_transfer_shards; ++s) {
      TransferCacheStats shard;
      g_transfer[s][cls].GetStatsLocked(&shard);
      t.objects += shard.objects;
      t.outstanding += shard.outstanding;
      t.lock_contended += shard.lock_contended;
      t.from_other_shards += shard.from_other_shards;
      t.to_central += shard.to_central;
      t.from_central += shard.from_central;
    }
    CentralClassStats& k = out->per_class[cls];
    size_t size = ClassToSize(cls);
    size_t span_bytes = ClassToPages(cls) * kPageSize;
    k.size = size;
    k.spans = c.spans;
    k.span_bytes = c.spans * span_bytes;
    k.central_free_objects = c.free_objects;
    k.transfer_objects = t.objects;
    k.in_use_objects = static_cast<uint64_t>(t.outstanding);
    k.transfer_lock_contended = t.lock_contended;
    k.central_lock_contended = c.lock_contended;
    k.transfer_from_other_shards = t.from_other_shards;
    k.transfer_to_central = t.to_central;
    k.transfer_from_central = t.from_central;
    out->central_free_bytes += k.central_free_objects * size;
    out->transfer_cache_bytes += k.transfer_objects * size;
    out->small_in_use_bytes += k.in_use_objects * size;
    out->span_waste_bytes += c.spans * (span_bytes % size);
  }
  PageHeapStats ph;
  g_page_heap.GetStatsLocked(&ph);
  // The page heap's lock keeps it from growing, so the system's counters
  // match its own here.
  SystemStats sys;
  GetSystemStats(&sys);
  ArenaStats arena;
  GetArenaStats(&arena);

  g_page_heap.Unlock();
  for (uint32_t cls = kNumClasses - 1; cls >= 1; --cls) g_central[cls].Unlock();
  UnlockTransferCaches();

  out->system_reserved_bytes = sys.reserved_bytes;
  out->system_unused_bytes = sys.reserved_bytes - sys.handed_out_bytes;
  out->system_released_bytes_total = sys.released_bytes_total;
  out->system_unmapped_bytes_total = sys.unmapped_bytes_total;
  out->page_heap_bytes = ph.total_bytes;
  out->small_span_bytes = ph.small_in_use_bytes;
  out->large_in_use_bytes = ph.large_in_use_bytes;
  out->page_heap_free_bytes = ph.free_backed_bytes;
  out->page_heap_returned_bytes = ph.free_returned_bytes;
  out->page_heap_free_cap_bytes = g_page_heap.free_cap();
  out->page_heap_release_delay_ns = g_page_heap.release_delay();
  out->page_heap_next_release_ns = ph.next_release_ns;
  out->released_expired_bytes = ph.released_expired_bytes;
  out->released_growth_bytes = ph.released_growth_bytes;
  out->released_cap_bytes = ph.released_cap_bytes;
  out->released_trim_bytes = ph.released_trim_bytes;
  out->growth_hook_calls = ph.growth_hook_calls;
  out->growth_hook_objects = ph.growth_hook_objects;
  out->free_spans = ph.free_spans;
  out->huge_pages = sys.huge;
  out->metadata_bytes = arena.mapped_bytes + g_pagemap.leaf_bytes();
  out->spans_metadata = arena.spans_made - ph.spare_spans;
}

void LockAllForFork() {
  g_init_lock.Lock();
  LockTransferCaches();
  for (uint32_t cls = 1; cls < kNumClasses; ++cls) g_central[cls].Lock();
  g_page_heap.Lock();
  ArenaLockForFork();
  SystemLockForFork();
}

void UnlockAllAfterFork(bool child) {
  // The idle pass may have been running on another thread, which the child
  // does not have: nobody would ever release its lock there. (Not taken
  // before fork: a pass runs for milliseconds.)
  if (child) {
    g_inside_pass_lock.Unlock();
    g_page_heap.ReclaimReleasingLocked();
  }
  SystemUnlockAfterFork();
  ArenaUnlockAfterFork();
  g_page_heap.Unlock();
  for (uint32_t cls = kNumClasses - 1; cls >= 1; --cls) g_central[cls].Unlock();
  UnlockTransferCaches();
  g_init_lock.Unlock();
}

}  // namespace rseqmalloc::internal
