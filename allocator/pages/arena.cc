#include "allocator/pages/arena.h"

#include <cstring>

#include "allocator/base/spinlock.h"
#include "allocator/pages/system.h"

namespace rseqmalloc::internal {
namespace {

constexpr size_t kArenaAlign = 64;

constinit SpinLock g_arena_lock;
// All guarded by g_arena_lock.
constinit uintptr_t g_next = 0;
constinit uintptr_t g_end = 0;
constinit Span* g_free_spans = nullptr;  // linked through Span::next
constinit ArenaStats g_stats{};

void* AllocLocked(size_t bytes) {
  bytes = (bytes + kArenaAlign - 1) & ~(kArenaAlign - 1);
  if (g_end - g_next < bytes) {
    // The tail of the old block is abandoned; at most one Span-sized bite
    // is lost per block in the common case.
    size_t block = bytes > kArenaBlockBytes ? bytes : kArenaBlockBytes;
    void* p = SystemMapMetadata(block);
    if (p == nullptr) return nullptr;
    g_next = reinterpret_cast<uintptr_t>(p);
    g_end = g_next + block;
    g_stats.mapped_bytes += block;
  }
  void* result = reinterpret_cast<void*>(g_next);
  g_next += bytes;
  g_stats.allocated_bytes += bytes;
  return result;
}

}  // namespace

void* ArenaAlloc(size_t bytes) {
  SpinLockHolder h(&g_arena_lock);
  return AllocLocked(bytes);
}

Span* NewSpan() {
  SpinLockHolder h(&g_arena_lock);
  ++g_stats.span_requests;
  Span* s = g_free_spans;
  if (s != nullptr) {
    g_free_spans = s->next;
    --g_stats.spans_free;
    memset(s, 0, sizeof(*s));
  } else {
    s = static_cast<Span*>(AllocLocked(sizeof(Span)));
    if (s == nullptr) return nullptr;
  }
  ++g_stats.spans_in_use;
  return s;
}

void DeleteSpan(Span* span) {
  SpinLockHolder h(&g_arena_lock);
  span->next = g_free_spans;
  g_free_spans = span;
  --g_stats.spans_in_use;
  ++g_stats.spans_free;
}

void GetArenaStats(ArenaStats* out) {
  SpinLockHolder h(&g_arena_lock);
  *out = g_stats;
}

void ArenaLockForFork() { g_arena_lock.Lock(); }
void ArenaUnlockAfterFork() { g_arena_lock.Unlock(); }

}  // namespace rseqmalloc::internal
