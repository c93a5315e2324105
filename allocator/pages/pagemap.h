// Page number -> (Span*, size class) over 48-bit addresses with 8 KiB pages
// (35-bit page numbers).
//
// Spans: a two-level radix tree.
//   root: 2^17 leaf pointers, a 1 MiB array in BSS (only touched entries
//         cost memory);
//   leaf: 2^18 Span pointers covering 2 GiB of address space; mapped lazily
//         (MAP_NORESERVE, counted as metadata) the first time the page heap
//         grows into its range.
//
// Classes: what free() reads, so the fewer dependent loads the better. A
// flat byte array indexed by page number over a window of 1 TiB of address
// space centred on the array itself (2^27 bytes: 128 MiB of address space,
// reserved read-only when the central heap starts, before the heap maps any
// memory, so that it is charged to no commit limit; Ensure makes the 256 KiB
// covering each leaf writable. A page of it becomes resident only where the
// heap has pages, 4 KiB per 32 MiB of heap, and reads elsewhere see the zero
// page). The kernel places mappings next to each other, top-down, so the
// heap's mappings fall in the window unless the process maps more than
// about 512 GiB below it. ClassOfAddress is then one load after a bound
// check. Pages outside the window, and every page where the array could
// not be reserved (RLIMIT_AS is set, or the kernel refused), keep their
// class bytes in a 2^18-byte array at the end of their leaf, and the lookup
// takes the out-of-line leaf path (two dependent loads and a call). Either
// way ClassOfAddress never faults, for any pointer. Values: 0 = nothing of
// ours starts here, 1..kNumClasses-1 = a page of a small-object span,
// kLargeClass = the first page of an in-use large span.
//
// Writers hold the owning page heap's lock; readers need none. Entries are
// accessed with relaxed atomics (plain moves on x86-64) so that a racy lookup
// of a bogus pointer is merely a wrong answer, not undefined behaviour; a
// leaf pointer and the flat window are published with release and read
// with acquire.
#ifndef RSEQMALLOC_ALLOCATOR_PAGES_PAGEMAP_H_
#define RSEQMALLOC_ALLOCATOR_PAGES_PAGEMAP_H_

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "allocator/base/hidden.h"
#include "allocator/base/size_classes.h"
#include "allocator/pages/span.h"

namespace rseqmalloc::internal {

inline constexpr int kAddressBits = 48;
inline constexpr int kPageNumberBits = kAddressBits - static_cast<int>(kPageShift);
inline constexpr int kLeafBits = 18;
inline constexpr int kRootBits = kPageNumberBits - kLeafBits;
inline constexpr size_t kLeafLength = size_t{1} << kLeafBits;
inline constexpr size_t kRootLength = size_t{1} << kRootBits;
inline constexpr int kFlatClassPageBits = 40 - static_cast<int>(kPageShift);
inline constexpr size_t kFlatClassPages = size_t{1} << kFlatClassPageBits;
static_assert(kFlatClassPageBits > kLeafBits && kFlatClassPageBits < kPageNumberBits,
              "the flat class array covers whole leaves of the radix tree");

// free()'s first loads are the flat array's fields, through the process's
// one PageMap: they get a fixed place in the page, kHotPageOffset bytes in,
// where no slab puts its first objects (a span's first objects and a
// per-CPU region's headers sit at the start of a page, and every class's
// own object at a page start fills the same L1 sets). Left wherever the
// linker put them, the fields once landed at a page start: padding an
// unrelated global by 512 bytes moved them there, and `pair` of 16 B-16 KiB
// ran at 0.75x, `bursts` at 0.6x, single-threaded (docs/design.md, "The
// pagemap's fields have a place of their own").
inline constexpr size_t kPageMapHotPageOffset = 3072;

class alignas(4096) PageMap {
 public:
  struct Leaf {
    Span* spans[kLeafLength];
    uint8_t classes[kLeafLength];  // only mapped, and used, without the flat array
  };

  // Where the class bytes live; kFlatUnlessRefused decides in
  // ChooseClassBytes.
  enum class ClassBytes { kFlatUnlessRefused, kInLeaves };

  constexpr PageMap() = default;
  explicit constexpr PageMap(ClassBytes where) : leaves_only_(where == ClassBytes::kInLeaves) {}
  PageMap(const PageMap&) = delete;
  PageMap& operator=(const PageMap&) = delete;

  // Reserves the flat class array, or decides to do without (once; the
  // first Ensure does it otherwise). Call it before the heap maps its first
  // memory: mapped later, the array would sit between the heap's first
  // mapping and the next, which the kernel would otherwise place next to
  // each other, and a large block grows in place only into pages adjacent
  // to it (realloc growing a buffer to 64 MiB moved it once more per cycle).
  void ChooseClassBytes();

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

  // Where free()'s first loads read (tests: kPageMapHotPageOffset).
  const void* hot_fields() const { return &flat_.classes; }

  // Raw class byte of the page holding addr; 0 when unknown.
  uint32_t ClassOfAddress(uintptr_t addr) const {
    uint32_t cls;
    return FlatClassOf(addr, &cls) ? cls : ClassInLeaf(addr >> kPageShift);
  }
  // The same, when the flat array covers addr (true); false sends the caller
  // to ClassOfAddress. For free()'s fast path, which keeps the leaf lookup
  // (and the call it makes) out of line.
  [[gnu::always_inline]] bool FlatClassOf(uintptr_t addr, uint32_t* cls) const {
    // One lea of the fields' own address, then loads with 8-bit offsets
    // from it. Left to itself the compiler takes the map's address and
    // reaches the fields, kPageMapHotPageOffset bytes in, with 32-bit ones
    // (free() 10 bytes longer, 4% slower in `pair` of 16 and 64 B), or,
    // the map being hidden, reads each field RIP-relative (as fast in
    // `pair` of 16 B, 2% slower in `pair` of 16-1024 B). The empty asm
    // makes the address opaque, so it stays in its register.
    const FlatFields* flat = &flat_;
    asm("" : "+r"(flat));
    uintptr_t pages = __atomic_load_n(&flat->pages, __ATOMIC_ACQUIRE);  // then the rest
    uintptr_t i = (addr >> kPageShift) - flat->first_page;  // wraps below the window
    if (__builtin_expect(i >= pages, 0)) return false;
    *cls = __atomic_load_n(&flat->classes[i], __ATOMIC_RELAXED);
    return true;
  }

  // The page's leaf must exist (Ensure).
  void SetSpan(uintptr_t page, Span* span) {
    __atomic_store_n(&MutableLeafFor(page)->spans[page & (kLeafLength - 1)], span,
                     __ATOMIC_RELAXED);
  }
  void SetClass(uintptr_t page, uint32_t cls) {
    uintptr_t i;
    uint8_t* byte = InWindow(page, flat_.pages, &i)
                        ? &flat_.classes[i]
                        : &MutableLeafFor(page)->classes[page & (kLeafLength - 1)];
    __atomic_store_n(byte, static_cast<uint8_t>(cls), __ATOMIC_RELAXED);
  }

  // Address space of the leaves and of the parts of the flat class array
  // that cover them (kLeafLength bytes per leaf): what can become resident.
  uint64_t leaf_bytes() const { return leaf_bytes_.load(std::memory_order_relaxed); }
  // The pages whose class bytes are in the flat array: [first, first +
  // pages); none (pages 0) without one. Decided by ChooseClassBytes.
  struct FlatWindow {
    uintptr_t first_page;
    uintptr_t pages;
  };
  FlatWindow flat_window() const {
    uintptr_t pages = __atomic_load_n(&flat_.pages, __ATOMIC_ACQUIRE);
    return {flat_.first_page, pages};
  }

 private:
  const Leaf* LeafFor(uintptr_t page) const {
    uintptr_t i = page >> kLeafBits;
    if (__builtin_expect(i >= kRootLength, 0)) return nullptr;
    return root_[i].load(std::memory_order_acquire);
  }
  Leaf* MutableLeafFor(uintptr_t page) {
    return root_[page >> kLeafBits].load(std::memory_order_relaxed);
  }
  [[gnu::noinline]] uint32_t ClassInLeaf(uintptr_t page) const;
  // Whether the flat array covers `page`, and at which index (*i). `pages`
  // is flat_.pages as the caller loaded it: with acquire, before this call,
  // wherever the load may race with the window's publication.
  [[gnu::always_inline]] bool InWindow(uintptr_t page, uintptr_t pages, uintptr_t* i) const {
    *i = page - flat_.first_page;  // wraps below the window
    return *i < pages;
  }

  [[maybe_unused]] char before_hot_fields_[kPageMapHotPageOffset] = {};  // never touched
  // Published in this order: flat_.classes and flat_.first_page, then
  // flat_.pages (release; readers load it first, with acquire); 0 pages
  // until the flat array exists, and for ever without one.
  struct FlatFields {
    uint8_t* classes = nullptr;  // the class byte of first_page
    uintptr_t first_page = 0;
    uintptr_t pages = 0;
  };
  FlatFields flat_;
  std::atomic<int> class_bytes_state_{0};  // 0 undecided, 1 deciding, 2 decided
  bool leaves_only_ = false;
  std::atomic<Leaf*> root_[kRootLength] = {};
  std::atomic<uint64_t> leaf_bytes_{0};
};

// The one pagemap of the process: addresses are global.
// Hidden: free() takes the address of its fields with one lea, not through
// the GOT (base/hidden.h).
extern RSEQMALLOC_HIDDEN PageMap g_pagemap;

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_PAGES_PAGEMAP_H_
