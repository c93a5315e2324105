// Page number -> (Span*, size class), a two-level radix tree over 48-bit
// addresses with 8 KiB pages (35-bit page numbers).
//
//   root: 2^17 leaf pointers, a 1 MiB array in BSS (only touched entries
//         cost memory);
//   leaf: 2^18 Span pointers plus a parallel 2^18-byte class array, covering
//         2 GiB of address space; mapped lazily (MAP_NORESERVE, counted as
//         metadata) the first time the page heap grows into its range.
//
// The class array is what free() reads: ClassOfAddress is two dependent
// loads (root entry, class byte) and never faults, for any pointer. Its
// values: 0 = nothing of ours starts here, 1..kNumClasses-1 = a page of a
// small-object span, kLargeClass = the first page of an in-use large span.
//
// Writers hold the owning page heap's lock; readers need none. Entries are
// accessed with relaxed atomics (plain moves on x86-64) so that a racy lookup
// of a bogus pointer is merely a wrong answer, not undefined behaviour; a
// leaf pointer is published with release and read with acquire.
#ifndef RSEQMALLOC_ALLOCATOR_PAGES_PAGEMAP_H_
#define RSEQMALLOC_ALLOCATOR_PAGES_PAGEMAP_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "allocator/base/size_classes.h"
#include "allocator/pages/span.h"

namespace rseqmalloc::internal {

inline constexpr int kAddressBits = 48;
inline constexpr int kPageNumberBits = kAddressBits - static_cast<int>(kPageShift);
inline constexpr int kLeafBits = 18;
inline constexpr int kRootBits = kPageNumberBits - kLeafBits;
inline constexpr size_t kLeafLength = size_t{1} << kLeafBits;
inline constexpr size_t kRootLength = size_t{1} << kRootBits;

class PageMap {
 public:
  struct Leaf {
    Span* spans[kLeafLength];
    uint8_t classes[kLeafLength];
  };

  constexpr PageMap() = default;
  PageMap(const PageMap&) = delete;
  PageMap& operator=(const PageMap&) = delete;

  // Makes sure leaves exist for pages [first_page, first_page + n). Safe to
  // call concurrently. False if a leaf could not be mapped or the range is
  // outside 48-bit addresses.
  bool Ensure(uintptr_t first_page, size_t n);

  // nullptr when no leaf covers the page or the page was never set.
  Span* GetSpan(uintptr_t page) const {
    const Leaf* leaf = LeafFor(page);
    if (leaf == nullptr) return nullptr;
    return __atomic_load_n(&leaf->spans[page & (kLeafLength - 1)], __ATOMIC_RELAXED);
  }

  // Raw class byte of the page holding addr; 0 when unknown.
  uint32_t ClassOfAddress(uintptr_t addr) const {
    const Leaf* leaf = LeafFor(addr >> kPageShift);
    if (__builtin_expect(leaf == nullptr, 0)) return 0;
    return __atomic_load_n(&leaf->classes[(addr >> kPageShift) & (kLeafLength - 1)],
                           __ATOMIC_RELAXED);
  }

  // The page's leaf must exist (Ensure).
  void SetSpan(uintptr_t page, Span* span) {
    __atomic_store_n(&MutableLeafFor(page)->spans[page & (kLeafLength - 1)], span,
                     __ATOMIC_RELAXED);
  }
  void SetClass(uintptr_t page, uint32_t cls) {
    __atomic_store_n(&MutableLeafFor(page)->classes[page & (kLeafLength - 1)],
                     static_cast<uint8_t>(cls), __ATOMIC_RELAXED);
  }

  uint64_t leaf_bytes() const { return leaf_bytes_.load(std::memory_order_relaxed); }

 private:
  const Leaf* LeafFor(uintptr_t page) const {
    uintptr_t i = page >> kLeafBits;
    if (__builtin_expect(i >= kRootLength, 0)) return nullptr;
    return root_[i].load(std::memory_order_acquire);
  }
  Leaf* MutableLeafFor(uintptr_t page) {
    return root_[page >> kLeafBits].load(std::memory_order_relaxed);
  }

  std::atomic<Leaf*> root_[kRootLength] = {};
  std::atomic<uint64_t> leaf_bytes_{0};
};

// The one pagemap of the process: addresses are global.
extern PageMap g_pagemap;

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_PAGES_PAGEMAP_H_
