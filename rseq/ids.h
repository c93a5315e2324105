// Inline readers of the calling thread's rseq ids, cheap enough for a fast
// path: one load of a global offset plus one %fs-relative load.
//
// Whichever area a thread uses (glibc's, or our own initial-exec TLS area)
// sits at the same offset from the thread pointer in every thread, so one
// process-wide offset is enough. Until the process has decided (first
// RegisterCurrentThread() or the library's constructor) the offset names our
// own area, whose TLS image holds cpu_id = -1; a thread therefore reads a
// negative id until it is registered, and callers' fast paths simply miss.
//
// The value read outside a critical section is only a hint: the thread may
// migrate right after. Critical sections (x86_64.h) re-read the id inside.

#ifndef RSEQ_IDS_H_
#define RSEQ_IDS_H_

#include <cstddef>
#include <cstdint>

#include "rseq/abi.h"

#if !defined(__x86_64__)
#error "rseq/ only supports x86-64 for now"
#endif

// Defined in registration.cc. The own area is an initial-exec TLS variable;
// the delta is 0 (use the own area) until the process is known to run with
// glibc's registration, then __rseq_offset minus the own area's offset. A
// zero-initialised delta needs no code to run, so the readers are right
// even before constructors (ld.so may call an interposed malloc first).
extern "C" {
__attribute__((visibility("hidden"))) extern __thread rseqmalloc::rseq::Rseq
    rseqmalloc_own_rseq_area;
__attribute__((visibility("hidden"))) extern std::ptrdiff_t
    rseqmalloc_rseq_area_delta;
// An area in every thread that nobody registers: cpu_id and mm_cid read -1
// for ever. Fast paths that must miss until something is ready point here.
__attribute__((visibility("hidden"))) extern __thread rseqmalloc::rseq::Rseq
    rseqmalloc_never_registered_area;
}

namespace rseqmalloc::rseq {
namespace internal {

// Offset of our own area from the thread pointer: a link-time constant in an
// executable (the linker turns the GOT load into an immediate), one GOT load
// in a shared object.
inline std::ptrdiff_t OwnAreaOffset() {
  std::ptrdiff_t offset;
  asm("movq rseqmalloc_own_rseq_area@gottpoff(%%rip), %0" : "=r"(offset));
  return offset;
}

// Offset of the never-registered area from the thread pointer: a link-time
// constant in an executable, one GOT load in a shared object.
inline std::ptrdiff_t NeverRegisteredAreaOffset() {
  std::ptrdiff_t offset;
  asm("movq rseqmalloc_never_registered_area@gottpoff(%%rip), %0" : "=r"(offset));
  return offset;
}

// Offset of the thread's rseq area from the thread pointer (%fs base), the
// same in every thread.
inline std::ptrdiff_t AreaOffset() {
  return OwnAreaOffset() +
         __atomic_load_n(&rseqmalloc_rseq_area_delta, __ATOMIC_RELAXED);
}

inline std::uintptr_t ThreadPointer() {
  std::uintptr_t tp;
  // tp = %fs:0 (the TCB's self pointer, x86-64 TLS variant II).
  asm("movq %%fs:0, %0" : "=r"(tp));
  return tp;
}

// The calling thread's area (registered or not).
inline Rseq* ThreadArea() {
  return reinterpret_cast<Rseq*>(ThreadPointer() + AreaOffset());
}

// The 32-bit field at kOffset of the thread's area, or cpu_id (negative)
// when the thread is unregistered.
template <int kOffset>
inline int FieldIfRegistered() {
  int id;
  asm volatile(
      "movl %%fs:%c[cpu_id](%[area]), %[id]\n\t"  // id = area->cpu_id
      "testl %[id], %[id]\n\t"                    // if (id < 0)
      "js 1f\n\t"                                 //   return id
      "movl %%fs:%c[field](%[area]), %[id]\n\t"   // id = area->field
      "1:"
      : [id] "=&r"(id)  // written before `area` is read again
      : [area] "r"(AreaOffset()), [cpu_id] "i"(kCpuIdOffset), [field] "i"(kOffset)
      : "cc");
  return id;
}

}  // namespace internal

// Current CPU number, or negative when the thread has no registered area.
inline int CpuId() {
  int id;
  asm volatile("movl %%fs:%c[cpu_id](%[area]), %[id]"  // id = area->cpu_id
               : [id] "=r"(id)
               : [area] "r"(internal::AreaOffset()), [cpu_id] "i"(kCpuIdOffset));
  return id;
}

// Current concurrency id (kernel >= 6.3, see MmCidSupported()), or negative
// when unregistered. mm_cid is meaningless in an unregistered area (glibc
// leaves stale values in a reused TCB), so cpu_id decides registration.
inline int MmCid() { return internal::FieldIfRegistered<kMmCidOffset>(); }

// Current NUMA node (kernel >= 6.3, see NodeIdSupported()), or negative
// when unregistered.
inline int NodeId() { return internal::FieldIfRegistered<kNodeIdOffset>(); }

}  // namespace rseqmalloc::rseq

#endif  // RSEQ_IDS_H_
