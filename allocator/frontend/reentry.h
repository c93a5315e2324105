// Re-entry: an allocator call made on a thread that is already inside the
// allocator. The one way that happens is a signal handler that calls malloc
// or free after interrupting the same thread's own malloc or free (POSIX
// leaves that undefined; real programs do it anyway).
//
// Why it needs care: the interrupted frame may hold a lock the handler's
// call would wait for forever (and every other thread after it), or be half
// way through a change to a structure the handler would then read. The rseq
// fast paths are safe by construction (the kernel aborts the interrupted
// critical section before the handler runs); everything else marks itself
// with this per-thread depth, and a call that finds it non-zero takes paths
// that neither lock nor touch half-changed state (reentrant_blocks.h).
//
// The depth is a plain thread-local: only the thread itself and its signal
// handlers touch it, so a compiler-only fence orders it against the work it
// guards.
#ifndef RSEQMALLOC_ALLOCATOR_FRONTEND_REENTRY_H_
#define RSEQMALLOC_ALLOCATOR_FRONTEND_REENTRY_H_

#include <atomic>
#include <cstdint>

namespace rseqmalloc::internal {

extern __thread uint32_t tls_allocator_depth __attribute__((tls_model("initial-exec")));

// True when this call interrupted the same thread inside the allocator.
[[gnu::always_inline]] inline bool InsideAllocator() { return tls_allocator_depth != 0; }

[[gnu::always_inline]] inline void EnterAllocator() {
  ++tls_allocator_depth;
  std::atomic_signal_fence(std::memory_order_seq_cst);
}

[[gnu::always_inline]] inline void LeaveAllocator() {
  std::atomic_signal_fence(std::memory_order_seq_cst);
  --tls_allocator_depth;
}

class AllocatorSection {
 public:
  AllocatorSection() { EnterAllocator(); }
  ~AllocatorSection() { LeaveAllocator(); }
  AllocatorSection(const AllocatorSection&) = delete;
  AllocatorSection& operator=(const AllocatorSection&) = delete;
};

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_FRONTEND_REENTRY_H_
