#include "allocator/pages/pagemap.h"

#include "allocator/pages/system.h"

namespace rseqmalloc::internal {

constinit PageMap g_pagemap;

bool PageMap::Ensure(uintptr_t first_page, size_t n) {
  if (n == 0) return true;
  uintptr_t last_page = first_page + n - 1;
  if (last_page < first_page || (last_page >> kLeafBits) >= kRootLength) return false;
  for (uintptr_t i = first_page >> kLeafBits; i <= (last_page >> kLeafBits); ++i) {
    if (root_[i].load(std::memory_order_acquire) != nullptr) continue;
    void* mem = SystemMapMetadata(sizeof(Leaf));
    if (mem == nullptr) return false;
    Leaf* expected = nullptr;
    if (root_[i].compare_exchange_strong(expected, static_cast<Leaf*>(mem),
                                         std::memory_order_acq_rel)) {
      leaf_bytes_.fetch_add(sizeof(Leaf), std::memory_order_relaxed);
    } else {
      SystemUnmapMetadata(mem, sizeof(Leaf));  // another heap won the race
    }
  }
  return true;
}

}  // namespace rseqmalloc::internal
