#include "allocator/frontend/lifecycle.h"

#include <pthread.h>
#include <unistd.h>

#include "allocator/base/log.h"
#include "allocator/base/spinlock.h"
#include "allocator/central/central_heap.h"
#include "allocator/frontend/cpu_cache.h"
#include "allocator/frontend/frontend.h"
#include "allocator/frontend/maintenance.h"
#include "allocator/frontend/reentry.h"
#include "allocator/frontend/thread_cache.h"
#include "allocator/frontend/upcalls.h"
#include "rseq/registration.h"
#include "rseq/slab.h"

namespace rseqmalloc::internal {

std::atomic<CacheMode> g_mode{CacheMode::kNone};
bool g_per_cpu = false;
bool g_thread_caches = false;
// Until initialisation nothing could have been allocated, so any sized free
// then is of a foreign pointer: check it.
bool g_check_sized_free = true;
std::atomic<bool> g_stats_request{false};

namespace {

std::atomic<bool> g_ready{false};

// The slab's regions (4 MiB per possible CPU) are address space reserved
// for speed: under an address-space limit they may take at most this share
// of it, as a heap chunk may (a sixteenth); past that the program gets
// thread caches, which reserve nothing. With 8 MiB of regions on 2 CPUs, a
// program given 24 MiB above its own size failed its last large block.
constexpr size_t kSlabShareOfLimit = 16;

// What the options ask for, limited by what this kernel and process allow:
// cid needs mm_cid (kernel >= 6.3), both per-CPU modes need rseq (glibc's
// area or our own) and the slab reservation.
CacheMode ResolveMode(CacheMode wanted) {
  if (wanted == CacheMode::kNone || wanted == CacheMode::kThread) return wanted;
  if (rseq::RegisterCurrentThread() == rseq::Registration::kUnavailable) {
    return CacheMode::kThread;
  }
  if (!ReservationFitsLimit(rseq::PercpuSlab::ReservationBytes(), kSlabShareOfLimit)) {
    return CacheMode::kThread;
  }
  if (!g_cpu_cache.Init(GetOptions().per_cpu_cache_bytes,
                        GetOptions().per_cpu_cache_max_bytes)) return CacheMode::kThread;
  if (wanted == CacheMode::kCpu || !rseq::MmCidSupported()) return CacheMode::kCpu;
  return CacheMode::kCid;
}

bool PerCpu(CacheMode mode) { return mode == CacheMode::kCpu || mode == CacheMode::kCid; }

void PrintStartupLine(const Options& options) {
  LogLine line;
  line.Str("rseqmalloc: pid ").Dec(static_cast<uint64_t>(getpid()))
      .Str(" mode=").Str(CacheModeName(g_mode.load(std::memory_order_relaxed)))
      .Str(" (asked: ").Str(CacheModeName(options.cache)).Str(")\n")
      .Flush(STDERR_FILENO);
  PrintOptions(options, STDERR_FILENO);
}

}  // namespace

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
//
// The interrupted call may also be a fork() of this thread, anywhere between
// our two handlers (glibc 2.36 leaves signals open there). The handler's fork
// then runs its handlers nested inside ours, entering and leaving the
// allocator before the outer after-fork handler resumes. So the depth alone
// tells each after-fork handler what its prepare handler did: depth 1, it
// took the locks. (Remembering that in a thread-local flag was wrong: the
// nested prepare handler overwrote it, and the outer locks stayed held.)
void PrepareFork() {
  bool take_locks = !InsideAllocator();
  EnterAllocator();
  if (!take_locks) return;
  ThreadCache::LockForFork();
  g_cpu_cache.LockForFork();
  LockAllForFork();
}

namespace {

void AfterFork(bool child) {
  if (tls_allocator_depth == 1) {
    UnlockAllAfterFork(child);
    g_cpu_cache.UnlockAfterFork();
    ThreadCache::UnlockAfterFork();
  }
  if (child) MaintenanceAfterForkChild();
  LeaveAllocator();
}

}  // namespace

void AfterForkParent() { AfterFork(false); }
void AfterForkChild() { AfterFork(true); }

// Class 0 for every size: the fast path's push fails and the slow path
// checks (see FreeSized).
constexpr uint8_t kNoSizedFreeClasses[size_class_internal::kLookupEntries] = {};

void EnsureInitialized() {
  if (__builtin_expect(g_ready.load(std::memory_order_acquire), 1)) return;
  // The first thread resolves the mode (which may reserve the slab);
  // racing threads wait for it. Nothing here allocates through malloc.
  static SpinLock init_lock;
  {
    AllocatorSection section;  // a signal handler's malloc must not wait for the lock
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
        g_cpu_cache.Start(mode == CacheMode::kCid ? rseq::IndexMode::kMmCid
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
  WatchMainThreadForMaintenance();
  if (options.verbose) PrintStartupLine(options);
  StatsAfterStart(options);
}

const char* ActiveModeName() {
  EnsureInitialized();
  CacheMode mode = g_mode.load(std::memory_order_relaxed);
  if (PerCpu(mode) && rseq::RegisterCurrentThread() == rseq::Registration::kUnavailable) {
    return CacheModeName(CacheMode::kThread);  // this thread falls back
  }
  return CacheModeName(mode);
}

}  // namespace rseqmalloc::internal
