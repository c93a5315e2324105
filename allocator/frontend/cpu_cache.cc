#include "allocator/frontend/cpu_cache.h"

#include <linux/membarrier.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <atomic>

#include "allocator/arena.h"
#include "allocator/central_heap.h"
#include "allocator/config/options.h"
#include "allocator/spinlock.h"
#include "rseq/cpus.h"
#include "rseq/registration.h"

namespace rseqmalloc::internal {
namespace {

using rseq::IndexMode;
using rseq::RseqOps;

// Most slots a class may use on one id: enough for 64 KiB of objects, at
// least two batches, at most 2048 (tcmalloc's figure for its smallest
// classes). The sum must fit in one region after the headers.
constexpr uint32_t kMaxCapacitySlots = 2048;
constexpr size_t kCapacityTargetBytes = 64 * 1024;
// An id with no slow-path activity for this long, while other ids had some,
// is drained back to the transfer caches.
constexpr int64_t kIdlePeriodNs = 1'000'000'000;

struct CapacityTable {
  uint16_t begin[kNumClasses];
  uint16_t max[kNumClasses];
  uint32_t end_slot;
};

constexpr CapacityTable MakeCapacityTable() {
  CapacityTable t{};
  uint32_t slot = (rseq::internal::kHeaderBytes * kNumClasses + 7) / 8;
  for (uint32_t cls = 1; cls < kNumClasses; ++cls) {
    size_t by_bytes = kCapacityTargetBytes / ClassToSize(cls);
    size_t floor = 2 * static_cast<size_t>(ClassToBatch(cls));
    size_t cap = by_bytes < floor ? floor : by_bytes;
    if (cap > kMaxCapacitySlots) cap = kMaxCapacitySlots;
    t.begin[cls] = static_cast<uint16_t>(slot);
    t.max[cls] = static_cast<uint16_t>(cap);
    slot += static_cast<uint32_t>(cap);
  }
  t.end_slot = slot;
  return t;
}

constexpr CapacityTable kCapacity = MakeCapacityTable();
static_assert(kCapacity.end_slot * 8 <= (size_t{1} << kSlabShift), "slab region too small");
static_assert(kCapacity.end_slot <= 0xffff, "slot indices are 16-bit");

// Eviction (EvictCapacity) is for classes in sustained demand: a class may
// evict once it has at least kEvictMinShare of the id's recent misses.
// Recent: each class's count is halved every kMissWindow misses of the id.
// A program cycling through many classes (realloc growth: one miss per class
// per cycle) then never evicts, which would only trade objects back and
// forth (-25 % there with eviction on every miss); one that keeps missing
// in a few classes (perl building a hash) does.
constexpr uint32_t kMissWindow = 64;
constexpr uint16_t kEvictMinShare = 8;

// Slow-path state of one id, on cache lines of its own.
struct alignas(64) IdState {
  SpinLock lock;
  uint64_t capacity_bytes;  // sum over classes of (end - begin) * size
  uint64_t misses;
  uint16_t recent_misses[kNumClasses];  // decayed per-class counts
  uint64_t misses_at_last_scan;
  bool used;
};

IdState* g_ids = nullptr;
int g_num_ids = 0;
bool g_remote_drain = false;
std::atomic<uint64_t> g_hits{0};
std::atomic<int64_t> g_next_idle_scan_ns{0};
std::atomic<uint64_t> g_evictions{0};

uint32_t* HeaderWord(int id, uint32_t cls) {
  return reinterpret_cast<uint32_t*>(static_cast<char*>(g_slab) +
                                     (static_cast<size_t>(id) << kSlabShift) +
                                     rseq::internal::kHeaderBytes * cls);
}

void** Slots(int id) {
  return reinterpret_cast<void**>(static_cast<char*>(g_slab) +
                                  (static_cast<size_t>(id) << kSlabShift));
}

uint16_t Current(uint32_t header) { return static_cast<uint16_t>(header); }
uint16_t End(uint32_t header) { return static_cast<uint16_t>(header >> 16); }
uint32_t Header(uint32_t current, uint32_t end) { return current | (end << 16); }

int64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return ts.tv_sec * 1'000'000'000LL + ts.tv_nsec;
}

void FoldHits() {
  if (tls_cpu_cache_hits != 0) {
    g_hits.fetch_add(tls_cpu_cache_hits, std::memory_order_relaxed);
    tls_cpu_cache_hits = 0;
  }
}

// A header of 0 means "never used on this id" (or drained): capacity 0.
void Decode(uint32_t cls, uint32_t header, uint32_t* current, uint32_t* end) {
  uint32_t begin = g_class_begin[cls];
  *current = header == 0 ? begin : Current(header);
  *end = header == 0 ? begin : End(header);
}

// Takes up to `bytes` of unused capacity (end - current) from other classes
// on `id`, the class with the most unused bytes first. Caller holds the
// id's lock and runs (probably) on `id`. Returns the bytes freed.
template <IndexMode kMode>
uint64_t StealCapacity(int id, uint32_t for_cls, uint64_t bytes) {
  uint64_t freed = 0;
  for (int round = 0; round < 4 && freed < bytes; ++round) {
    uint32_t victim = 0;
    uint64_t victim_unused = 0;
    for (uint32_t cls = 1; cls < kNumClasses; ++cls) {
      if (cls == for_cls) continue;
      uint32_t h = __atomic_load_n(HeaderWord(id, cls), __ATOMIC_RELAXED);
      uint64_t unused = h == 0 ? 0 : (End(h) - Current(h)) * ClassToSize(cls);
      if (unused > victim_unused) {
        victim = cls;
        victim_unused = unused;
      }
    }
    if (victim == 0) break;
    size_t size = ClassToSize(victim);
    uint32_t h = __atomic_load_n(HeaderWord(id, victim), __ATOMIC_RELAXED);
    uint32_t slots = static_cast<uint32_t>((bytes - freed + size - 1) / size);
    uint32_t unused = End(h) - Current(h);
    if (slots > unused) slots = unused;
    if (h == 0 || slots == 0) break;
    uint32_t shrunk = Header(Current(h), End(h) - slots);
    if (RseqOps::CompareAndStore<kMode, uint32_t>(id, g_slab, kSlabShift,
                                                  rseq::internal::kHeaderBytes * victim, h,
                                                  shrunk) != rseq::CasResult::kStored) {
      break;  // migrated, or the victim moved: give up for this miss
    }
    freed += slots * size;
  }
  return freed;
}

// When no class has enough unused capacity: takes capacity that holds
// objects, from the class with the most capacity bytes, and sends the objects
// above its new end to the transfer cache. Without this, a program whose
// caches are all full (common: every class it ever used sits at capacity)
// could never grow the class it now needs, and every call of that class
// would go to the transfer cache.
//
// The victim's header is swapped to 0 first, by a compare-and-store that
// runs on `id`: a section on `id` that read the old header has not committed
// (it was preempted for us to run) and restarts, and every section that
// reads 0 fails without writing (as in DrainId). Only holders of the id's
// lock write a header that is 0, so the slots stay still while we copy them
// out, and a plain store publishes the shrunk header, even if this thread
// migrated meanwhile. Caller holds the id's lock. Returns the bytes freed.
template <IndexMode kMode>
uint64_t EvictCapacity(int id, uint32_t for_cls, uint64_t bytes) {
  uint32_t victim = 0;
  uint32_t h = 0;  // the victim's header as the scan read it
  uint64_t victim_bytes = 0;
  for (uint32_t cls = 1; cls < kNumClasses; ++cls) {
    if (cls == for_cls) continue;
    uint32_t header = __atomic_load_n(HeaderWord(id, cls), __ATOMIC_RELAXED);
    uint64_t capacity =
        header == 0 ? 0 : (End(header) - g_class_begin[cls]) * ClassToSize(cls);
    if (capacity > victim_bytes) {
      victim = cls;
      h = header;
      victim_bytes = capacity;
    }
  }
  if (victim == 0) return 0;
  if (RseqOps::CompareAndStore<kMode, uint32_t>(id, g_slab, kSlabShift,
                                                rseq::internal::kHeaderBytes * victim, h,
                                                0) != rseq::CasResult::kStored) {
    return 0;  // migrated, or the victim moved: the next miss tries again
  }
  size_t size = ClassToSize(victim);
  uint32_t begin = g_class_begin[victim];
  uint32_t current = Current(h);
  uint32_t end = End(h);
  // At least one batch, so two classes that take turns do not evict each
  // other on every miss.
  uint32_t slots = static_cast<uint32_t>((bytes + size - 1) / size);
  uint32_t batch = static_cast<uint32_t>(ClassToBatch(victim));
  if (slots < batch) slots = batch;
  if (slots > end - begin) slots = end - begin;
  uint32_t new_end = end - slots;
  void** slot_array = Slots(id);
  for (uint32_t s = new_end; s < current;) {
    int n = static_cast<int>(current - s < kMaxBatch ? current - s : kMaxBatch);
    InsertBatch(victim, slot_array + s, n);
    s += static_cast<uint32_t>(n);
  }
  uint32_t new_current = current < new_end ? current : new_end;
  __atomic_store_n(HeaderWord(id, victim), Header(new_current, new_end), __ATOMIC_RELEASE);
  g_evictions.fetch_add(1, std::memory_order_relaxed);
  return static_cast<uint64_t>(slots) * size;
}

// Grows class `cls` on `id` by up to `want` slots within the byte budget.
// Caller holds the id's lock.
template <IndexMode kMode>
void Grow(int id, uint32_t cls, uint32_t want) {
  IdState& state = g_ids[id];
  uint32_t h = __atomic_load_n(HeaderWord(id, cls), __ATOMIC_RELAXED);
  uint32_t current, end;
  Decode(cls, h, &current, &end);
  uint32_t room = kCapacity.max[cls] - (end - g_class_begin[cls]);
  if (want > room) want = room;
  if (want == 0) return;
  size_t size = ClassToSize(cls);
  uint64_t budget = GetOptions().per_cpu_cache_bytes;
  if (state.capacity_bytes + want * size > budget) {
    uint64_t over = state.capacity_bytes + want * size - budget;
    uint64_t freed = StealCapacity<kMode>(id, cls, over);
    if (freed < over && state.recent_misses[cls] >= kEvictMinShare) {
      freed += EvictCapacity<kMode>(id, cls, over - freed);
    }
    state.capacity_bytes -= freed;
    uint64_t left = budget > state.capacity_bytes ? budget - state.capacity_bytes : 0;
    if (want > left / size) want = static_cast<uint32_t>(left / size);
    if (want == 0) return;
  }
  if (RseqOps::CompareAndStore<kMode, uint32_t>(id, g_slab, kSlabShift,
                                                rseq::internal::kHeaderBytes * cls, h,
                                                Header(current, end + want)) ==
      rseq::CasResult::kStored) {
    state.capacity_bytes += want * size;
  }
}

// Returns the id the thread would use, registering it on first use; -1
// when rseq is unavailable to this thread.
template <IndexMode kMode>
int CurrentIdOrRegister() {
  int id = RseqOps::CurrentId<kMode>();
  if (id >= 0) return id;
  if (rseq::RegisterCurrentThread() == rseq::Registration::kUnavailable) return -1;
  id = RseqOps::CurrentId<kMode>();
  return id;
}

void NoteMiss(int id, uint32_t cls) {
  IdState& state = g_ids[id];
  state.used = true;
  if (++state.misses % kMissWindow == 0) {
    for (uint16_t& n : state.recent_misses) n = static_cast<uint16_t>(n / 2);
  }
  if (state.recent_misses[cls] < 0xffff) ++state.recent_misses[cls];
}

// Drains every id that had no slow-path activity for a whole period while
// this thread had some. Runs at most once per period, from any slow path.
void MaybeDrainIdle() {
  if (!g_remote_drain) return;
  int64_t now = NowNs();
  int64_t next = g_next_idle_scan_ns.load(std::memory_order_relaxed);
  if (now < next) return;
  if (!g_next_idle_scan_ns.compare_exchange_strong(next, now + kIdlePeriodNs)) return;
  if (next == 0) return;  // first period starts now
  for (int id = 0; id < g_num_ids; ++id) {
    IdState& state = g_ids[id];
    if (!state.lock.TryLock()) continue;
    bool idle = state.used && state.misses == state.misses_at_last_scan;
    state.misses_at_last_scan = state.misses;
    state.lock.Unlock();
    if (idle) CpuCache::DrainId(id);
  }
}

}  // namespace

void* g_slab = nullptr;
uint16_t g_class_begin[kNumClasses];
__thread uint64_t tls_cpu_cache_hits __attribute__((tls_model("initial-exec"))) = 0;

bool CpuCache::Init() {
  int ids = rseq::NumPossibleCpus();
  size_t bytes = static_cast<size_t>(ids) << kSlabShift;
  void* slab = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (slab == MAP_FAILED) return false;
  auto* states = static_cast<IdState*>(ArenaAlloc(sizeof(IdState) * static_cast<size_t>(ids)));
  if (states == nullptr) {
    munmap(slab, bytes);
    return false;
  }
  for (uint32_t cls = 0; cls < kNumClasses; ++cls) g_class_begin[cls] = kCapacity.begin[cls];
  g_ids = states;
  g_num_ids = ids;
  g_remote_drain =
      syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0) == 0;
  g_slab = slab;
  return true;
}

template <IndexMode kMode>
void* CpuCache::Refill(uint32_t cls, int fast_id) {
  if (fast_id == rseq::kAborted) rseq::NoteAbort();
  FoldHits();
  int id = CurrentIdOrRegister<kMode>();
  if (id < 0 || id >= g_num_ids) return nullptr;
  void* p = RseqOps::Pop<kMode>(g_slab, kSlabShift, cls, g_class_begin[cls], &id);
  if (p != nullptr) return p;  // the miss was the thread's first call
  if (id >= 0 && id < g_num_ids) {
    SpinLockHolder hold(&g_ids[id].lock);
    NoteMiss(id, cls);
    Grow<kMode>(id, cls, static_cast<uint32_t>(ClassToBatch(cls)));
  }
  // Take what the cache can hold (plus the one returned), not a batch that
  // would partly go straight back: a class the budget left without room
  // costs one object per miss, not a batch each way.
  int want = ClassToBatch(cls);
  if (id >= 0 && id < g_num_ids) {
    ClassFill fill = FillOf(id, cls);
    uint32_t room = fill.capacity - fill.cached;
    if (room + 1 < static_cast<uint32_t>(want)) want = static_cast<int>(room + 1);
  }
  void* batch[kMaxBatch];
  int n = RemoveBatch(cls, batch, want);
  if (n == 0) return nullptr;
  int pushed = 1;
  while (pushed < n && RseqOps::Push<kMode>(g_slab, kSlabShift, cls, batch[pushed], nullptr)) {
    ++pushed;
  }
  if (pushed < n) InsertBatch(cls, batch + pushed, n - pushed);
  MaybeDrainIdle();
  return batch[0];
}

template <IndexMode kMode>
bool CpuCache::Overflow(uint32_t cls, void* p, int fast_id) {
  if (fast_id == rseq::kAborted) rseq::NoteAbort();
  FoldHits();
  int id = CurrentIdOrRegister<kMode>();
  if (id < 0 || id >= g_num_ids) return false;
  if (RseqOps::Push<kMode>(g_slab, kSlabShift, cls, p, &id)) return true;
  if (id >= 0 && id < g_num_ids) {
    {
      SpinLockHolder hold(&g_ids[id].lock);
      NoteMiss(id, cls);
      Grow<kMode>(id, cls, static_cast<uint32_t>(ClassToBatch(cls)));
    }
    if (RseqOps::Push<kMode>(g_slab, kSlabShift, cls, p, nullptr)) return true;
  }
  // Still full: move a batch (p and what we can pop) to the transfer cache.
  void* batch[kMaxBatch];
  int n = 0;
  batch[n++] = p;
  while (n < ClassToBatch(cls)) {
    void* q = RseqOps::Pop<kMode>(g_slab, kSlabShift, cls, g_class_begin[cls], nullptr);
    if (q == nullptr) break;
    batch[n++] = q;
  }
  InsertBatch(cls, batch, n);
  MaybeDrainIdle();
  return true;
}

bool CpuCache::DrainId(int id) {
  if (!g_remote_drain || g_slab == nullptr) return false;
  IdState& state = g_ids[id];
  SpinLockHolder hold(&state.lock);
  if (!state.used) return true;
  uint32_t last[kNumClasses];
  for (uint32_t cls = 1; cls < kNumClasses; ++cls) {
    last[cls] = __atomic_exchange_n(HeaderWord(id, cls), 0u, __ATOMIC_SEQ_CST);
  }
  // A section that read a header before the swap may still commit; after
  // the fence none can, and a commit always leaves a non-zero header.
  for (;;) {
    syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0, 0);
    bool again = false;
    for (uint32_t cls = 1; cls < kNumClasses; ++cls) {
      if (__atomic_load_n(HeaderWord(id, cls), __ATOMIC_SEQ_CST) != 0) {
        last[cls] = __atomic_exchange_n(HeaderWord(id, cls), 0u, __ATOMIC_SEQ_CST);
        again = true;
      }
    }
    if (!again) break;
  }
  void** slots = Slots(id);
  for (uint32_t cls = 1; cls < kNumClasses; ++cls) {
    uint32_t begin = g_class_begin[cls];
    uint32_t current = last[cls] == 0 ? begin : Current(last[cls]);
    for (uint32_t s = begin; s < current;) {
      int n = static_cast<int>(current - s < kMaxBatch ? current - s : kMaxBatch);
      InsertBatch(cls, slots + s, n);
      s += static_cast<uint32_t>(n);
    }
  }
  state.capacity_bytes = 0;
  state.used = false;
  return true;
}

bool CpuCache::DrainAll() {
  if (!g_remote_drain || g_slab == nullptr) return false;
  for (int id = 0; id < g_num_ids; ++id) DrainId(id);
  return true;
}

CpuCache::IdStats CpuCache::StatsOf(int id) {
  IdStats s{};
  if (g_slab == nullptr || id < 0 || id >= g_num_ids) return s;
  s.used = __atomic_load_n(&g_ids[id].used, __ATOMIC_RELAXED);
  s.capacity_bytes = __atomic_load_n(&g_ids[id].capacity_bytes, __ATOMIC_RELAXED);
  s.misses = __atomic_load_n(&g_ids[id].misses, __ATOMIC_RELAXED);
  for (uint32_t cls = 1; s.used && cls < kNumClasses; ++cls) {
    uint32_t h = __atomic_load_n(HeaderWord(id, cls), __ATOMIC_RELAXED);
    if (h != 0) s.cached_bytes += (Current(h) - g_class_begin[cls]) * ClassToSize(cls);
  }
  return s;
}

FrontEndTotals CpuCache::Totals() {
  FrontEndTotals t{};
  t.hits = g_hits.load(std::memory_order_relaxed) + tls_cpu_cache_hits;
  if (g_slab == nullptr) return t;
  for (int id = 0; id < g_num_ids; ++id) {
    t.misses += __atomic_load_n(&g_ids[id].misses, __ATOMIC_RELAXED);
    if (!__atomic_load_n(&g_ids[id].used, __ATOMIC_RELAXED)) continue;
    for (uint32_t cls = 1; cls < kNumClasses; ++cls) {
      uint32_t h = __atomic_load_n(HeaderWord(id, cls), __ATOMIC_RELAXED);
      if (h != 0) t.cached_bytes += (Current(h) - g_class_begin[cls]) * ClassToSize(cls);
    }
  }
  return t;
}

void CpuCache::LockForFork() {
  for (int id = 0; id < g_num_ids; ++id) g_ids[id].lock.Lock();
}

void CpuCache::UnlockAfterFork() {
  for (int id = 0; id < g_num_ids; ++id) g_ids[id].lock.Unlock();
}

uint16_t CpuCache::MaxCapacity(uint32_t cls) { return kCapacity.max[cls]; }
CpuCache::ClassFill CpuCache::FillOf(int id, uint32_t cls) {
  if (g_slab == nullptr || id < 0 || id >= g_num_ids || cls == 0 || cls >= kNumClasses) return {};
  uint32_t current, end;
  Decode(cls, __atomic_load_n(HeaderWord(id, cls), __ATOMIC_RELAXED), &current, &end);
  return {current - g_class_begin[cls], end - g_class_begin[cls]};
}

uint64_t CpuCache::EvictionCount() { return g_evictions.load(std::memory_order_relaxed); }
int CpuCache::NumIds() { return g_num_ids; }

FrontEndTotals GetCpuCacheTotals() { return CpuCache::Totals(); }

template void* CpuCache::Refill<IndexMode::kCpuId>(uint32_t, int);
template void* CpuCache::Refill<IndexMode::kMmCid>(uint32_t, int);
template bool CpuCache::Overflow<IndexMode::kCpuId>(uint32_t, void*, int);
template bool CpuCache::Overflow<IndexMode::kMmCid>(uint32_t, void*, int);

}  // namespace rseqmalloc::internal
