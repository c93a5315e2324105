// Prefetching blocks for the writes a program is about to make to them.
//
// A refill hands out blocks that were last touched on another CPU, or long
// ago: a producer thread's first store to each then waits for its line. A
// refill knows the whole batch before the program touches any of it, so it
// can ask for every line at once and let the misses overlap
// (docs/design.md, "Refills prefetch their batch").
#ifndef ALLOCATOR_BASE_PREFETCH_H_
#define ALLOCATOR_BASE_PREFETCH_H_

#include <cpuid.h>

namespace rseqmalloc::internal {

// Whether this CPU has PREFETCHW (CPUID 0x80000001, ECX bit 8; Linux calls
// it 3dnowprefetch). Where it is missing the allocator does not prefetch
// at all: a plain prefetch brings the line in shared, and the program's
// store must then ask the other CPUs for it a second time (measured slower
// than no prefetch on producer_consumer: docs/design.md).
inline bool CpuHasPrefetchW() {
  unsigned eax, ebx, ecx, edx;
  if (__get_cpuid(0x80000001u, &eax, &ebx, &ecx, &edx) == 0) return false;
  return (ecx & bit_PRFCHW) != 0;
}

// Asks for the line holding `p` in a state the CPU may write. A hint: it
// never faults and changes nothing the program can see.
inline void PrefetchForWrite(const void* p) {
  asm volatile("prefetchw %0" : : "m"(*static_cast<const char*>(p)));
}

}  // namespace rseqmalloc::internal

#endif  // ALLOCATOR_BASE_PREFETCH_H_
