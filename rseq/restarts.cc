#include "rseq/restarts.h"

#include <atomic>
#include <cstdint>

extern "C" {
// Read by the delay-injection asm with a RIP-relative load, hence C linkage.
__attribute__((visibility("hidden"))) std::uint32_t rseqmalloc_rseq_delay_spins =
    0;
}

namespace rseqmalloc::rseq {
namespace {

// Aborts are rare (one per preemption or signal that lands inside a section),
// so a shared counter costs nothing on the fast path.
std::atomic<std::uint64_t> g_restarts{0};
__attribute__((tls_model("initial-exec"))) thread_local std::uint64_t
    t_restarts = 0;

}  // namespace

std::uint64_t RestartCount() {
  return g_restarts.load(std::memory_order_relaxed);
}

std::uint64_t ThreadRestartCount() { return t_restarts; }

namespace internal {

void NoteRestart() {
  ++t_restarts;
  g_restarts.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace internal
}  // namespace rseqmalloc::rseq
