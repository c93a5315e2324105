#include "allocator/frontend/cpu_cache.h"

#include <atomic>

#include "allocator/base/clock.h"
#include "allocator/base/prefetch.h"
#include "allocator/central/central_heap.h"
#include "allocator/frontend/to_central.h"
#include "allocator/base/spinlock.h"
#include "rseq/cpus.h"
#include "rseq/registration.h"

namespace rseqmalloc::internal {
namespace {

using rseq::PercpuSlab;

// Most slots a class grows to on one id through any miss: enough for 128
// KiB of objects, at least two batches, at most 2048 (tcmalloc's figure for
// its smallest classes).
constexpr uint32_t kMaxCapacitySlots = 2048;
constexpr size_t kCapacityTargetBytes = 128 * 1024;
// Classes up to kTinyClassBytes may grow further, to kTinyRunBytes of
// objects (3 MiB, twice the base budget: 196,608 slots of 16 B, 49,152 of
// 64 B), and those up to kSmallRunClassBytes to kSmallRunSlots (1.5 MiB of
// 128-byte objects): a program that builds tens of thousands of small
// objects in a row and then frees them (a parse tree, a request's
// temporaries) keeps them on its CPU instead of sending most of them
// through the transfer cache and back every round, two pointer copies each
// way (`batch --count 10000` ran at 0.64-0.73 of the best peer with 2048
// slots; `batch --count 100000` gained 1.15-1.3x from 11,264 to 49,152
// slots, `batch --count 10000 --size 128` 1.5x from 1024 to 12,288, and
// `bursts`, mostly 16-byte blocks, 1.3x from 49,152 to 196,608:
// docs/design.md). The tiny ranges are set in bytes, not slots: the budget
// bounds bytes, and a range of a few slots more than the budget allows is
// address space no object can use. Only underflows take a class past the
// usual maximum (with overflows too, producers and consumers sharing a CPU
// kept 16-19 % more memory: objects that only pass through were held
// there), and only into budget no class uses (taking it from other classes
// made `bursts` slower). The slot ranges (every class's largest capacity)
// must fit in one region: PercpuSlab::Init checks, the tests' Init pins it.
constexpr size_t kTinyClassBytes = 64;
constexpr size_t kTinyRunBytes = size_t{3} << 20;
constexpr size_t kSmallRunClassBytes = 128;
constexpr uint32_t kSmallRunSlots = 12288;
// Most objects one refill or overflow moves (half the class's capacity up
// to this): a class in heavy use misses once per this many calls.
constexpr uint32_t kMaxMove = 128;
// Classes a miss looks at for capacity to take, once the id's budget is
// used up: a constant, whatever the number of classes in play.
constexpr int kStealScan = 4;
// Misses of an id between two housekeeping passes (Maintain): a pass looks
// at every class, so this keeps its cost per miss below one class.
constexpr uint32_t kMaintainEvery = 256;
// An id with no slow-path activity for this long, while other ids had
// some, is drained back to the transfer caches.
constexpr int64_t kIdlePeriodNs = 1'000'000'000;
// Budget growth (cpu_cache.h). A miss costs a few hundred ns, so 25k
// budget-limited misses a second is ~1 % of a CPU spent for want of
// capacity; 64 of them make an interval count (one in 256 could be chance).
constexpr uint64_t kRaiseRate = 25'000;
constexpr uint32_t kRaiseMinMisses = 64;
// An interval this long with under 1k misses a second gives growth back.
constexpr int64_t kLowerAfterNs = 100'000'000;
constexpr uint64_t kLowerRate = 1'000;
// Growth of all ids together: at most this many base budgets.
constexpr uint64_t kGrowthPoolBudgets = 8;
// A class that only frees on an id (no underflow there in this or the last
// maintenance interval: a consumer's CPU) stops growing at
// CpuCache::kFreeOnlyCapacity, enough for overflows of kMaxMove objects.
// What it would hoard beyond is memory the CPUs that allocate it wait for.
static_assert(CpuCache::kFreeOnlyCapacity == 2 * kMaxMove);
constexpr uint8_t kAllocatingIntervals = 2;

constexpr uint32_t MaxCapacityOf(uint32_t cls) {
  if (cls == 0) return 0;
  size_t by_bytes = kCapacityTargetBytes / ClassToSize(cls);
  size_t floor = 2 * static_cast<size_t>(ClassToBatch(cls));
  size_t cap = by_bytes < floor ? floor : by_bytes;
  return static_cast<uint32_t>(cap > kMaxCapacitySlots ? kMaxCapacitySlots : cap);
}

constexpr uint32_t RunCapacityOf(uint32_t cls) {
  if (cls == 0 || ClassToSize(cls) > kSmallRunClassBytes) return MaxCapacityOf(cls);
  if (ClassToSize(cls) > kTinyClassBytes) return kSmallRunSlots;
  return static_cast<uint32_t>(kTinyRunBytes / ClassToSize(cls));
}

// One entry per value of a pagemap class byte, so that free() can push
// with the raw byte: kLargeClass, kNotOurs and 0 have no capacity on any id,
// their push fails and FreeSlow sorts them out.
constexpr int kSlabClasses = 256;
static_assert(kLargeClass < kSlabClasses && kNotOurs < kSlabClasses);

struct CapacityTable {
  uint32_t max[kSlabClasses];  // through any miss
  uint32_t run[kSlabClasses];  // through underflows: the slab's slot ranges
};

constexpr CapacityTable MakeCapacityTable() {
  CapacityTable t{};
  for (uint32_t cls = 0; cls < kNumClasses; ++cls) {
    t.max[cls] = MaxCapacityOf(cls);
    t.run[cls] = RunCapacityOf(cls);
  }
  return t;
}
constexpr CapacityTable kCapacity = MakeCapacityTable();

int64_t NowNs() { return static_cast<int64_t>(CoarseMonotonicNs()); }

uint32_t Min(uint32_t a, uint32_t b) { return a < b ? a : b; }
uint64_t Min64(uint64_t a, uint64_t b) { return a < b ? a : b; }

}  // namespace

// Slow-path state of one id, on cache lines of its own; guarded by `lock`
// except the counters, which reports read racily.
struct alignas(64) CpuCache::IdState {
  SpinLock lock;
  bool used;
  uint64_t capacity_bytes;  // sum over classes of capacity * size
  uint64_t misses;
  uint64_t misses_at_last_scan;
  uint64_t misses_at_interval_start;
  uint64_t underflows;
  uint64_t overflows;
  uint64_t steals;
  uint64_t evictions;
  uint32_t misses_since_maintain;
  uint32_t steal_cursor;
  uint64_t budget_bytes;     // capacity bound now (budget_bytes_ and up)
  uint32_t limited_misses;   // misses this interval that found it used up
  int64_t interval_start_ns; // 0: the id's first interval has not begun
  uint64_t budget_raises;
  uint64_t budget_lowers;
  uint16_t interval_misses[kNumClasses];  // misses of each class this interval
  uint8_t cold_intervals[kNumClasses];    // intervals in a row without one
  // Intervals left in which the class counts as allocated on this id (set
  // by an underflow); 0: it only frees here (kFreeOnlyCapacity).
  uint8_t allocating[kNumClasses];
  // Misses of each class on this id since the start, for the report. Per
  // id, under its lock: one counter per class shared by every CPU cost a
  // contended atomic add per miss (ClassMisses sums them).
  uint64_t class_misses[kNumClasses];
};

// The allocator's backend: the central heap, through the front end's one
// door down (to_central.h).
class CentralBackend final : public CpuCacheBackend {
 public:
  int RemoveBatch(uint32_t cls, void** out, int n) override {
    return internal::RemoveBatch(cls, out, n);
  }
  void ReturnBatch(uint32_t cls, void* const* objects, int n) override {
    ReturnToCentral(cls, objects, n);
  }
  void* AllocateMetadata(size_t bytes) override { return internal::AllocateMetadata(bytes); }
};

constinit CentralBackend g_central_backend;
constinit rseq::PercpuSlab g_cpu_slab;
constinit CpuCache g_cpu_cache(&g_cpu_slab, &g_central_backend);

// Objects taken out of the slab go back to the backend.
void CpuCache::ToBackend(void* self, size_t cls, void* const* objects, int n) {
  static_cast<CpuCache*>(self)->backend_->ReturnBatch(static_cast<uint32_t>(cls), objects, n);
}

// Evicts class cls on id down to `capacity` slots; returns the bytes of
// capacity given up.
uint64_t CpuCache::EvictTo(int id, uint32_t cls, uint32_t capacity) {
  PercpuSlab::Fill before = slab_->FillOf(id, cls);
  if (capacity >= before.capacity) return 0;
  if (!slab_->Evict(id, cls, capacity, ToBackend, this)) return 0;
  return static_cast<uint64_t>(before.capacity - capacity) * ClassToSize(cls);
}

// Takes up to `bytes` of capacity from other classes of `id`, looking at
// kStealScan classes from the id's cursor: capacity no object uses first,
// then a batch of objects of a class that had no miss this interval.
// Caller holds the id's lock. Returns the bytes freed.
uint64_t CpuCache::Steal(int id, IdState& state, uint32_t for_cls, uint64_t bytes) {
  uint64_t freed = 0;
  for (int looked = 0; looked < kStealScan && freed < bytes; ++looked) {
    uint32_t cls = 1 + state.steal_cursor++ % (kNumClasses - 1);
    if (cls == for_cls) continue;
    PercpuSlab::Fill fill = slab_->FillOf(id, cls);
    if (fill.capacity == 0) continue;
    size_t size = ClassToSize(cls);
    uint32_t slots = static_cast<uint32_t>((bytes - freed + size - 1) / size);
    uint32_t removed = slab_->ShrinkUnused(id, cls, slots);
    if (removed != 0) {
      freed += static_cast<uint64_t>(removed) * size;
      ++state.steals;
      class_steals_[cls].fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    if (state.interval_misses[cls] != 0 || fill.cached == 0) continue;
    uint32_t take = Min(fill.cached, static_cast<uint32_t>(ClassToBatch(cls)));
    if (take < slots) take = Min(slots, fill.capacity);
    uint64_t got = EvictTo(id, cls, fill.capacity - take);
    if (got != 0) {
      freed += got;
      ++state.evictions;
      class_evictions_[cls].fetch_add(1, std::memory_order_relaxed);
    }
  }
  return freed;
}

// After a miss of cls on id: grow its capacity by its current capacity (at
// least 1, at most a batch) within the id's budget, up to the class's
// maximum (its run capacity after an underflow). Caller holds the lock.
void CpuCache::GrowAfterMiss(int id, IdState& state, uint32_t cls, bool underflow) {
  PercpuSlab::Fill fill = slab_->FillOf(id, cls);
  uint32_t limit = underflow ? kCapacity.run[cls] : kCapacity.max[cls];
  if (fill.capacity >= limit) return;
  uint32_t batch = static_cast<uint32_t>(ClassToBatch(cls));
  uint32_t want = fill.capacity == 0 ? 1 : Min(fill.capacity, batch);
  want = Min(want, limit - fill.capacity);
  size_t size = ClassToSize(cls);
  uint64_t need = static_cast<uint64_t>(want) * size;
  uint64_t budget = state.budget_bytes;
  if (state.capacity_bytes + need > budget) {
    ++state.limited_misses;
    // Past the usual maximum a class grows into spare budget only, never
    // taking capacity from other classes.
    if (fill.capacity >= kCapacity.max[cls]) return;
    uint64_t over = state.capacity_bytes + need - budget;
    uint64_t freed = Steal(id, state, cls, over);
    state.capacity_bytes = freed < state.capacity_bytes ? state.capacity_bytes - freed : 0;
    uint64_t room = budget > state.capacity_bytes ? budget - state.capacity_bytes : 0;
    want = Min(want, static_cast<uint32_t>(room / size));
    if (want == 0) return;
  }
  state.capacity_bytes += static_cast<uint64_t>(slab_->Grow(id, cls, want)) * size;
}

int64_t CpuCache::PreciseNowNs() { return static_cast<int64_t>(MonotonicNs()); }

// Ends the id's interval: raises or lowers its budget by half the base
// budget on what the interval's misses say (cpu_cache.h). Caller holds the
// lock.
void CpuCache::AdaptBudget(IdState& state) {
  int64_t now = clock_();
  int64_t took = now - state.interval_start_ns;
  bool first = state.interval_start_ns == 0;
  uint64_t limited = state.limited_misses;
  uint64_t misses = state.misses - state.misses_at_interval_start;
  state.interval_start_ns = now;
  state.limited_misses = 0;
  state.misses_at_interval_start = state.misses;
  if (first || took <= 0 || max_budget_bytes_ <= budget_bytes_) return;
  uint64_t step = budget_bytes_ / 2;
  uint64_t elapsed = static_cast<uint64_t>(took);
  // Rates per second by division: an interval may last days.
  if (limited >= kRaiseMinMisses && limited * 1'000'000'000 / elapsed >= kRaiseRate) {
    uint64_t add = Min64(step, max_budget_bytes_ - state.budget_bytes);
    uint64_t used = growth_used_bytes_.load(std::memory_order_relaxed);
    do {
      add = Min64(add, growth_pool_bytes_ > used ? growth_pool_bytes_ - used : 0);
      if (add == 0) return;
    } while (!growth_used_bytes_.compare_exchange_weak(used, used + add,
                                                       std::memory_order_relaxed));
    state.budget_bytes += add;
    ++state.budget_raises;
  } else if (state.budget_bytes > budget_bytes_ && took >= kLowerAfterNs &&
             misses * 1'000'000'000 / elapsed < kLowerRate) {
    // Capacity above the lowered budget goes back as classes go cold and
    // as growing classes take it (Maintain, Steal).
    uint64_t sub = Min64(step, state.budget_bytes - budget_bytes_);
    state.budget_bytes -= sub;
    growth_used_bytes_.fetch_sub(sub, std::memory_order_relaxed);
    ++state.budget_lowers;
  }
}

// Back to the base budget (the id was drained). Caller holds the lock.
void CpuCache::ResetBudget(IdState& state) {
  if (state.budget_bytes > budget_bytes_) {
    growth_used_bytes_.fetch_sub(state.budget_bytes - budget_bytes_, std::memory_order_relaxed);
  }
  state.budget_bytes = budget_bytes_;
  state.interval_start_ns = 0;
  state.limited_misses = 0;
}

// Housekeeping of one id: classes without a miss this interval give back
// half of their unused capacity, those cold for two intervals half of their
// objects as well; the budget adapts. Caller holds the lock.
void CpuCache::Maintain(int id, IdState& state) {
  AdaptBudget(state);
  for (uint32_t cls = 1; cls < kNumClasses; ++cls) {
    if (state.allocating[cls] != 0) --state.allocating[cls];
    bool missed = state.interval_misses[cls] != 0;
    state.interval_misses[cls] = 0;
    if (missed) {
      state.cold_intervals[cls] = 0;
      continue;
    }
    if (state.cold_intervals[cls] < 255) ++state.cold_intervals[cls];
    PercpuSlab::Fill fill = slab_->FillOf(id, cls);
    if (fill.capacity == 0) continue;
    size_t size = ClassToSize(cls);
    uint32_t unused = fill.capacity > fill.cached ? fill.capacity - fill.cached : 0;
    uint64_t freed =
        static_cast<uint64_t>(slab_->ShrinkUnused(id, cls, (unused + 1) / 2)) * size;
    if (state.cold_intervals[cls] >= 2 && fill.cached != 0) {
      PercpuSlab::Fill now = slab_->FillOf(id, cls);
      freed += EvictTo(id, cls, now.capacity - (fill.cached + 1) / 2);
    }
    state.capacity_bytes = freed < state.capacity_bytes ? state.capacity_bytes - freed : 0;
  }
  state.misses_since_maintain = 0;
}

void CpuCache::NoteMiss(int id, IdState& state, uint32_t cls) {
  state.used = true;
  ++state.misses;
  if (state.interval_misses[cls] < 0xffff) ++state.interval_misses[cls];
  __atomic_store_n(&state.class_misses[cls], state.class_misses[cls] + 1, __ATOMIC_RELAXED);
  if (++state.misses_since_maintain >= kMaintainEvery) Maintain(id, state);
}

// The id the thread's sections use, registering its rseq area on first use;
// -1 when rseq is unavailable to this thread.
int CpuCache::CurrentIdOrRegister() const {
  int id = slab_->CurrentId();
  if (id >= 0) return id;
  if (rseq::RegisterCurrentThread() == rseq::Registration::kUnavailable) return -1;
  return slab_->CurrentId();
}

// Drains every id that had no slow-path activity for a whole period. Runs
// at most once per period, from any slow path (while this thread had some)
// or from the maintenance thread. Returns the ids drained.
int CpuCache::MaybeDrainIdle() {
  if (!slab_->RemoteAvailable()) return 0;
  int64_t now = NowNs();
  int64_t next = next_idle_scan_ns_.load(std::memory_order_relaxed);
  if (now < next) return 0;
  if (!next_idle_scan_ns_.compare_exchange_strong(next, now + kIdlePeriodNs)) return 0;
  if (next == 0) return 0;  // first period starts now
  int drained = 0;
  for (int id = 0; id < num_ids_; ++id) {
    IdState& state = ids_[id];
    if (!state.lock.TryLock()) continue;
    bool idle = state.used && state.misses == state.misses_at_last_scan;
    state.misses_at_last_scan = state.misses;
    state.lock.Unlock();
    if (idle && DrainId(id)) ++drained;
  }
  return drained;
}



bool CpuCache::Init(uint64_t budget_bytes, uint64_t max_budget_bytes) {
  int ids = rseq::NumPossibleCpus();
  auto* states = static_cast<IdState*>(
      backend_->AllocateMetadata(sizeof(IdState) * static_cast<size_t>(ids)));
  if (states == nullptr) return false;
  if (!slab_->Init(kCapacity.run, kSlabClasses)) return false;
  budget_bytes_ = budget_bytes;
  max_budget_bytes_ = max_budget_bytes > budget_bytes ? max_budget_bytes : budget_bytes;
  growth_pool_bytes_ = kGrowthPoolBudgets * budget_bytes;
  prefetch_refills_ = CpuHasPrefetchW();
  for (int id = 0; id < ids; ++id) states[id].budget_bytes = budget_bytes;
  ids_ = states;
  num_ids_ = slab_->num_ids();
  return true;
}

void CpuCache::Start(rseq::IndexMode mode) { slab_->Start(mode); }

void* CpuCache::Refill(uint32_t cls) {
  int id = CurrentIdOrRegister();
  if (id < 0) return nullptr;
  // The miss may have been the thread's first call, an abort, or another
  // thread may have refilled the id since.
  void* p = slab_->PopRetrying(cls, &id);
  if (p != nullptr) return p;
  if (id < 0) return nullptr;
  uint32_t fetch;
  {
    IdState& state = ids_[id];
    SpinLockHolder hold(&state.lock);
    ++state.underflows;
    state.allocating[cls] = kAllocatingIntervals;
    NoteMiss(id, state, cls);
    GrowAfterMiss(id, state, cls, /*underflow=*/true);
    // Half the capacity (at most kMaxMove), plus the object returned: a
    // class that misses rarely keeps few objects, one in heavy use misses
    // once per many calls.
    PercpuSlab::Fill fill = slab_->FillOf(id, cls);
    uint32_t target = Min((fill.capacity + 1) / 2, kMaxMove);
    uint32_t room = fill.capacity > fill.cached ? fill.capacity - fill.cached : 0;
    fetch = Min(target, room) + 1;
  }
  void* batch[kMaxMove + 1];
  int n = backend_->RemoveBatch(cls, batch, static_cast<int>(fetch));
  // Out of memory for this class. Other ids may still cache some of it
  // (objects this thread fetched before it migrated, say): a malloc must not
  // fail while they sit there. A drain of every id costs a membarrier each,
  // which a call about to return ENOMEM can afford.
  if (n == 0 && DrainAll()) n = backend_->RemoveBatch(cls, batch, static_cast<int>(fetch));
  if (n == 0) return nullptr;
  // The batch comes from other CPUs, or from spans not touched for a
  // while: ask for all its lines now, so that the misses overlap instead
  // of stalling the program's first store to each block in turn.
  //
  // batch[0] is handed out now and batch[1] must be the next pop (batches
  // are in pop order: transfer_cache.cc); the slab takes items bottom
  // first, so the rest goes in reversed. Pushing it as it came moved one
  // object of every batch away from its neighbours, cycle after cycle
  // (docs/design.md, "Batches keep their order"). One pass does both.
  void* rest[kMaxMove];
  int k = n - 1;
  if (prefetch_refills_) PrefetchForWrite(batch[0]);
  for (int i = 1; i < n; ++i) {
    if (prefetch_refills_) PrefetchForWrite(batch[i]);
    rest[n - 1 - i] = batch[i];
  }
  int ran_on;
  int pushed = k > 0 ? slab_->PushBatch(cls, rest, static_cast<unsigned>(k), &ran_on) : 0;
  if (pushed < k) backend_->ReturnBatch(cls, rest + pushed, k - pushed);
  MaybeDrainIdle();
  return batch[0];
}

bool CpuCache::Overflow(uint32_t cls, void* p) {
  int id = CurrentIdOrRegister();
  if (id < 0) return false;
  if (slab_->PushRetrying(cls, p, &id)) return true;
  if (id < 0) return false;
  uint32_t target;
  {
    IdState& state = ids_[id];
    SpinLockHolder hold(&state.lock);
    ++state.overflows;
    NoteMiss(id, state, cls);
    if (state.allocating[cls] != 0 || slab_->FillOf(id, cls).capacity < kFreeOnlyCapacity) {
      GrowAfterMiss(id, state, cls, /*underflow=*/false);
    }
    PercpuSlab::Fill fill = slab_->FillOf(id, cls);
    target = Min(fill.capacity / 2, kMaxMove);
  }
  if (slab_->PushRetrying(cls, p, &id)) return true;
  // Still full: p and half the capacity (at most kMaxMove) go to the
  // transfer cache, leaving room for the next frees.
  void* batch[kMaxMove + 1];
  batch[0] = p;
  int ran_on;
  int n = 1 + (target == 0 ? 0 : slab_->PopBatch(cls, batch + 1, target, &ran_on));
  backend_->ReturnBatch(cls, batch, n);
  MaybeDrainIdle();
  return true;
}

bool CpuCache::DrainId(int id) {
  if (!slab_->RemoteAvailable() || ids_ == nullptr) return false;
  IdState& state = ids_[id];
  SpinLockHolder hold(&state.lock);
  if (!state.used) return true;
  if (!slab_->Drain(id, ToBackend, this)) return false;
  state.capacity_bytes = 0;
  state.used = false;
  ResetBudget(state);
  for (uint16_t& n : state.interval_misses) n = 0;
  for (uint8_t& n : state.cold_intervals) n = 0;
  for (uint8_t& n : state.allocating) n = 0;
  return true;
}

bool CpuCache::DrainAll() {
  if (!slab_->RemoteAvailable() || ids_ == nullptr) return false;
  for (int id = 0; id < num_ids_; ++id) DrainId(id);
  return true;
}

int CpuCache::DrainIdleIfDue() {
  if (ids_ == nullptr) return 0;
  return MaybeDrainIdle();
}

void CpuCache::MaintainAll() {
  if (!slab_->RemoteAvailable() || ids_ == nullptr) return;
  for (int id = 0; id < num_ids_; ++id) {
    IdState& state = ids_[id];
    SpinLockHolder hold(&state.lock);
    if (state.used) Maintain(id, state);
  }
}

CpuCache::IdStats CpuCache::StatsOf(int id) const {
  IdStats s{};
  if (ids_ == nullptr || id < 0 || id >= num_ids_) return s;
  const IdState& state = ids_[id];
  s.used = __atomic_load_n(&state.used, __ATOMIC_RELAXED);
  s.capacity_bytes = __atomic_load_n(&state.capacity_bytes, __ATOMIC_RELAXED);
  s.underflows = __atomic_load_n(&state.underflows, __ATOMIC_RELAXED);
  s.overflows = __atomic_load_n(&state.overflows, __ATOMIC_RELAXED);
  s.steals = __atomic_load_n(&state.steals, __ATOMIC_RELAXED);
  s.evictions = __atomic_load_n(&state.evictions, __ATOMIC_RELAXED);
  s.budget_bytes = __atomic_load_n(&state.budget_bytes, __ATOMIC_RELAXED);
  s.budget_raises = __atomic_load_n(&state.budget_raises, __ATOMIC_RELAXED);
  s.budget_lowers = __atomic_load_n(&state.budget_lowers, __ATOMIC_RELAXED);
  for (uint32_t cls = 1; s.used && cls < kNumClasses; ++cls) {
    s.cached_bytes += static_cast<uint64_t>(slab_->FillOf(id, cls).cached) * ClassToSize(cls);
  }
  return s;
}

uint64_t CpuCache::ClassMisses(uint32_t cls) const {
  if (cls >= kNumClasses || ids_ == nullptr) return 0;
  uint64_t misses = 0;
  for (int id = 0; id < num_ids_; ++id) {
    misses += __atomic_load_n(&ids_[id].class_misses[cls], __ATOMIC_RELAXED);
  }
  return misses;
}

CpuCache::ClassLosses CpuCache::LossesOf(uint32_t cls) const {
  if (cls >= kNumClasses) return {};
  return {class_steals_[cls].load(std::memory_order_relaxed),
          class_evictions_[cls].load(std::memory_order_relaxed)};
}

FrontEndTotals CpuCache::Totals() const {
  FrontEndTotals t{};
  for (int id = 0; id < num_ids_; ++id) {
    IdStats s = StatsOf(id);
    t.misses += s.underflows + s.overflows;
    t.cached_bytes += s.cached_bytes;
  }
  return t;
}

void CpuCache::LockForFork() {
  for (int id = 0; id < num_ids_; ++id) ids_[id].lock.Lock();
}

void CpuCache::UnlockAfterFork() {
  for (int id = 0; id < num_ids_; ++id) ids_[id].lock.Unlock();
}

uint32_t CpuCache::MaxCapacity(uint32_t cls) { return kCapacity.max[cls]; }
uint32_t CpuCache::RunCapacity(uint32_t cls) { return kCapacity.run[cls]; }

CpuCache::ClassFill CpuCache::FillOf(int id, uint32_t cls) const {
  if (cls == 0 || cls >= kNumClasses) return {};
  return slab_->FillOf(id, cls);
}

}  // namespace rseqmalloc::internal
