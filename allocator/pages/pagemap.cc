#include "allocator/pages/pagemap.h"

#include <cstddef>

#include "allocator/pages/system.h"

namespace rseqmalloc::internal {

constinit PageMap g_pagemap;

uint32_t PageMap::ClassInLeaf(uintptr_t page) const {
  const Leaf* leaf = LeafFor(page);
  if (leaf == nullptr) return 0;
  // A caller that read the window before it was published may come here
  // for a page it covers, whose leaf has no class bytes mapped. Leaves are
  // made after the window is decided, and this load comes after the
  // leaf's: it sees the window.
  uintptr_t i;
  if (InWindow(page, __atomic_load_n(&flat_.pages, __ATOMIC_ACQUIRE), &i)) {
    return __atomic_load_n(&flat_.classes[i], __ATOMIC_RELAXED);
  }
  return __atomic_load_n(&leaf->classes[page & (kLeafLength - 1)], __ATOMIC_RELAXED);
}

// Once per map, before the first leaf (so before any SetClass); racing
// callers wait for the first one's answer.
void PageMap::ChooseClassBytes() {
  if (class_bytes_state_.load(std::memory_order_acquire) == 2) return;
  int state = 0;
  if (class_bytes_state_.compare_exchange_strong(state, 1, std::memory_order_acquire)) {
    void* flat = leaves_only_ ? nullptr : SystemReserveSparse(kFlatClassPages);
    if (flat != nullptr) {
      // The window: centred on the array, in whole leaves, inside the
      // 47-bit user address space.
      uintptr_t centre = reinterpret_cast<uintptr_t>(flat) >> kPageShift;
      uintptr_t first = centre > kFlatClassPages / 2 ? centre - kFlatClassPages / 2 : 0;
      first &= ~(uintptr_t{kLeafLength} - 1);
      uintptr_t user_pages = uintptr_t{1} << (47 - kPageShift);
      if (first + kFlatClassPages > user_pages) first = user_pages - kFlatClassPages;
      flat_.classes = static_cast<uint8_t*>(flat);
      flat_.first_page = first;
      __atomic_store_n(&flat_.pages, kFlatClassPages, __ATOMIC_RELEASE);
    }
    class_bytes_state_.store(2, std::memory_order_release);
    return;
  }
  while (class_bytes_state_.load(std::memory_order_acquire) != 2) {
  }
}

bool PageMap::Ensure(uintptr_t first_page, size_t n) {
  if (n == 0) return true;
  uintptr_t last_page = first_page + n - 1;
  if (last_page < first_page || (last_page >> kLeafBits) >= kRootLength) return false;
  ChooseClassBytes();  // returns at once after the first time
  for (uintptr_t i = first_page >> kLeafBits; i <= (last_page >> kLeafBits); ++i) {
    if (root_[i].load(std::memory_order_acquire) != nullptr) continue;
    // A leaf the flat array covers never uses its class bytes: they stay
    // unmapped (the window is made of whole leaves).
    uintptr_t at;
    bool flat = InWindow(i << kLeafBits, flat_.pages, &at);
    // The flat array's part for this leaf becomes writable first (racing
    // callers both do it; it is idempotent): SetClass may follow at once.
    if (flat && !SystemMakeWritable(flat_.classes + at, kLeafLength)) return false;
    size_t bytes = flat ? offsetof(Leaf, classes) : sizeof(Leaf);
    void* mem = SystemMapMetadata(bytes);
    if (mem == nullptr) return false;
    Leaf* expected = nullptr;
    if (root_[i].compare_exchange_strong(expected, static_cast<Leaf*>(mem),
                                         std::memory_order_acq_rel)) {
      leaf_bytes_.fetch_add(sizeof(Leaf), std::memory_order_relaxed);
    } else {
      SystemUnmapMetadata(mem, bytes);  // another heap won the race
    }
  }
  return true;
}

}  // namespace rseqmalloc::internal
