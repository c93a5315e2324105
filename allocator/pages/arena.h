// Metadata allocator: a bump allocator over blocks mapped straight from the
// OS (never from malloc). Memory handed out here is never returned;
// metadata is small next to the heap it describes (a Span per run of pages,
// transfer-cache slot arrays). Span structs are recycled by the page heap
// that holds them (PageHeap::DeleteSpanLocked), under its own lock, not here.
#ifndef RSEQMALLOC_ALLOCATOR_PAGES_ARENA_H_
#define RSEQMALLOC_ALLOCATOR_PAGES_ARENA_H_

#include <cstddef>
#include <cstdint>

#include "allocator/pages/span.h"

namespace rseqmalloc::internal {

inline constexpr size_t kArenaBlockBytes = size_t{1} << 20;

struct ArenaStats {
  uint64_t mapped_bytes;     // blocks mapped from the OS
  uint64_t allocated_bytes;  // bump-allocated out of them
  uint64_t spans_made;       // Span structs handed out by NewSpan (never freed)
};

// Zeroed memory aligned to 64 bytes (a cache line, so per-class metadata of
// different classes never shares a line). nullptr when the OS refuses.
void* ArenaAlloc(size_t bytes);

// A new zeroed Span, or nullptr when the OS refuses memory.
Span* NewSpan();

void GetArenaStats(ArenaStats* out);

void ArenaLockForFork();
void ArenaUnlockAfterFork();

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_PAGES_ARENA_H_
