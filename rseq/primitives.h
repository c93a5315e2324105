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

  // Fast-path forms of Pop / Push: one attempt and no function call, so a
  // caller's fast path needs no stack frame. An abort looks like a miss with
  // *id_out == kAborted; the caller's slow path must count it (NoteAbort)
  // and try again. (After an abort the section's result registers hold
  // whatever they held when it was interrupted: only the id tells.)
  template <IndexMode kMode>
  __attribute__((always_inline)) static void* PopOnce(void* base, unsigned shift,
                                                      std::size_t size_class,
                                                      std::uint16_t begin, int* id_out) {
    void* item = x86::Pop<kMode, kDelay>(base, shift, size_class * kHeaderBytes, begin, id_out);
    return __builtin_expect(*id_out == kAbortedCode, false) ? nullptr : item;
  }

  template <IndexMode kMode>
  __attribute__((always_inline)) static bool PushOnce(void* base, unsigned shift,
                                                      std::size_t size_class, void* item,
                                                      int* id_out) {
    unsigned current =
        x86::Push<kMode, kDelay>(base, shift, size_class * kHeaderBytes, item, id_out);
    return current != 0 && *id_out != kAbortedCode;
  }

  template <IndexMode kMode>
  static void* Pop(void* base, unsigned shift, std::size_t size_class,
                   std::uint16_t begin, int* id_out) {
    for (;;) {
      int id;
      void* item = x86::Pop<kMode, kDelay>(base, shift, size_class * kHeaderBytes,
                                           begin, &id);
      if (__builtin_expect(id == kAbortedCode, false)) {
        NoteRestart();
        continue;
      }
      if (id_out != nullptr) *id_out = id;
      return item;
    }
  }

  template <IndexMode kMode>
  static bool Push(void* base, unsigned shift, std::size_t size_class,
                   void* item, int* id_out) {
    for (;;) {
      int id;
      unsigned current = x86::Push<kMode, kDelay>(
          base, shift, size_class * kHeaderBytes, item, &id);
      if (__builtin_expect(id == kAbortedCode, false)) {
        NoteRestart();
        continue;
      }
      if (id_out != nullptr) *id_out = id;
      return current != 0;
    }
  }
};

}  // namespace internal

// The id a PopOnce / PushOnce reports when its critical section aborted.
inline constexpr int kAborted = internal::kAbortedCode;

// Counts an abort seen through PopOnce / PushOnce (restarts.h).
inline void NoteAbort() { internal::NoteRestart(); }

using RseqOps = internal::RseqOpsImpl<false>;
using RseqOpsWithDelay = internal::RseqOpsImpl<true>;

}  // namespace rseqmalloc::rseq

#endif  // RSEQ_PRIMITIVES_H_
