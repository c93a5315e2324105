#include "allocator/pages/system.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/sysinfo.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "allocator/base/no_cancel.h"
#include "allocator/base/size_classes.h"
#include "allocator/base/spinlock.h"
#include "allocator/pages/huge_pages.h"

namespace rseqmalloc::internal {
namespace {

constinit SpinLock g_system_lock;
// The unused rest of the current chunk; guarded by g_system_lock.
constinit uintptr_t g_chunk_next = 0;
constinit uintptr_t g_chunk_end = 0;
// The latest mapping (own or chunk), the huge-page density sample; guarded
// by g_system_lock.
constinit uintptr_t g_last_begin = 0;
constinit uintptr_t g_last_end = 0;
// Written under g_system_lock; read without it by GetSystemStats.
constinit std::atomic<uint64_t> g_reserved{0};
constinit std::atomic<uint64_t> g_handed_out{0};
constinit std::atomic<uint64_t> g_released{0};
constinit std::atomic<uint64_t> g_metadata{0};
constinit std::atomic<uint64_t> g_unmapped{0};

constexpr int kProt = PROT_READ | PROT_WRITE;
constexpr int kFlags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE;
// A mapping of its own is all the caller's to touch: without MAP_NORESERVE
// the kernel's overcommit policy judges it as it judges glibc's mmap of a
// large block (under the default heuristic, vm.overcommit_memory=0, more
// than RAM + swap in one request is refused).
constexpr int kOwnFlags = MAP_PRIVATE | MAP_ANONYMOUS;

// Maps `bytes` aligned to `align` (a power of two >= the OS page size) by
// over-mapping and trimming both ends. Returns 0 on failure.
uintptr_t MapAligned(size_t bytes, size_t align, int flags = kFlags) {
  size_t os_page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  if (align < os_page) align = os_page;
  size_t slack = align - os_page;
  if (bytes + slack < bytes) return 0;
  void* raw = mmap(nullptr, bytes + slack, kProt, flags, -1, 0);
  if (raw == MAP_FAILED) return 0;
  uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  uintptr_t aligned = (start + align - 1) & ~(align - 1);
  if (aligned > start) munmap(raw, aligned - start);
  uintptr_t end = start + bytes + slack;
  if (end > aligned + bytes)
    munmap(reinterpret_cast<void*>(aligned + bytes), end - aligned - bytes);
  return aligned;
}

size_t RoundUp(size_t n, size_t align) { return (n + align - 1) & ~(align - 1); }

// The rest of the current chunk is too short for a request: it goes back
// before the next mapping, which may need its address space (RLIMIT_AS).
// Never touched, so it costs nothing else. Caller holds g_system_lock.
void UnmapChunkRestLocked() {
  size_t rest = g_chunk_end - g_chunk_next;
  if (rest == 0) return;
  HugePagesTrimChunk(g_chunk_next);
  if (munmap(reinterpret_cast<void*>(g_chunk_next), rest) == 0) {
    g_reserved.fetch_sub(rest, std::memory_order_relaxed);
    g_unmapped.fetch_add(rest, std::memory_order_relaxed);
    g_chunk_end = g_chunk_next;
  }
}

}  // namespace

void* SystemAlloc(size_t bytes, PageUse use) {
  if (bytes == 0 || (bytes & (kPageSize - 1)) != 0) return nullptr;
  SpinLockHolder h(&g_system_lock);
  // Of the current chunk only its handed-out part says how the program
  // uses its memory.
  uintptr_t sample_end = g_chunk_end != 0 && g_last_end == g_chunk_end ? g_chunk_next : g_last_end;
  bool huge = HugePagesStartIfDue(g_handed_out.load(std::memory_order_relaxed), g_chunk_next,
                                  g_chunk_end, g_last_begin, sample_end);
  if (bytes >= kOwnMappingBytes) {
    size_t align = bytes >= kChunkAlign ? kChunkAlign : kPageSize;
    uintptr_t p = MapAligned(bytes, align, kOwnFlags);
    if (p == 0 && align != kPageSize) p = MapAligned(bytes, kPageSize, kOwnFlags);
    if (p == 0) return nullptr;
    if (huge && use == PageUse::kHeap) HugePagesAdvise(p, p + bytes);
    g_last_begin = p;
    g_last_end = p + bytes;
    g_reserved.fetch_add(bytes, std::memory_order_relaxed);
    g_handed_out.fetch_add(bytes, std::memory_order_relaxed);
    return reinterpret_cast<void*>(p);
  }
  if (g_chunk_end - g_chunk_next < bytes) {
    UnmapChunkRestLocked();
    // A chunk made small by a limit may be shorter than the request.
    size_t chunk = SystemChunkBytes();
    if (chunk < bytes) chunk = RoundUp(bytes, kChunkAlign);
    uintptr_t p = MapAligned(chunk, kChunkAlign);
    if (p == 0) {
      // Under a tight address-space limit reserve only what is asked for.
      chunk = RoundUp(bytes, kChunkAlign);
      p = MapAligned(chunk, kChunkAlign);
      if (p == 0) {
        chunk = bytes;
        p = MapAligned(chunk, kPageSize);
      }
      if (p == 0) return nullptr;
    }
    if (huge) HugePagesAdvise(p, p + chunk);
    g_last_begin = p;
    g_last_end = p + chunk;
    g_reserved.fetch_add(chunk, std::memory_order_relaxed);
    g_chunk_next = p;
    g_chunk_end = p + chunk;
  }
  uintptr_t result = g_chunk_next;
  g_chunk_next += bytes;
  g_handed_out.fetch_add(bytes, std::memory_order_relaxed);
  return reinterpret_cast<void*>(result);
}

void SystemUseHugePages(bool on) { HugePagesEnable(on); }

bool SystemAllocAt(void* p, size_t bytes) {
  if (bytes == 0 || (bytes & (kPageSize - 1)) != 0) return false;
  SpinLockHolder h(&g_system_lock);
  uintptr_t at = reinterpret_cast<uintptr_t>(p);
  if (at != g_chunk_next || g_chunk_end - g_chunk_next < bytes) return false;
  g_chunk_next += bytes;
  g_handed_out.fetch_add(bytes, std::memory_order_relaxed);
  return true;
}

bool SystemRelease(void* p, size_t bytes) {
  if (bytes == 0) return true;
  uintptr_t at = reinterpret_cast<uintptr_t>(p);
  HugePagesBeforeRelease(at, bytes);
  if (madvise(p, bytes, MADV_DONTNEED) != 0) return false;
  HugePagesAfterRelease(at, bytes);
  g_released.fetch_add(bytes, std::memory_order_relaxed);
  return true;
}

bool SystemUnmap(void* p, size_t bytes) {
  if (bytes == 0) return true;
  HugePagesBeforeUnmap(reinterpret_cast<uintptr_t>(p), bytes);
  if (munmap(p, bytes) != 0) return false;
  g_reserved.fetch_sub(bytes, std::memory_order_relaxed);
  g_handed_out.fetch_sub(bytes, std::memory_order_relaxed);
  g_unmapped.fetch_add(bytes, std::memory_order_relaxed);
  return true;
}

void SystemReleaseMetadata(void* p, size_t bytes) {
  uintptr_t os_page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
  uintptr_t begin = (reinterpret_cast<uintptr_t>(p) + os_page - 1) & ~(os_page - 1);
  uintptr_t end = (reinterpret_cast<uintptr_t>(p) + bytes) & ~(os_page - 1);
  if (begin < end) madvise(reinterpret_cast<void*>(begin), end - begin, MADV_DONTNEED);
}

void* SystemMapMetadata(size_t bytes) {
  void* p = mmap(nullptr, bytes, kProt, kFlags, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  g_metadata.fetch_add(bytes, std::memory_order_relaxed);
  return p;
}

namespace {

size_t Limit(int resource) {
  struct rlimit limit;
  if (getrlimit(resource, &limit) != 0 || limit.rlim_cur == RLIM_INFINITY) return SIZE_MAX;
  return static_cast<size_t>(limit.rlim_cur);
}

}  // namespace

size_t SystemAddressSpaceLimit() {
  size_t as = Limit(RLIMIT_AS);
  size_t data = Limit(RLIMIT_DATA);
  return as < data ? as : data;
}

namespace {

// Below this a request is left to the kernel alone: the policy costs a file
// read to learn, and a machine with less RAM + swap than this is short
// enough of memory that draining the caches before failing is right.
constexpr size_t kMinBoundedRequest = size_t{256} << 20;
constexpr uint64_t kNoBound = UINT64_MAX;
// RAM + swap when the policy was the heuristic at the last look, kNoBound
// otherwise; 0 until the first look.
constinit std::atomic<uint64_t> g_memory_bound{0};

uint64_t ReadMemoryBound() {
  NoCancel no_cancel;  // open, read and close are cancellation points
  int fd = open("/proc/sys/vm/overcommit_memory", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return kNoBound;
  char mode = 0;
  ssize_t n = read(fd, &mode, 1);
  close(fd);
  if (n != 1 || mode != '0') return kNoBound;  // "always" (1) or strict (2)
  struct sysinfo info;
  if (sysinfo(&info) != 0 || info.mem_unit == 0) return kNoBound;
  uint64_t units = static_cast<uint64_t>(info.totalram) + info.totalswap;
  if (units > kNoBound / info.mem_unit) return kNoBound;
  return units * info.mem_unit;
}

}  // namespace

bool SystemRequestExceedsMemory(size_t bytes) {
  if (bytes < kMinBoundedRequest) return false;
  int saved_errno = errno;
  uint64_t bound = g_memory_bound.load(std::memory_order_relaxed);
  // Looked up the first time, and again before any refusal: only a fresh
  // look refuses (swap may have been added since the last).
  if (bound == 0 || bytes > bound) {
    bound = ReadMemoryBound();
    g_memory_bound.store(bound, std::memory_order_relaxed);
  }
  errno = saved_errno;
  return bytes > bound;
}

size_t SystemChunkBytes() {
  size_t limit = SystemAddressSpaceLimit();
  if (limit / 16 >= kChunkBytes) return kChunkBytes;
  size_t chunk = limit / 16 & ~(kChunkAlign - 1);
  return chunk < kChunkAlign ? kChunkAlign : chunk;
}

void* SystemReserveSparse(size_t bytes) {
  // Read-only: RLIMIT_DATA does not count it, RLIMIT_AS does.
  if (Limit(RLIMIT_AS) != SIZE_MAX) return nullptr;
  void* p = mmap(nullptr, bytes, PROT_READ, kFlags, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  madvise(p, bytes, MADV_NOHUGEPAGE);  // advice only: failing it changes nothing
  return p;
}

bool SystemMakeWritable(void* p, size_t bytes) { return mprotect(p, bytes, kProt) == 0; }

void SystemUnmapMetadata(void* p, size_t bytes) {
  if (munmap(p, bytes) == 0) g_metadata.fetch_sub(bytes, std::memory_order_relaxed);
}

void GetSystemStats(SystemStats* out) {
  GetHugePageStats(&out->huge);
  out->reserved_bytes = g_reserved.load(std::memory_order_relaxed);
  out->handed_out_bytes = g_handed_out.load(std::memory_order_relaxed);
  out->released_bytes_total = g_released.load(std::memory_order_relaxed);
  out->metadata_bytes = g_metadata.load(std::memory_order_relaxed);
  out->unmapped_bytes_total = g_unmapped.load(std::memory_order_relaxed);
}

void SystemLockForFork() {
  g_system_lock.Lock();
  HugePagesLockForFork();
}

void SystemUnlockAfterFork() {
  HugePagesUnlockAfterFork();
  g_system_lock.Unlock();
}

}  // namespace rseqmalloc::internal
