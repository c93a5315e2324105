#include "rseq/restarts.h"

#include <atomic>
#include <cstdint>

extern "C" {
// Read by the delay-injection asm with a RIP-relative load, hence C linkage.
__attribute__((visibility("hidden"))) std::uint32_t rseqmalloc_rseq_delay_spins =
    0;
// Aborts are rare (one per preemption or signal that lands inside a
// section), so a shared counter costs nothing on the fast path. The slab
// sections' abort handlers increment both in assembly (slab_sections.h).
__attribute__((visibility("hidden"))) std::uint64_t rseqmalloc_rseq_restarts = 0;
__attribute__((visibility("hidden"), tls_model("initial-exec"))) __thread std::uint64_t
    rseqmalloc_rseq_thread_restarts = 0;
}

namespace rseqmalloc::rseq {

std::uint64_t RestartCount() {
  return __atomic_load_n(&rseqmalloc_rseq_restarts, __ATOMIC_RELAXED);
}

std::uint64_t ThreadRestartCount() { return rseqmalloc_rseq_thread_restarts; }

namespace internal {

void NoteRestart() {
  ++rseqmalloc_rseq_thread_restarts;
  __atomic_fetch_add(&rseqmalloc_rseq_restarts, 1, __ATOMIC_RELAXED);
}

}  // namespace internal
}  // namespace rseqmalloc::rseq
