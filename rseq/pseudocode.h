// The contracts of the per-CPU primitives, in pseudocode. Two
// implementations follow them with identical signatures:
//   RseqOps       (primitives.h, x86-64 rseq critical sections), and
//   ReferenceOps  (reference.h, portable C++ under a per-id spinlock).
// Tests run the same bodies against both; ReferenceOps is also the fallback
// for callers that want per-id data when rseq is unavailable.
//
// "id" is the calling thread's current cpu_id (IndexMode::kCpuId) or mm_cid
// (IndexMode::kMmCid). An rseq implementation reads it INSIDE the critical
// section, so the whole operation happens on that id or not at all: the
// kernel aborts the section on preemption, migration or signal delivery, the
// only events that can change the id or let another thread run on it. An
// abort is retried by the caller-facing functions (and counted, restarts.h);
// a caller never sees it.
//
// 1. Per-CPU add.  slots[] has one 64-byte PerCpuSlot per id.
//      int AddToSlot<mode>(PerCpuSlot* slots, int num_slots, int64 delta):
//        id = current id;
//        if (id < 0 || id >= num_slots) return kNotDone;   // unregistered
//        slots[id].value += delta;                          // commit
//        return id;
//
// 2. Per-CPU compare-and-store, T = uint32_t or uint64_t.
//      CasResult CompareAndStore<mode, T>(int expected_id, void* base,
//                                         unsigned shift, size_t offset,
//                                         T expected, T desired):
//        id = current id;
//        if (id != expected_id) return kWrongId;   // also when unregistered
//        T* word = base + (id << shift) + offset;
//        if (*word != expected) return kMismatch;
//        *word = desired;                            // commit
//        return kStored;
//
// 3. Per-CPU slab stacks: PercpuSlab (slab.h), whose pop and push follow the
//    same scheme with contracts of their own (slab_sections.h).
//
// Data touched by one implementation must never be touched by the other
// concurrently: rseq sections take no lock, the reference takes no rseq.

#ifndef RSEQ_PSEUDOCODE_H_
#define RSEQ_PSEUDOCODE_H_

#include <cstdint>

namespace rseqmalloc::rseq {

enum class IndexMode {
  kCpuId,  // index by cpu_id: ids < NumPossibleCpus()
  kMmCid,  // index by mm_cid: ids < number of CPUs the process may use
};

// Returned by AddToSlot when nothing was done.
inline constexpr int kNotDone = -1;

enum class CasResult {
  kStored,    // the word held `expected` and now holds `desired`
  kMismatch,  // right id, but the word did not hold `expected`
  kWrongId,   // the thread is not on expected_id, or is unregistered
};

// One counter slot per id, alone on its cache line.
struct alignas(64) PerCpuSlot {
  std::int64_t value;
};
static_assert(sizeof(PerCpuSlot) == 64);

namespace internal {

// Slab header layout, shared by both implementations and by the asm.
inline constexpr int kHeaderBytes = 8;
inline constexpr int kSlotBytes = 8;
static_assert(sizeof(void*) == kSlotBytes);

// Raw code an x86-64 section returns in its id register after an abort.
// cpu_id and mm_cid are never this small, even when "negative".
inline constexpr int kAbortedCode = -0x40000000;

}  // namespace internal
}  // namespace rseqmalloc::rseq

#endif  // RSEQ_PSEUDOCODE_H_
