// RseqOps: the per-CPU primitives of pseudocode.h on top of the x86-64
// critical sections. Aborts are retried here and counted (restarts.h), so a
// caller sees only the contract's outcomes. Every function is
// async-signal-safe and never allocates.
//
//   int id = rseq::RseqOps::AddToSlot<rseq::IndexMode::kCpuId>(slots, n, 1);
//   if (id < 0) { /* unregistered or id >= n: RegisterCurrentThread(), or
//                    fall back */ }
//
// RseqOpsWithDelay is the same with a spin loop (internal::
// SetInjectedDelaySpins) between reading the id and committing, so that
// tests can force and observe restarts.

#ifndef RSEQ_PRIMITIVES_H_
#define RSEQ_PRIMITIVES_H_

#include <cstddef>
#include <cstdint>

#include "rseq/ids.h"
#include "rseq/pseudocode.h"
#include "rseq/restarts.h"
#include "rseq/x86_64.h"

namespace rseqmalloc::rseq {
namespace internal {

template <bool kDelay>
struct RseqOpsImpl {
  // Safe to call from a signal handler that interrupted any other call.
  static constexpr bool kAsyncSignalSafe = true;

  // The id the primitives would use right now (a hint; negative when
  // unregistered).
  template <IndexMode kMode>
  static int CurrentId() {
    return kMode == IndexMode::kCpuId ? CpuId() : MmCid();
  }

  template <IndexMode kMode>
  static int AddToSlot(PerCpuSlot* slots, int num_slots, std::int64_t delta) {
    for (;;) {
      int id = x86::AddToSlot<kMode, kDelay>(slots, num_slots, delta);
      if (__builtin_expect(id == kAbortedCode, false)) {
        NoteRestart();
        continue;
      }
      return static_cast<unsigned>(id) < static_cast<unsigned>(num_slots)
                 ? id
                 : kNotDone;
    }
  }

  template <IndexMode kMode, typename T>
  static CasResult CompareAndStore(int expected_id, void* base,
                                   unsigned shift, std::size_t offset,
                                   T expected, T desired) {
    if (expected_id < 0) return CasResult::kWrongId;
    T* word = reinterpret_cast<T*>(
        static_cast<char*>(base) +
        (static_cast<std::size_t>(expected_id) << shift) + offset);
    for (;;) {
      int status = x86::CompareAndStore<kMode, kDelay, T>(expected_id, word,
                                                          expected, desired);
      if (__builtin_expect(status == kAbortedCode, false)) {
        NoteRestart();
        continue;
      }
      return static_cast<CasResult>(status);
    }
  }
};

}  // namespace internal

using RseqOps = internal::RseqOpsImpl<false>;
using RseqOpsWithDelay = internal::RseqOpsImpl<true>;

}  // namespace rseqmalloc::rseq

#endif  // RSEQ_PRIMITIVES_H_
