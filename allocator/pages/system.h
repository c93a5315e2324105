// The allocator's only contact with the operating system: address space,
// returning pages, and writing diagnostics.
//
// Heap memory is reserved in chunks of kChunkBytes (64 MiB; less under an
// address-space or data limit, SystemChunkBytes), aligned to
// kChunkAlign (2 MiB, a transparent huge page), with MAP_NORESERVE: reserving
// costs address space only, and a page costs memory once it is touched. The
// page heap carves its growth out of the current chunk. A request of at least
// kOwnMappingBytes gets a mapping of its own, without MAP_NORESERVE: the
// kernel's overcommit policy judges it as it would glibc's (a block larger
// than RAM + swap is refused under the default heuristic). The untouched
// tail of a chunk that is too short for the next request is unmapped when
// the next chunk is mapped. When a chunk cannot be mapped (small RLIMIT_AS) the request is
// retried with a mapping of exactly its size, and failing that SystemAlloc
// returns nullptr.
//
// Freed pages go back with madvise(MADV_DONTNEED), after which the range
// reads as zeros and is re-faulted on the next touch. Heap memory is
// unmapped only when the page heap runs out of address space
// (SystemUnmap): then every free span goes (page_heap.h).
#ifndef RSEQMALLOC_ALLOCATOR_PAGES_SYSTEM_H_
#define RSEQMALLOC_ALLOCATOR_PAGES_SYSTEM_H_

#include <cstddef>
#include <cstdint>

#include "allocator/base/log.h"  // Crash(), for the layers above
#include "allocator/pages/huge_pages.h"

namespace rseqmalloc::internal {

inline constexpr size_t kChunkBytes = size_t{64} << 20;
inline constexpr size_t kChunkAlign = size_t{2} << 20;
inline constexpr size_t kOwnMappingBytes = kChunkBytes / 4;

struct SystemStats {
  uint64_t reserved_bytes;        // heap address space mapped (chunks + own mappings)
  uint64_t handed_out_bytes;      // of which given to callers of SystemAlloc
  uint64_t released_bytes_total;  // cumulative bytes passed to SystemRelease
  uint64_t unmapped_bytes_total;  // cumulative heap bytes unmapped (chunk tails, SystemUnmap)
  uint64_t metadata_bytes;        // mapped through SystemMapMetadata, still mapped
  HugePageStats huge;
};

// What a SystemAlloc is for: heap growth that spans of every size are carved
// from (transparent huge pages once the heap is big enough, huge_pages.h),
// or one big block that the program may touch sparsely (small pages).
enum class PageUse { kHeap, kBigBlock };

// Returns `bytes` (a multiple of kPageSize) of zeroed heap memory aligned to
// kPageSize, or nullptr when the OS refuses. Thread-safe.
void* SystemAlloc(size_t bytes, PageUse use = PageUse::kHeap);

// Heap mappings ask the kernel for transparent huge pages with MADV_HUGEPAGE
// once the heap is big enough (RSEQMALLOC_HUGE_PAGES, huge_pages.h).
void SystemUseHugePages(bool on);

// Hands out exactly [p, p + bytes) when that range continues the current
// chunk (the page heap extends a block that ends where the chunk's used part
// does); false otherwise. Thread-safe.
bool SystemAllocAt(void* p, size_t bytes);

// Gives the pages of [p, p + bytes) back to the OS; the range stays mapped and
// reads as zero afterwards. Both must be multiples of the OS page size.
// Returns false if madvise failed (the pages then stay resident).
bool SystemRelease(void* p, size_t bytes);

// The least of the process's address-space limit (RLIMIT_AS) and its data
// limit (RLIMIT_DATA, which counts private writable mappings, reserved or
// not), in bytes; SIZE_MAX when it has neither. Reservations that only pay
// off with room to spare (the transfer caches' growth) look at it.
size_t SystemAddressSpaceLimit();

// Whether `bytes` in one block exceed what the kernel's overcommit policy
// can ever grant: true only under its default heuristic
// (vm.overcommit_memory=0), which refuses a single request larger than RAM
// + swap whatever the process frees, and only for requests of 256 MiB or
// more (smaller ones are left to the kernel). Lets a hopeless request fail
// at once instead of first draining every cache and unmapping free memory.
// Keeps errno.
bool SystemRequestExceedsMemory(size_t bytes);

// The size of the next chunk: kChunkBytes, or under a limit
// (SystemAddressSpaceLimit) a sixteenth of the limit in whole kChunkAlign
// units, kChunkAlign at least: a 64 MiB reservation would eat a 100 MiB
// limit that thread stacks and file mappings share.
size_t SystemChunkBytes();

// Unmaps [p, p + bytes), heap memory SystemAlloc handed out (page-aligned),
// when a mapping failed for want of address space. False when the kernel
// refuses (the range then stays as it was).
bool SystemUnmap(void* p, size_t bytes);

// Anonymous mapping for metadata (arena blocks, pagemap leaves); page-aligned,
// zeroed, untouched until used. nullptr on failure.
void* SystemMapMetadata(size_t bytes);
void SystemUnmapMetadata(void* p, size_t bytes);
// A large reservation of which only scattered pages will ever be written
// (the pagemap's flat class array). It is mapped read-only -- every byte
// reads as zero, and a read-only private mapping is not charged against the
// commit limit even under vm.overcommit_memory=2 -- and the user makes the
// parts it writes writable with SystemMakeWritable, which charges them. No
// transparent huge pages (one written byte must not make 2 MiB resident);
// not counted in SystemStats (the user counts what it makes writable).
// nullptr when the process has an address-space limit (RLIMIT_AS: the
// reservation would eat it) or the kernel refuses.
void* SystemReserveSparse(size_t bytes);
// [p, p + bytes), page-aligned and inside a SystemReserveSparse reservation,
// becomes writable. False when the kernel refuses (commit limit).
bool SystemMakeWritable(void* p, size_t bytes);
// Gives back the whole OS pages inside [p, p + bytes), part of such a
// mapping (they read as zero afterwards; the partial pages at either end
// stay). Not counted as heap memory released.
void SystemReleaseMetadata(void* p, size_t bytes);

// Lock-free reads: consistent with each other only while the system lock is
// held (SystemLockForFork) or no other thread allocates.
void GetSystemStats(SystemStats* out);

// The system lock is taken last in LockAllForFork's order.
void SystemLockForFork();
void SystemUnlockAfterFork();

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_PAGES_SYSTEM_H_
