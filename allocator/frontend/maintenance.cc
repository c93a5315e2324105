#include "allocator/frontend/maintenance.h"

#include <linux/futex.h>
#include <pthread.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/single_threaded.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include "allocator/base/clock.h"
#include "allocator/central/central_heap.h"
#include "allocator/frontend/cpu_cache.h"
#include "allocator/frontend/reentry.h"
#include "allocator/frontend/shared_tls_child.h"

namespace rseqmalloc::internal {
namespace {

// Cache passes run at most this often (the per-CPU idle period is the same).
constexpr uint64_t kPassNs = 1'000'000'000;
// Sleeps end this much after a page deadline: the page heap stamps with the
// coarse clock, which trails the futex's clock by up to a tick.
constexpr uint64_t kCoarseClockSlackNs = 5'000'000;
constexpr size_t kStackBytes = 256 * 1024;

enum State : uint8_t { kDisabled, kNotStarted, kStarting, kRunning, kFailed };

std::atomic<uint8_t> g_state{kDisabled};
// The futex word: bumped by every wake-up request.
std::atomic<uint32_t> g_wake_word{0};
// When the sleeping thread means to wake (UINT64_MAX: not before it is
// woken); 0 while it is awake. The page heap's deadline hook wakes it when
// the new deadline comes earlier.
std::atomic<uint64_t> g_sleep_until{0};

// Set for good when the process's main thread has left through
// pthread_exit: the thread returns (see StopMaintenanceForGood).
std::atomic<bool> g_stop{false};
// The process the state above describes. A clone() child without CLONE_VM
// gets a copy of it but runs no pthread_atfork handler, and its first thread
// ends with the exit system call alone: a thread of ours there would keep
// the child alive for ever. It never starts one (AttendMaintenance).
std::atomic<pid_t> g_owner_pid{0};

// Its destructor runs when the main thread calls pthread_exit (the only way
// a process's main thread ends without ending the process), set in the
// main thread alone.
pthread_key_t g_main_exit_key;
bool g_main_exit_key_made = false;

std::atomic<uint64_t> g_wakeups{0};
std::atomic<uint64_t> g_passes{0};
std::atomic<uint64_t> g_released{0};
std::atomic<uint64_t> g_transfer_returned{0};
std::atomic<uint64_t> g_inside_released{0};  // part of g_released
std::atomic<uint64_t> g_ids_drained{0};

// Sleeps until the word changes or, unless `until` is UINT64_MAX, until that
// CLOCK_MONOTONIC time.
void SleepUntil(uint32_t seen, uint64_t until) {
  timespec abs;
  timespec* timeout = nullptr;
  if (until != UINT64_MAX) {
    abs.tv_sec = static_cast<time_t>(until / 1'000'000'000);
    abs.tv_nsec = static_cast<long>(until % 1'000'000'000);
    timeout = &abs;
  }
  // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time.
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&g_wake_word), FUTEX_WAIT_BITSET_PRIVATE, seen,
          timeout, nullptr, FUTEX_BITSET_MATCH_ANY);
}

void Wake() {
  g_wake_word.fetch_add(1, std::memory_order_seq_cst);
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(&g_wake_word), FUTEX_WAKE_PRIVATE, 1, nullptr,
          nullptr, 0);
}

uint64_t WakeTimeFor(uint64_t deadline) {
  return deadline == UINT64_MAX ? UINT64_MAX : deadline + kCoarseClockSlackNs;
}

// The page heap got a release deadline after none: a thread asleep past it
// must look. Runs inside the allocator, without locks.
void OnDeadlineAppeared() {
  uint64_t until = g_sleep_until.load(std::memory_order_seq_cst);
  if (until == 0 || WakeTimeFor(NextPageReleaseDeadline()) >= until) return;
  if (g_sleep_until.compare_exchange_strong(until, 0, std::memory_order_seq_cst)) Wake();
}

// Cache housekeeping; true when caches still hold objects afterwards (the
// next pass may return them).
bool CachePass() {
  g_cpu_cache.MaintainAll();
  g_ids_drained.fetch_add(static_cast<uint64_t>(g_cpu_cache.DrainIdleIfDue()),
                          std::memory_order_relaxed);
  g_transfer_returned.fetch_add(ReturnIdleTransferObjects(), std::memory_order_relaxed);
  g_passes.fetch_add(1, std::memory_order_relaxed);
  return g_cpu_cache.Totals().cached_bytes != 0 || TransferCacheObjects() != 0;
}

void* Main(void*) {
  prctl(PR_SET_NAME, "rseqmalloc-bg", 0, 0, 0);
  uint64_t next_pass = MonotonicNs() + kPassNs;
  bool caches_hold = true;
  for (;;) {
    uint32_t seen = g_wake_word.load(std::memory_order_seq_cst);
    // The program's last thread may be gone: returning lets glibc end the
    // process when we are the last (as it does for the program's threads).
    if (g_stop.load(std::memory_order_seq_cst)) return nullptr;
    uint64_t now = MonotonicNs();
    if (now >= next_pass) {
      caches_hold = CachePass();
      next_pass = now + kPassNs;
    }
    uint64_t released = 0;
    uint64_t wake = WakeTimeFor(ReleaseExpiredPages(&released));
    uint64_t inside = 0;
    uint64_t inside_wake = ReleaseInsideIdleFreeObjects(now, &inside);
    if (inside_wake < wake) wake = inside_wake;
    g_inside_released.fetch_add(inside, std::memory_order_relaxed);
    g_released.fetch_add(released + inside, std::memory_order_relaxed);
    // Passes only while caches hold something to give back.
    if (caches_hold && next_pass < wake) wake = next_pass;

    // Say when we wake, then look at the deadline once more: a free that
    // gave the heap a deadline after our look either is seen here or sees
    // our time in its hook (both sides are sequentially consistent).
    g_sleep_until.store(wake, std::memory_order_seq_cst);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    if (WakeTimeFor(NextPageReleaseDeadline()) < wake) {
      g_sleep_until.store(0, std::memory_order_relaxed);
      continue;
    }
    SleepUntil(seen, wake);
    g_sleep_until.store(0, std::memory_order_relaxed);
    g_wakeups.fetch_add(1, std::memory_order_relaxed);
    if (wake == UINT64_MAX) {
      // Woken by frees after an idle spell: the caches are in use again.
      caches_hold = true;
      next_pass = MonotonicNs() + kPassNs;
    }
  }
  return nullptr;
}

bool WorthStarting() {
  // Only a process that already has a second thread (see the header).
  if (__libc_single_threaded) return false;
  return NextPageReleaseDeadline() != UINT64_MAX;
}

void Start() {
  pthread_attr_t attr;
  if (pthread_attr_init(&attr) != 0) {
    g_state.store(kFailed, std::memory_order_relaxed);
    return;
  }
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_attr_setstacksize(&attr, kStackBytes);
  // The thread inherits the mask: no signal handler of the program ever
  // runs on it.
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old);
  pthread_t tid;
  int rc = pthread_create(&tid, &attr, Main, nullptr);
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  pthread_attr_destroy(&attr);
  if (rc != 0) {
    g_state.store(kFailed, std::memory_order_relaxed);
    return;
  }
  {
    AllocatorSection section;  // the page heap's lock, on a program's thread
    SetBackgroundPageRelease(true);
  }
  uint8_t expected = kStarting;
  if (!g_state.compare_exchange_strong(expected, kRunning)) {
    // The main thread left meanwhile: the new thread sees g_stop and returns.
    AllocatorSection section;
    SetBackgroundPageRelease(false);
  }
}

// The main thread's pthread_exit: from now on the process ends when its last
// program thread ends, and a thread of ours would keep it alive. Ours
// returns and is never started again; the remaining threads' own allocator
// calls do the timed release, as in a process without the thread.
void StopMaintenanceForGood(void*) {
  g_maintenance_attention.store(0, std::memory_order_relaxed);
  g_stop.store(true, std::memory_order_seq_cst);
  uint8_t was = g_state.exchange(kDisabled);
  if (was == kRunning || was == kStarting) {
    Wake();
    AllocatorSection section;
    SetBackgroundPageRelease(false);
  }
}

// In the process's main thread (and a fork child's only thread).
void WatchMainThreadExit() {
  if (syscall(SYS_gettid) != getpid()) return;
  if (!g_main_exit_key_made) {
    g_main_exit_key_made = pthread_key_create(&g_main_exit_key, StopMaintenanceForGood) == 0;
  }
  // The first keys' values live in the thread descriptor: no allocation.
  if (g_main_exit_key_made) pthread_setspecific(g_main_exit_key, reinterpret_cast<void*>(1));
}

}  // namespace

std::atomic<uint8_t> g_maintenance_attention{0};

void ConfigureMaintenance(bool allowed) {
  if (!allowed) return;
  g_owner_pid.store(getpid(), std::memory_order_relaxed);
  SetPageReleaseDeadlineHook(OnDeadlineAppeared);
  g_state.store(kNotStarted, std::memory_order_relaxed);
  g_maintenance_attention.store(1, std::memory_order_release);
}

void AttendMaintenance() {
  if (g_state.load(std::memory_order_relaxed) != kNotStarted) return;
  // A vfork child shares our memory and TLS: it must not start threads.
  if (MayShareTlsWithChild() || !WorthStarting()) return;
  if (getpid() != g_owner_pid.load(std::memory_order_relaxed)) {
    g_maintenance_attention.store(0, std::memory_order_relaxed);
    g_state.store(kDisabled, std::memory_order_relaxed);  // a clone() child
    return;
  }
  uint8_t expected = kNotStarted;
  if (!g_state.compare_exchange_strong(expected, kStarting)) return;
  g_maintenance_attention.store(0, std::memory_order_relaxed);
  Start();  // allocates (the thread's TLS): this call re-enters, at depth 0
}

void MaintenanceAfterForkChild() {
  g_sleep_until.store(0, std::memory_order_relaxed);
  uint8_t state = g_state.load(std::memory_order_relaxed);
  if (state == kRunning || state == kStarting ||
      (state == kDisabled && g_stop.load(std::memory_order_relaxed))) {
    // (Disabled by the parent's main thread leaving: the child's own thread
    // is its main thread, alive.)
    SetBackgroundPageRelease(false);
    g_stop.store(false, std::memory_order_relaxed);
    g_state.store(kNotStarted, std::memory_order_relaxed);
    g_maintenance_attention.store(1, std::memory_order_relaxed);
  }
  if (g_state.load(std::memory_order_relaxed) != kDisabled) {
    g_owner_pid.store(getpid(), std::memory_order_relaxed);
    WatchMainThreadExit();
  }
}

void WatchMainThreadForMaintenance() {
  if (g_state.load(std::memory_order_relaxed) != kDisabled) WatchMainThreadExit();
}

MaintenanceStats GetMaintenanceStats() {
  MaintenanceStats s;
  s.running = g_state.load(std::memory_order_relaxed) == kRunning;
  s.wakeups = g_wakeups.load(std::memory_order_relaxed);
  s.passes = g_passes.load(std::memory_order_relaxed);
  s.released_bytes = g_released.load(std::memory_order_relaxed);
  s.inside_released_bytes = g_inside_released.load(std::memory_order_relaxed);
  s.transfer_objects_returned = g_transfer_returned.load(std::memory_order_relaxed);
  s.ids_drained = g_ids_drained.load(std::memory_order_relaxed);
  return s;
}

}  // namespace rseqmalloc::internal
