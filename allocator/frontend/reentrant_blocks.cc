#include "allocator/frontend/reentrant_blocks.h"

#include <sys/mman.h>

namespace rseqmalloc::internal {
namespace {

constexpr size_t kMapPage = 4096;
// Marks a slot whose block is being unmapped: neither free nor findable.
constexpr uintptr_t kSlotClosing = 1;

struct Slot {
  std::atomic<uintptr_t> start;
  std::atomic<size_t> length;
};

constinit Slot g_slots[kMaxReentrantBlocks] = {};
// Slots ever claimed are below this: lookups scan no further, so a program
// that keeps one block of a signal handler forever pays for one slot, not
// for the table.
constinit std::atomic<int> g_slots_used{0};
constinit std::atomic<uint64_t> g_live_bytes{0};
constinit std::atomic<uint64_t> g_blocks_mapped{0};
constinit std::atomic<uint64_t> g_frees_deferred{0};
constinit std::atomic<uint64_t> g_refused{0};

struct DeferredNode {
  void* next;
  uint32_t cls;
};

void* Refuse() {
  g_refused.fetch_add(1, std::memory_order_relaxed);
  return nullptr;
}

// Maps `length` bytes aligned to `align`, trimming the excess around it.
void* MapAligned(size_t length, size_t align) {
  size_t extra = align > kMapPage ? align - kMapPage : 0;
  if (length + extra < length) return nullptr;
  void* raw = mmap(nullptr, length + extra, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
  if (raw == MAP_FAILED) return nullptr;
  uintptr_t base = reinterpret_cast<uintptr_t>(raw);
  uintptr_t start = (base + align - 1) & ~(align - 1);
  if (start > base) munmap(raw, start - base);
  size_t tail = base + length + extra - (start + length);
  if (tail > 0) munmap(reinterpret_cast<void*>(start + length), tail);
  return reinterpret_cast<void*>(start);
}

Slot* FindSlot(const void* p) {
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  if (!AnyLiveReentrantBlocks() || a <= kSlotClosing) return nullptr;
  int used = g_slots_used.load(std::memory_order_acquire);
  for (int i = 0; i < used; ++i) {
    if (g_slots[i].start.load(std::memory_order_acquire) == a) return &g_slots[i];
  }
  return nullptr;
}

}  // namespace

constinit std::atomic<void*> g_deferred_frees{nullptr};
constinit std::atomic<int> g_live_reentrant_blocks{0};

void* ReentrantAllocate(size_t size, size_t align) {
  if (size > PTRDIFF_MAX - kMapPage) return Refuse();
  size_t length = size == 0 ? kMapPage : (size + kMapPage - 1) & ~(kMapPage - 1);
  if (align < kMapPage) align = kMapPage;
  void* block = MapAligned(length, align);
  if (block == nullptr) return Refuse();
  for (int i = 0; i < kMaxReentrantBlocks; ++i) {
    Slot& slot = g_slots[i];
    uintptr_t expected = 0;
    if (slot.start.load(std::memory_order_relaxed) != 0) continue;
    // The length is written before the slot is published: a lookup that
    // finds the address reads the right length.
    if (slot.start.compare_exchange_strong(expected, kSlotClosing, std::memory_order_acquire)) {
      slot.length.store(length, std::memory_order_relaxed);
      int used = g_slots_used.load(std::memory_order_relaxed);
      while (used <= i && !g_slots_used.compare_exchange_weak(used, i + 1,
                                                              std::memory_order_release)) {
      }
      slot.start.store(reinterpret_cast<uintptr_t>(block), std::memory_order_release);
      g_live_reentrant_blocks.fetch_add(1, std::memory_order_release);
      g_live_bytes.fetch_add(length, std::memory_order_relaxed);
      g_blocks_mapped.fetch_add(1, std::memory_order_relaxed);
      return block;
    }
  }
  munmap(block, length);
  return Refuse();
}

bool ReentrantFree(void* p) {
  Slot* slot = FindSlot(p);
  if (slot == nullptr) return false;
  // Claim the block, so two racing frees of it cannot both unmap.
  uintptr_t expected = reinterpret_cast<uintptr_t>(p);
  if (!slot->start.compare_exchange_strong(expected, kSlotClosing, std::memory_order_acq_rel)) {
    return false;
  }
  size_t length = slot->length.load(std::memory_order_relaxed);
  munmap(p, length);
  g_live_bytes.fetch_sub(length, std::memory_order_relaxed);
  g_live_reentrant_blocks.fetch_sub(1, std::memory_order_release);
  slot->start.store(0, std::memory_order_release);
  return true;
}

size_t ReentrantUsableSize(const void* p) {
  Slot* slot = FindSlot(p);
  return slot == nullptr ? 0 : slot->length.load(std::memory_order_relaxed);
}

void DeferFree(void* p, uint32_t cls) {
  auto* node = static_cast<DeferredNode*>(p);
  node->cls = cls;
  void* head = g_deferred_frees.load(std::memory_order_relaxed);
  do {
    node->next = head;
  } while (!g_deferred_frees.compare_exchange_weak(head, p, std::memory_order_release,
                                                   std::memory_order_relaxed));
  g_frees_deferred.fetch_add(1, std::memory_order_relaxed);
}

void* TakeDeferredFrees() { return g_deferred_frees.exchange(nullptr, std::memory_order_acquire); }
void* NextDeferred(void* node) { return static_cast<DeferredNode*>(node)->next; }
uint32_t DeferredClass(void* node) { return static_cast<DeferredNode*>(node)->cls; }

ReentrantStats GetReentrantStats() {
  ReentrantStats s;
  s.blocks_mapped = g_blocks_mapped.load(std::memory_order_relaxed);
  s.live_blocks = static_cast<uint64_t>(g_live_reentrant_blocks.load(std::memory_order_relaxed));
  s.live_bytes = g_live_bytes.load(std::memory_order_relaxed);
  s.frees_deferred = g_frees_deferred.load(std::memory_order_relaxed);
  s.refused = g_refused.load(std::memory_order_relaxed);
  return s;
}

}  // namespace rseqmalloc::internal
