// The re-entry path (allocator/frontend/reentry.h, reentrant_blocks.h) without
// signals: the thread raises its own allocator depth, exactly what a signal
// handler that interrupted this thread's malloc would find, and calls the
// public API. signal_handler_alloc_test covers the same path with real
// signals; this test pins down each entry point's answer.
#include <malloc.h>
#include <pthread.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "allocator/api/rseqmalloc.h"
#include "allocator/frontend/reentrant_blocks.h"
#include "allocator/frontend/reentry.h"
#include "gtest/gtest.h"
#include "tests/util/test_util.h"

extern "C" void free_sized(void* p, size_t size);  // C23; glibc 2.36 does not declare it

namespace rseqmalloc_test {
namespace {

namespace in = rseqmalloc::internal;

constexpr size_t kLarge = 300 * 1024;  // above the small classes: always a slow path

rseqmalloc_stats Stats() {
  rseqmalloc_stats s;
  EXPECT_EQ(rseqmalloc_get_stats(&s), 0);
  return s;
}

bool ThreadModeOrNone() {
  std::string mode = rseqmalloc_mode();
  return mode == "thread" || mode == "none";
}

// Runs f as if in a signal handler that interrupted this thread's allocator.
template <typename F>
auto Reentered(F f) {
  in::EnterAllocator();
  auto result = f();
  in::LeaveAllocator();
  return result;
}

TEST(Reentry, LargeAllocationIsMappedDirectlyAndFreedByFree) {
  free(malloc(1));  // the allocator is set up
  uint64_t mapped_before = Stats().reentrant_blocks_mapped;
  auto* p = static_cast<char*>(Reentered([] { return malloc(kLarge); }));
  ASSERT_NE(p, nullptr);
  EXPECT_GE(in::ReentrantUsableSize(p), kLarge);
  EXPECT_GE(malloc_usable_size(p), kLarge);
  EXPECT_EQ(rseqmalloc_owns(p), 1);
  memset(p, 0x5a, kLarge);
  EXPECT_EQ(Stats().reentrant_blocks_mapped, mapped_before + 1);
  free(p);  // outside: found in the table and unmapped
  EXPECT_EQ(in::ReentrantUsableSize(p), 0u);
}

TEST(Reentry, SmallAllocationWorksInEveryMode) {
  // Per-CPU modes may still serve it from the rseq cache (safe there);
  // thread mode and none must take the mapped path.
  uint64_t mapped_before = Stats().reentrant_blocks_mapped;
  auto* p = static_cast<char*>(Reentered([] { return malloc(48); }));
  ASSERT_NE(p, nullptr);
  memset(p, 0x33, 48);
  EXPECT_EQ(rseqmalloc_owns(p), 1);
  if (ThreadModeOrNone()) {
    EXPECT_EQ(Stats().reentrant_blocks_mapped, mapped_before + 1);
  }
  Reentered([p] {
    free(p);  // a re-entered free of a re-entrant block unmaps it at once
    return 0;
  });
  EXPECT_EQ(in::ReentrantUsableSize(p), 0u);
}

TEST(Reentry, AlignmentIsHonoured) {
  for (size_t align : {size_t{64}, size_t{4096}, size_t{1} << 16, size_t{1} << 21}) {
    void* p = Reentered([align] { return aligned_alloc(align, kLarge); });
    ASSERT_NE(p, nullptr) << align;
    EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % align, 0u) << align;
    free(p);
  }
}

TEST(Reentry, CallocIsZeroedAndReallocMovesTheBlock) {
  auto* z = static_cast<unsigned char*>(Reentered([] { return calloc(kLarge / 8, 8); }));
  ASSERT_NE(z, nullptr);
  for (size_t i = 0; i < kLarge; i += 997) ASSERT_EQ(z[i], 0) << i;
  free(z);

  auto* p = static_cast<char*>(Reentered([] { return malloc(kLarge); }));
  ASSERT_NE(p, nullptr);
  for (size_t i = 0; i < kLarge; ++i) p[i] = static_cast<char>(i * 7);
  auto* q = static_cast<char*>(realloc(p, 2 * kLarge));  // outside: a normal block
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(in::ReentrantUsableSize(p), 0u);  // the old mapping is gone
  for (size_t i = 0; i < kLarge; ++i) ASSERT_EQ(q[i], static_cast<char>(i * 7)) << i;
  free(q);
}

TEST(Reentry, FreeOfOurBlockIsDeferredAndSettledLater) {
  void* warm = malloc(kLarge);
  free(warm);
  void* p = malloc(kLarge);  // an ordinary large block
  ASSERT_NE(p, nullptr);
  ASSERT_EQ(in::ReentrantUsableSize(p), 0u);
  size_t usable = malloc_usable_size(p);
  rseqmalloc_stats before = Stats();
  Reentered([p] {
    free(p);  // would need the page heap's lock: deferred
    return 0;
  });
  EXPECT_TRUE(in::HasDeferredFrees());
  rseqmalloc_stats after = Stats();  // settles deferred frees first
  EXPECT_FALSE(in::HasDeferredFrees());
  EXPECT_EQ(after.reentrant_frees_deferred, before.reentrant_frees_deferred + 1);
  EXPECT_EQ(before.large_in_use_bytes - after.large_in_use_bytes, usable);
}

TEST(Reentry, DeferredSmallFreesComeBackOnTheNextSlowPath) {
  // Fill a class's cache past capacity from inside: overflows defer.
  std::vector<void*> blocks;
  for (int i = 0; i < 5000; ++i) blocks.push_back(malloc(200));
  uint64_t deferred_before = Stats().reentrant_frees_deferred;
  Reentered([&blocks] {
    for (void* p : blocks) free(p);
    return 0;
  });
  // 5000 objects never fit one cache: some frees overflowed and deferred.
  EXPECT_GT(Stats().reentrant_frees_deferred, deferred_before);
  EXPECT_FALSE(in::HasDeferredFrees());  // Stats() settled them
  // Every object is reusable and none is handed out twice.
  std::vector<char*> again;
  for (int i = 0; i < 5000; ++i) {
    auto* p = static_cast<char*>(malloc(200));
    ASSERT_NE(p, nullptr);
    memset(p, i & 0xff, 200);
    again.push_back(p);
  }
  for (int i = 0; i < 5000; ++i) {
    ASSERT_EQ(again[i][0], static_cast<char>(i & 0xff)) << i;
    ASSERT_EQ(again[i][199], static_cast<char>(i & 0xff)) << i;
  }
  for (char* p : again) free(p);
}

TEST(Reentry, SizedFreeOfAReentrantBlockIsSafe) {
  // A re-entrant block given back with a sized free joins the class's
  // caches as an ordinary object; it must stay usable and end unmapped,
  // never reaching the central free lists (which would call it an invalid
  // pointer: it belongs to no span).
  const uint64_t live_before = in::GetReentrantStats().live_blocks;
  std::vector<void*> blocks;
  for (int i = 0; i < 64; ++i) {
    void* p = Reentered([] { return malloc(1000); });
    ASSERT_NE(p, nullptr);
    blocks.push_back(p);
  }
  for (void* p : blocks) free_sized(p, 1000);
  // Half come back out of the caches (and must be usable); the rest stay
  // cached until the trim drains every cache down to the central heap.
  std::vector<char*> again;
  for (int i = 0; i < 32; ++i) {
    auto* p = static_cast<char*>(malloc(1000));
    ASSERT_NE(p, nullptr);
    memset(p, 0x7e, 1000);
    again.push_back(p);
  }
  for (char* p : again) free(p);
  malloc_trim(0);  // every cache this thread can reach goes down through the door
  EXPECT_EQ(in::GetReentrantStats().live_blocks, live_before);
}

TEST(Reentry, TableFullReturnsEnomemAndRecovers) {
  std::vector<void*> blocks;
  void* p;
  errno = 0;
  in::EnterAllocator();
  while ((p = malloc(kLarge)) != nullptr) {
    blocks.push_back(p);
    if (blocks.size() > static_cast<size_t>(in::kMaxReentrantBlocks)) break;
  }
  int error = errno;
  in::LeaveAllocator();
  EXPECT_EQ(p, nullptr);
  EXPECT_EQ(error, ENOMEM);
  EXPECT_LE(blocks.size(), static_cast<size_t>(in::kMaxReentrantBlocks));
  for (void* b : blocks) free(b);
  void* q = Reentered([] { return malloc(kLarge); });
  EXPECT_NE(q, nullptr);
  free(q);
}

// Many threads allocate and free re-entrant blocks at once: the slot table
// never hands one slot to two blocks and every block is unmapped at the end.
TEST(Reentry, ConcurrentSlotClaimsNeverCollide) {
  constexpr int kThreads = 16;
  constexpr int kRounds = 200;
  uint64_t live_before = in::GetReentrantStats().live_blocks;
  std::vector<pthread_t> threads(kThreads);
  std::vector<int> failures(kThreads, 0);
  for (int t = 0; t < kThreads; ++t) {
    pthread_create(
        &threads[t], nullptr,
        [](void* arg) -> void* {
          int* fail = static_cast<int*>(arg);
          for (int r = 0; r < kRounds; ++r) {
            void* blocks[4];
            for (void*& b : blocks) {
              b = Reentered([] { return malloc(kLarge); });
              if (b == nullptr) continue;
              *static_cast<void**>(b) = b;
            }
            for (void* b : blocks) {
              if (b == nullptr) continue;
              if (*static_cast<void**>(b) != b) ++*fail;
              if (in::ReentrantUsableSize(b) < kLarge) ++*fail;
              Reentered([b] {
                free(b);
                return 0;
              });
            }
          }
          return nullptr;
        },
        &failures[t]);
  }
  for (pthread_t t : threads) pthread_join(t, nullptr);
  for (int t = 0; t < kThreads; ++t) EXPECT_EQ(failures[t], 0) << t;
  EXPECT_EQ(in::GetReentrantStats().live_blocks, live_before);
}

}  // namespace
}  // namespace rseqmalloc_test
