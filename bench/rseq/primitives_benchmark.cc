// The rseq primitives against the obvious alternatives, single-threaded and
// oversubscribed (16 threads on a 2-core machine). Time is wall-clock per
// operation per thread; items_per_second is the whole process's throughput.

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "benchmark/benchmark.h"
#include "rseq/rseq.h"

namespace rseqmalloc::rseq {
namespace {

// ---- Counters ---------------------------------------------------------------

PerCpuSlot g_slots[kMaxPossibleCpusFallback];

template <IndexMode kMode>
void BM_PerCpuAdd(benchmark::State& state) {
  RegisterCurrentThread();
  const int n = NumPossibleCpus();
  for (auto _ : state) {
    benchmark::DoNotOptimize(RseqOps::AddToSlot<kMode>(g_slots, n, 1));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_TEMPLATE(BM_PerCpuAdd, IndexMode::kCpuId)
    ->Threads(1)->Threads(2)->Threads(16)->UseRealTime();
BENCHMARK_TEMPLATE(BM_PerCpuAdd, IndexMode::kMmCid)
    ->Threads(1)->Threads(2)->Threads(16)->UseRealTime();

constinit PerCpuCounter<> g_counter;

void BM_PerCpuCounterAdd(benchmark::State& state) {
  for (auto _ : state) g_counter.Add(1);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PerCpuCounterAdd)->Threads(1)->Threads(2)->Threads(16)->UseRealTime();

template <IndexMode kMode>
void BM_ReferenceAdd(benchmark::State& state) {
  const int n = NumPossibleCpus();
  for (auto _ : state) {
    benchmark::DoNotOptimize(ReferenceOps::AddToSlot<kMode>(g_slots, n, 1));
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_TEMPLATE(BM_ReferenceAdd, IndexMode::kCpuId)
    ->Threads(1)->Threads(2)->Threads(16)->UseRealTime();

alignas(64) std::atomic<std::int64_t> g_shared{0};

void BM_AtomicFetchAddShared(benchmark::State& state) {
  for (auto _ : state) g_shared.fetch_add(1, std::memory_order_relaxed);
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AtomicFetchAddShared)->Threads(1)->Threads(2)->Threads(16)->UseRealTime();

thread_local std::int64_t t_counter = 0;

void BM_ThreadLocalAdd(benchmark::State& state) {
  for (auto _ : state) {
    // Keep the increment a real load/store per iteration.
    benchmark::DoNotOptimize(++t_counter);
    benchmark::ClobberMemory();
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_ThreadLocalAdd)->Threads(1)->Threads(2)->Threads(16)->UseRealTime();

std::mutex g_mutex;
std::int64_t g_locked_counter = 0;

void BM_MutexAdd(benchmark::State& state) {
  for (auto _ : state) {
    std::lock_guard<std::mutex> lock(g_mutex);
    benchmark::DoNotOptimize(++g_locked_counter);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MutexAdd)->Threads(1)->Threads(2)->Threads(16)->UseRealTime();

// ---- Compare-and-store ------------------------------------------------------

constexpr unsigned kCasShift = 6;  // one 64-byte line per id
alignas(64) char g_cas_words[kMaxPossibleCpusFallback << kCasShift];

// A per-CPU lock-free increment: read own id's word, CAS old -> old + 1.
void BM_PerCpuCompareAndStore(benchmark::State& state) {
  RegisterCurrentThread();
  for (auto _ : state) {
    for (;;) {
      int id = CpuId();
      auto* word = reinterpret_cast<std::uint64_t*>(
          g_cas_words + (static_cast<std::size_t>(id) << kCasShift));
      std::uint64_t old = __atomic_load_n(word, __ATOMIC_RELAXED);
      if (RseqOps::CompareAndStore<IndexMode::kCpuId, std::uint64_t>(
              id, g_cas_words, kCasShift, 0, old, old + 1) ==
          CasResult::kStored) {
        break;
      }
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_PerCpuCompareAndStore)->Threads(1)->Threads(2)->Threads(16)->UseRealTime();

void BM_AtomicCompareExchangeShared(benchmark::State& state) {
  for (auto _ : state) {
    std::int64_t old = g_shared.load(std::memory_order_relaxed);
    while (!g_shared.compare_exchange_weak(old, old + 1,
                                           std::memory_order_relaxed)) {
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_AtomicCompareExchangeShared)
    ->Threads(1)->Threads(2)->Threads(16)->UseRealTime();

// ---- Slab stack: push + pop pair --------------------------------------------
// PercpuSlab, as the allocator's fast paths use it (one class, one item
// pushed and popped back).

PercpuSlab* StartedSlab(IndexMode mode) {
  static PercpuSlab slabs[2];
  static const std::uint32_t kCapacity[2] = {0, 64};
  PercpuSlab& slab = slabs[mode == IndexMode::kMmCid];
  if (!slab.started()) {
    slab.Init(kCapacity, 2);
    slab.Start(mode);
    for (int id = 0; id < slab.num_ids(); ++id) slab.Grow(id, 1, 64);
  }
  return &slab;
}

template <typename Impl, IndexMode kMode>
void BM_SlabPushPop(benchmark::State& state) {
  RegisterCurrentThread();
  static PercpuSlab* slab = StartedSlab(kMode);
  void* item = &state;
  for (auto _ : state) {
    slab->Push<Impl>(1, item, [] {});
    void* got = slab->Pop<Impl>(1, [] { return static_cast<void*>(nullptr); });
    benchmark::DoNotOptimize(got);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_TEMPLATE(BM_SlabPushPop, SlabSections, IndexMode::kCpuId)
    ->Threads(1)->Threads(2)->Threads(16)->UseRealTime();
BENCHMARK_TEMPLATE(BM_SlabPushPop, SlabSections, IndexMode::kMmCid)
    ->Threads(1)->Threads(2)->Threads(16)->UseRealTime();
BENCHMARK_TEMPLATE(BM_SlabPushPop, SlabReference, IndexMode::kCpuId)
    ->Threads(1)->Threads(2)->Threads(16)->UseRealTime();

// One shared, mutex-protected stack of the same capacity.
struct MutexStack {
  std::mutex mutex;
  void* items[256];
  int size = 128;
};
MutexStack g_stack;


void BM_MutexStackPushPop(benchmark::State& state) {
  void* item = &state;
  for (auto _ : state) {
    {
      std::lock_guard<std::mutex> lock(g_stack.mutex);
      if (g_stack.size < 256) g_stack.items[g_stack.size++] = item;
    }
    {
      std::lock_guard<std::mutex> lock(g_stack.mutex);
      if (g_stack.size > 0) item = g_stack.items[--g_stack.size];
    }
    benchmark::DoNotOptimize(item);
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_MutexStackPushPop)->Threads(1)->Threads(2)->Threads(16)->UseRealTime();

// ---- Why the slab header is 32-bit ---------------------------------------------

// One link of the chain every run of pops or pushes forms through a class's
// `current`: load it, add one, store it back where the next link loads it.
// With 16-bit operands (movzwl / movw, the header before 2026-12-02) the
// load waits for the store to forward; with 32-bit ones it does not
// (docs/rseq.md, rule 9: 2.5 against 0.3 ns per link on the 2-core VM).
template <int kBits>
void BM_HeaderChainLink(benchmark::State& state) {
  alignas(64) static std::uint64_t word = 0;
  std::uint64_t* p = &word;
  for (auto _ : state) {
    std::uint64_t v;
    if constexpr (kBits == 16) {
      asm volatile("movzwl (%1), %k0\n\taddl $1, %k0\n\tmovw %w0, (%1)"
                   : "=&r"(v) : "r"(p) : "memory");
    } else {
      asm volatile("movl (%1), %k0\n\taddl $1, %k0\n\tmovl %k0, (%1)"
                   : "=&r"(v) : "r"(p) : "memory");
    }
  }
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK_TEMPLATE(BM_HeaderChainLink, 16);
BENCHMARK_TEMPLATE(BM_HeaderChainLink, 32);

}  // namespace
}  // namespace rseqmalloc::rseq
