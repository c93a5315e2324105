// ReferenceOps: the contracts of pseudocode.h in portable C++. Each
// operation runs under a spinlock chosen by its id, so it is correct whatever
// CPU the thread really runs on; that makes it a test oracle for RseqOps and
// a fallback where rseq is unavailable. Not async-signal-safe (a handler
// that interrupts a lock holder on the same thread would deadlock).
//
// Its id: cpu_id / mm_cid from the rseq area when registered; otherwise
// sched_getcpu() in kCpuId mode and 0 in kMmCid mode (there is no mm_cid
// without rseq, and 0 is always in range). So unlike RseqOps it never
// reports "unregistered".

#ifndef RSEQ_REFERENCE_H_
#define RSEQ_REFERENCE_H_

#include <cstddef>
#include <cstdint>

#include "rseq/ids.h"
#include "rseq/pseudocode.h"

namespace rseqmalloc::rseq {
namespace internal {

void LockId(int id);
void UnlockId(int id);

class IdLock {
 public:
  explicit IdLock(int id) : id_(id) { LockId(id_); }
  ~IdLock() { UnlockId(id_); }
  IdLock(const IdLock&) = delete;
  IdLock& operator=(const IdLock&) = delete;

 private:
  int id_;
};

int ReferenceCpuId();
int ReferenceMmCid();

inline char* Region(void* base, unsigned shift, int id) {
  return static_cast<char*>(base) + (static_cast<std::size_t>(id) << shift);
}

}  // namespace internal

struct ReferenceOps {
  static constexpr bool kAsyncSignalSafe = false;

  template <IndexMode kMode>
  static int CurrentId() {
    return kMode == IndexMode::kCpuId ? internal::ReferenceCpuId()
                                      : internal::ReferenceMmCid();
  }

  template <IndexMode kMode>
  static int AddToSlot(PerCpuSlot* slots, int num_slots, std::int64_t delta) {
    int id = CurrentId<kMode>();
    if (id < 0 || id >= num_slots) return kNotDone;
    internal::IdLock lock(id);
    // Atomic store only because Sum()-style readers load without the lock.
    __atomic_store_n(&slots[id].value, slots[id].value + delta,
                     __ATOMIC_RELAXED);
    return id;
  }

  template <IndexMode kMode, typename T>
  static CasResult CompareAndStore(int expected_id, void* base,
                                   unsigned shift, std::size_t offset,
                                   T expected, T desired) {
    static_assert(sizeof(T) == 4 || sizeof(T) == 8);
    int id = CurrentId<kMode>();
    if (expected_id < 0 || id != expected_id) return CasResult::kWrongId;
    internal::IdLock lock(id);
    T* word = reinterpret_cast<T*>(internal::Region(base, shift, id) + offset);
    if (*word != expected) return CasResult::kMismatch;
    __atomic_store_n(word, desired, __ATOMIC_RELAXED);
    return CasResult::kStored;
  }
};

}  // namespace rseqmalloc::rseq

#endif  // RSEQ_REFERENCE_H_
