#include "allocator/pages/arena.h"

#include "allocator/base/spinlock.h"
#include "allocator/pages/system.h"

namespace rseqmalloc::internal {
namespace {

constexpr size_t kArenaAlign = 64;

constinit SpinLock g_arena_lock;
// All guarded by g_arena_lock.
constinit uintptr_t g_next = 0;
constinit uintptr_t g_end = 0;
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
  auto* s = static_cast<Span*>(AllocLocked(sizeof(Span)));
  if (s != nullptr) ++g_stats.spans_made;
  return s;
}

void GetArenaStats(ArenaStats* out) {
  SpinLockHolder h(&g_arena_lock);
  *out = g_stats;
}

void ArenaLockForFork() { g_arena_lock.Lock(); }
void ArenaUnlockAfterFork() { g_arena_lock.Unlock(); }

}  // namespace rseqmalloc::internal
