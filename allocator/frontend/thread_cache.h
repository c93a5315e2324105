// Per-thread cache: the fallback front end, used when rseq is unavailable
// (valgrind, seccomp, old kernels) or when RSEQMALLOC_CACHE=thread.
//
// One singly linked free list per size class, threaded through the free
// objects themselves. A miss takes up to a batch from the transfer cache; an
// overflow gives a batch back. Each list's capacity starts at 0 and grows
// per miss (2, 4, 8, ... a batch, then a batch at a time) up to a
// per-class bound, and a miss fetches at most the capacity; when the whole cache
// passes its byte budget (RSEQMALLOC_THREAD_CACHE_BYTES) every list gives back
// half. At thread exit the cache is flushed to the central heap.
#ifndef RSEQMALLOC_ALLOCATOR_FRONTEND_THREAD_CACHE_H_
#define RSEQMALLOC_ALLOCATOR_FRONTEND_THREAD_CACHE_H_

#include <cstddef>
#include <cstdint>

#include "allocator/frontend/reentry.h"
#include "allocator/base/size_classes.h"

namespace rseqmalloc::internal {

class ThreadCache {
 public:
  // The calling thread's cache, created on first use (and installed in
  // tls_thread_cache). Returns nullptr while
  // the thread is being set up (a recursive malloc from pthread_setspecific)
  // or when the cache cannot be created; callers then use the central heap.
  static ThreadCache* Current();

  // Fast path: pops a cached object of class `cls`, or nullptr on a miss.
  // The lists are plain memory, so a signal handler that allocates must not
  // find one half-changed: the fast path marks the thread inside the
  // allocator (reentry.h) and a handler that interrupted it misses.
  [[gnu::always_inline]] void* Pop(uint32_t cls) {
    if (__builtin_expect(InsideAllocator(), 0)) return nullptr;
    EnterAllocator();
    void* p = PopInside(cls);
    LeaveAllocator();
    return p;
  }

  // Fast path: caches `p`, or returns false when the list is at capacity
  // (or, as for Pop, when the call interrupted this thread's allocator).
  [[gnu::always_inline]] bool Push(uint32_t cls, void* p) {
    if (__builtin_expect(InsideAllocator(), 0)) return false;
    EnterAllocator();
    bool done = PushInside(cls, p);
    if (__builtin_expect(done, 1)) ++hits_;
    LeaveAllocator();
    return done;
  }

  // The same for callers already inside the allocator.
  [[gnu::always_inline]] void* PopInside(uint32_t cls) {
    FreeList& list = lists_[cls];
    void* head = list.head;
    if (__builtin_expect(head == nullptr, 0)) return nullptr;
    list.head = *static_cast<void**>(head);
    --list.length;
    ++hits_;
    return head;
  }

  [[gnu::always_inline]] bool PushInside(uint32_t cls, void* p) {
    FreeList& list = lists_[cls];
    if (__builtin_expect(list.length >= list.capacity, 0)) return false;
    *static_cast<void**>(p) = list.head;
    list.head = p;
    ++list.length;
    return true;
  }

  // Slow paths, called inside the allocator.
  void* Refill(uint32_t cls);          // nullptr when out of memory
  void Overflow(uint32_t cls, void* p);  // caches p after giving a batch back

  // Returns every cached object to the central heap.
  void Flush();

  size_t CachedBytes() const;
  uint64_t hits() const { return hits_; }
  uint64_t misses() const { return misses_; }

  // Totals over every live thread cache and those already flushed.
  struct Totals {
    size_t cached_bytes;
    uint64_t hits;
    uint64_t misses;
    uint32_t live_caches;
  };
  static Totals GetTotals();

  // pthread_atfork hooks: the registry lock must not be held across fork.
  static void LockForFork();
  static void UnlockAfterFork();

 private:
  struct FreeList {
    void* head;
    uint32_t length;
    uint32_t capacity;
  };

  void Init();
  void ReleaseBatch(uint32_t cls, uint32_t count);
  void ScavengeIfOverBudget();
  static void OnThreadExit(void* cache);

  FreeList lists_[kNumClasses];
  // The classes whose lists ever had capacity (only they can hold objects),
  // in the order they got it: what the budget check, the scavenge and the
  // flush walk instead of every class.
  uint8_t used_classes_[kNumClasses];
  uint32_t num_used_classes_;
  uint64_t hits_;
  uint64_t misses_;
  ThreadCache* next_;  // registry of live caches, for statistics
  ThreadCache* prev_;
};

// Objects nobody may write: every list empty with capacity 0.
extern ThreadCache g_empty_thread_cache;

// The thread's cache once Current() created it; the empty cache before that,
// after the thread's exit, and in modes that do not use thread caches.
// __thread, not thread_local: no TLS wrapper call on the fast path.
extern __thread ThreadCache* tls_thread_cache __attribute__((tls_model("initial-exec")));

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_FRONTEND_THREAD_CACHE_H_
