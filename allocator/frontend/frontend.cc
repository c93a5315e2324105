// Slow paths of the front end: first-call initialisation, cache selection,
// refills and overflows, large blocks, and invalid pointers.
#include "allocator/frontend/frontend.h"

#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>

#include "allocator/base/log.h"
#include "allocator/spinlock.h"
#include "allocator/config/options.h"
#include "allocator/frontend/maintenance.h"
#include "allocator/frontend/stats_report.h"
#include "allocator/frontend/shared_tls_child.h"
#include "allocator/frontend/stats_signal.h"
#include "allocator/reentrant_blocks.h"
#include "allocator/reentry.h"
#include "rseq/registration.h"

namespace rseqmalloc::internal {
namespace {

// Largest request we try: anything past PTRDIFF_MAX cannot be represented
// as a difference of pointers into it, so glibc refuses it too.
constexpr size_t kMaxRequest = PTRDIFF_MAX;

std::atomic<bool> g_ready{false};
std::atomic<CacheMode> g_mode{CacheMode::kNone};

// What the options ask for, limited by what this kernel and process allow:
// cid needs mm_cid (kernel >= 6.3), both per-CPU modes need rseq (glibc's
// area or our own) and the slab reservation.
CacheMode ResolveMode(CacheMode wanted) {
  if (wanted == CacheMode::kNone || wanted == CacheMode::kThread) return wanted;
  if (rseq::RegisterCurrentThread() == rseq::Registration::kUnavailable) {
    return CacheMode::kThread;
  }
  if (!CpuCache::Init()) return CacheMode::kThread;
  if (wanted == CacheMode::kCpu || !rseq::MmCidSupported()) return CacheMode::kCpu;
  return CacheMode::kCid;
}

bool PerCpu(CacheMode mode) { return mode == CacheMode::kCpu || mode == CacheMode::kCid; }

// Set once at initialisation: which slow path serves this process.
bool g_per_cpu = false;
bool g_thread_caches = false;

bool UsesThreadCaches() { return g_mode.load(std::memory_order_relaxed) != CacheMode::kNone; }

// Thread mode serves every call here (the per-CPU slab is never started):
// the thread's own list, before any of the slow path's bookkeeping.
[[gnu::always_inline]] inline void* PopThreadCache(uint32_t cls) {
  return g_thread_caches ? tls_thread_cache->Pop(cls) : nullptr;
}
[[gnu::always_inline]] inline bool PushThreadCache(uint32_t cls, void* p) {
  return g_thread_caches && tls_thread_cache->Push(cls, p);
}

// Whether this thread's fork handlers took the locks (see PrepareFork).
__thread bool tls_fork_took_locks __attribute__((tls_model("initial-exec"))) = false;

// Holding the locks across fork counts as being inside the allocator.
//
// fork() is async-signal-safe: a signal handler may call it after
// interrupting this very thread inside malloc or free. The interrupted call
// may hold any of our locks, so waiting for them would never end; then the
// handlers take none. In a single-threaded process (glibc's tst-mallocfork2)
// that is exact: nobody else holds a lock, and the interrupted call finishes
// in both processes when the handler returns. In a multi-threaded one, a lock
// another thread held stays held in the child, which is no worse than the
// child of a multi-threaded fork is promised by POSIX (async-signal-safe calls
// only) and than glibc, which deadlocks there.
void PrepareFork() {
  tls_fork_took_locks = !InsideAllocator();
  EnterAllocator();
  if (!tls_fork_took_locks) return;
  ThreadCache::LockForFork();
  CpuCache::LockForFork();
  LockAllForFork();
}

void AfterFork(bool child) {
  if (tls_fork_took_locks) {
    UnlockAllAfterFork(child);
    CpuCache::UnlockAfterFork();
    ThreadCache::UnlockAfterFork();
  }
  if (child) MaintenanceAfterForkChild();
  LeaveAllocator();
}
void AfterForkParent() { AfterFork(false); }
void AfterForkChild() { AfterFork(true); }

void PrintStartupLine(const Options& options) {
  LogLine line;
  line.Str("rseqmalloc: pid ").Dec(static_cast<uint64_t>(getpid()))
      .Str(" mode=").Str(CacheModeName(g_mode.load(std::memory_order_relaxed)))
      .Str(" (asked: ").Str(CacheModeName(options.cache)).Str(")\n")
      .Flush(STDERR_FILENO);
  PrintOptions(options, STDERR_FILENO);
}

void* OutOfMemory() {
  errno = ENOMEM;
  return nullptr;
}

// A signal handler interrupted this thread inside the allocator (reentry.h):
// serve it without locks and without the thread's cache.
void* AllocateReentered(size_t size, size_t align) {
  void* p = ReentrantAllocate(size, align);
  return p != nullptr ? p : OutOfMemory();
}

void FreeReentered(void* p, uint32_t cls) {
  if (cls - 1 < kNumClasses - 1 || cls == kLargeClass) return DeferFree(p, cls);
  if (p == nullptr || ReentrantFree(p)) return;
  ReportInvalidPointer("free(): invalid pointer", p);
}

// Hands back what re-entered frees deferred; every slow path that is not
// re-entered looks, so the stack drains soon after any thread moves on.
void ReturnDeferredFreesIfAny() {
  if (__builtin_expect(HasDeferredFrees(), 0)) ReturnDeferredFrees();
}

}  // namespace

// Until initialisation nothing could have been allocated, so any sized free
// then is of a foreign pointer: check it.
bool g_check_sized_free = true;
// Class 0 for every size: the fast path's push fails and the slow path
// checks (see FreeSized).
constexpr uint8_t kNoSizedFreeClasses[size_class_internal::kLookupEntries] = {};

void EnsureInitialized() {
  if (__builtin_expect(g_ready.load(std::memory_order_acquire), 1)) return;
  // The first thread resolves the mode (which may reserve the slab);
  // racing threads wait for it. Nothing here allocates through malloc.
  static SpinLock init_lock;
  {
    SpinLockHolder hold(&init_lock);
    if (!g_ready.load(std::memory_order_acquire)) {
      InitCentralHeap();
      const Options& options = GetOptions();
      SetPageHeapFreeCap(options.retained_free_bytes);
      SetPageHeapReleaseDelay(options.release_delay_ms * 1'000'000);
      if (options.huge_pages) UseHugePages(true);
      CacheMode mode = ResolveMode(options.cache);
      ConfigureMaintenance(options.background_thread && mode != CacheMode::kNone);
      g_mode.store(mode, std::memory_order_relaxed);
      g_per_cpu = PerCpu(mode);
      g_thread_caches = mode == CacheMode::kThread;
      if (g_per_cpu) {
        CpuCache::Start(mode == CacheMode::kCid ? rseq::IndexMode::kMmCid
                                                : rseq::IndexMode::kCpuId);
      }
      g_check_sized_free = options.check_sized_free;
      if (g_check_sized_free) g_sized_free_classes = kNoSizedFreeClasses;
      g_ready.store(true, std::memory_order_release);
    }
  }
  const Options& options = GetOptions();

  // One-time hooks, registered only now: pthread_atfork and atexit may
  // allocate, and those calls must find the allocator ready.
  static std::atomic<bool> hooks_done{false};
  if (hooks_done.exchange(true)) return;
  pthread_atfork(PrepareFork, AfterForkParent, AfterForkChild);
  if (options.stats_at_exit) atexit(ReportStats);
  if (options.verbose) PrintStartupLine(options);
  if (options.stats_signal != 0) InstallStatsSignal(options.stats_signal);
}

void ReturnDeferredFrees() {
  void* node = TakeDeferredFrees();
  while (node != nullptr) {
    void* next = NextDeferred(node);
    uint32_t cls = DeferredClass(node);
    if (cls == kLargeClass) {
      FreeLarge(node);
    } else {
      InsertBatch(cls, &node, 1);
    }
    node = next;
  }
}

void* AllocateSmallSlow(uint32_t cls) noexcept {
  if (void* p = PopThreadCache(cls)) return p;
  if (InsideAllocator()) return AllocateReentered(ClassToSize(cls), 16);
  // Before the section: initialisation registers hooks that may allocate.
  EnsureInitialized();
  PrintPendingStatsReportIfAny();
  AttendMaintenanceIfAsked();
  AllocatorSection section;
  ReturnDeferredFreesIfAny();
  void* p = nullptr;
  if (MayShareTlsWithChild()) return RemoveBatch(cls, &p, 1) == 1 ? p : OutOfMemory();
  // Per-CPU refill; nullptr when this thread cannot use rseq (or when out
  // of memory, which the thread-cache path below finds out again).
  if (g_per_cpu && (p = CpuCache::Refill(cls)) != nullptr) return p;
  if (UsesThreadCaches()) {
    if (ThreadCache* cache = ThreadCache::Current()) {
      void* p = cache->PopInside(cls);  // the quick pop may have seen the empty cache
      if (p == nullptr) p = cache->Refill(cls);
      return p != nullptr ? p : OutOfMemory();
    }
  }
  // No cache: RSEQMALLOC_CACHE=none, or this thread is setting up or gone.
  return RemoveBatch(cls, &p, 1) == 1 ? p : OutOfMemory();
}

void* AllocateLargeSlow(size_t size, size_t align, bool* zeroed) noexcept {
  if (size > kMaxRequest) return OutOfMemory();
  if (InsideAllocator()) {
    if (zeroed != nullptr) *zeroed = true;  // a fresh mapping of its own
    return AllocateReentered(size, align);
  }
  EnsureInitialized();
  PrintPendingStatsReportIfAny();
  AttendMaintenanceIfAsked();
  // Inside: a signal handler's malloc must not wait for the page heap lock
  // this call may hold.
  AllocatorSection section;
  ReturnDeferredFreesIfAny();
  void* p = AllocateLarge(size, align, zeroed);
  return p != nullptr ? p : OutOfMemory();
}

bool ResizeLargeBlock(void* p, size_t size) {
  if (InsideAllocator() || size > kMaxRequest) return false;
  AllocatorSection section;
  return ResizeLargeInPlace(p, size);
}

void FreeSlow(void* p, uint32_t cls) noexcept {
  bool small = cls - 1 < kNumClasses - 1;
  if (!small) cls = ClassifyPointer(p);  // the raw byte: large, or not ours
  if (small && PushThreadCache(cls, p)) return;
  if (InsideAllocator()) return FreeReentered(p, cls);
  PrintPendingStatsReportIfAny();
  AttendMaintenanceIfAsked();
  AllocatorSection section;
  ReturnDeferredFreesIfAny();
  if (small) {
    if (MayShareTlsWithChild()) return InsertBatch(cls, &p, 1);
    // Per-CPU overflow; false when this thread cannot use rseq.
    if (g_per_cpu && CpuCache::Overflow(cls, p)) return;
    if (UsesThreadCaches()) {
      if (ThreadCache* cache = ThreadCache::Current()) {
        if (!cache->PushInside(cls, p)) cache->Overflow(cls, p);
        return;
      }
    }
    InsertBatch(cls, &p, 1);
    return;
  }
  if (p == nullptr) return;
  if (cls == kLargeClass) return FreeLarge(p);
  if (ReentrantFree(p)) return;
  ReportInvalidPointer("free(): invalid pointer", p);
}

void* AllocateAligned(size_t size, size_t align) noexcept {
  uint32_t cls = ClassFor(size, align);
  if (cls != 0) return AllocateClass(cls);
  return AllocateLargeSlow(size, align < kPageSize ? kPageSize : align);
}

namespace {

// Every sized free under RSEQMALLOC_CHECK_SIZED_FREE, and null.
void FreeSizedChecked(void* p, size_t size, size_t align) {
  uint32_t cls = ClassifyPointer(p);
  if (cls - 1 < kNumClasses - 1) {
    if (ClassFor(size, align) != cls) return ReportInvalidPointer("free_sized(): wrong size for pointer", p);
    return FreeSmall(p, cls);
  }
  if (cls == kLargeClass && (size > CheckedUsableSize(p) || ClassFor(size, align) != 0)) {
    // A large block whose size would have been served from a class, or
    // does not fit in it, cannot be the block the caller describes.
    return ReportInvalidPointer("free_sized(): wrong size for pointer", p);
  }
  FreeSlow(p, cls);
}

}  // namespace

const uint8_t* g_sized_free_classes = size_class_internal::kLookup.data();

// A full class, a large block, a large alignment, null, or checking on.
void FreeSizedSlow(void* p, size_t size, size_t align) noexcept {
  if (g_check_sized_free || p == nullptr) return FreeSizedChecked(p, size, align);
  uint32_t cls = ClassFor(size, align);
  if (cls == 0) cls = ClassifyPointer(p);  // a large block: the pagemap knows
  FreeSlow(p, cls);
}

size_t CheckedUsableSize(const void* p) {
  if (p == nullptr) return 0;
  uint32_t cls = ClassifyPointer(p);
  if (cls - 1 < kNumClasses - 1) return ClassToSize(cls);
  if (cls == kLargeClass) return UsableSize(p);
  if (size_t mapped = ReentrantUsableSize(p)) return mapped;
  ReportInvalidPointer("malloc_usable_size(): invalid pointer", p);
  return 0;
}

void ReportInvalidPointer(const char* what, const void* p) {
  if (GetOptions().abort_on_invalid_free) CrashWithPointer(what, p);
  LogLine line;
  line.Str("rseqmalloc: ").Str(what).Str(" ").Ptr(p).Str(" (ignored)\n").Flush(STDERR_FILENO);
}

const char* ActiveModeName() {
  EnsureInitialized();
  CacheMode mode = g_mode.load(std::memory_order_relaxed);
  if ((mode == CacheMode::kCpu || mode == CacheMode::kCid) &&
      rseq::RegisterCurrentThread() == rseq::Registration::kUnavailable) {
    return CacheModeName(CacheMode::kThread);  // this thread falls back
  }
  return CacheModeName(mode);
}

}  // namespace rseqmalloc::internal
