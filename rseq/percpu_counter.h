// PerCpuCounter: a statistics counter whose Add() is one rseq critical
// section on the current CPU's (or concurrency id's) cache line, falling back
// to one shared atomic when the thread has no rseq, its id is >= kMaxIds, or
// (kMmCid) the kernel does not maintain mm_cid. Sum() is exact once writers
// have stopped and a consistent-enough snapshot while they run.
//
// No allocation: the slots live in the object (kMaxIds * 64 bytes, zero
// initialised, so a namespace-scope counter is constant-initialised, usable
// before main, and its untouched pages cost no memory).

#ifndef RSEQ_PERCPU_COUNTER_H_
#define RSEQ_PERCPU_COUNTER_H_

#include <algorithm>
#include <atomic>
#include <cstdint>

#include "rseq/cpus.h"
#include "rseq/primitives.h"
#include "rseq/pseudocode.h"
#include "rseq/registration.h"

namespace rseqmalloc::rseq {

template <IndexMode kMode = IndexMode::kCpuId, int kMaxIds = 1024>
class PerCpuCounter {
 public:
  static_assert(kMaxIds > 0);

  constexpr PerCpuCounter() = default;
  PerCpuCounter(const PerCpuCounter&) = delete;
  PerCpuCounter& operator=(const PerCpuCounter&) = delete;

  // Async-signal-safe.
  void Add(std::int64_t delta) {
    if constexpr (kMode == IndexMode::kMmCid) {
      if (!MmCidSupported()) {
        fallback_.fetch_add(delta, std::memory_order_relaxed);
        return;
      }
    }
    if (__builtin_expect(
            RseqOps::AddToSlot<kMode>(slots_, kMaxIds, delta) < 0, false)) {
      AddSlow(delta);
    }
  }

  std::int64_t Sum() const {
    std::int64_t sum = fallback_.load(std::memory_order_relaxed);
    int n = std::min(kMaxIds, NumPossibleCpus());
    for (int i = 0; i < n; ++i) {
      sum += __atomic_load_n(&slots_[i].value, __ATOMIC_RELAXED);
    }
    return sum;
  }

 private:
  __attribute__((noinline, cold)) void AddSlow(std::int64_t delta) {
    // First use in this thread (unregistered), or no rseq at all, or an id
    // beyond kMaxIds; RegisterCurrentThread() is cheap in the last two.
    if (RegisterCurrentThread() != Registration::kUnavailable &&
        RseqOps::AddToSlot<kMode>(slots_, kMaxIds, delta) >= 0) {
      return;
    }
    fallback_.fetch_add(delta, std::memory_order_relaxed);
  }

  PerCpuSlot slots_[kMaxIds] = {};
  std::atomic<std::int64_t> fallback_{0};
};

}  // namespace rseqmalloc::rseq

#endif  // RSEQ_PERCPU_COUNTER_H_
