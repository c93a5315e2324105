// Where the maintenance thread may start: from an allocation's slow path,
// never from free().
//
// glibc frees a dead thread's TLS (its dtv) from the next exiting thread
// while it holds its stack-cache lock (nptl-stack.c: __nptl_deallocate_stack
// -> __nptl_free_stacks -> _dl_deallocate_tls -> free), and pthread_create
// takes that same lock. A free() that started our thread there deadlocked
// its own thread, and every later pthread_create of the program with it
// (CPython's test_threading hung in start_new_thread that way, once in the
// CI of stop 24). The binary wraps pthread_create (BUILD: --wrap) and counts
// the calls made while a free() of this test runs.
#include <pthread.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <malloc.h>

#include "allocator/api/rseqmalloc.h"
#include "gtest/gtest.h"
#include "tests/util/test_util.h"

namespace {

std::atomic<int> g_created{0};
std::atomic<int> g_created_inside_free{0};
thread_local bool tls_inside_free = false;

void FreeMarked(void* p) {
  tls_inside_free = true;
  free(p);
  tls_inside_free = false;
}

}  // namespace

extern "C" int __real_pthread_create(pthread_t*, const pthread_attr_t*, void* (*)(void*), void*);
extern "C" int __wrap_pthread_create(pthread_t* thread, const pthread_attr_t* attr,
                                     void* (*start)(void*), void* arg) {
  g_created.fetch_add(1);
  if (tls_inside_free) g_created_inside_free.fetch_add(1);
  return __real_pthread_create(thread, attr, start, arg);
}

namespace rseqmalloc_test {
namespace {

constexpr size_t kBlock = 4 << 20;

rseqmalloc_release_stats ReleaseStats() {
  rseqmalloc_release_stats s;
  EXPECT_EQ(rseqmalloc_get_release_stats(&s), 0);
  return s;
}

std::atomic<bool> g_stop{false};

// Makes no allocator call: the process is multi-threaded, nothing more.
void* Idle(void*) {
  while (!g_stop.load()) usleep(1000);
  return nullptr;
}

TEST(MaintenanceStart, FreeNeverStartsTheThreadTheNextAllocationDoes) {
  void* a = malloc(kBlock);
  void* b = malloc(kBlock);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  memset(a, 1, kBlock);
  memset(b, 1, kBlock);
  // No free pages wait for their delay: nothing to start the thread for yet.
  malloc_trim(0);
  ASSERT_EQ(ReleaseStats().next_release_in_ms, UINT64_MAX);

  pthread_t idle;
  ASSERT_EQ(pthread_create(&idle, nullptr, Idle, nullptr), 0);
  ASSERT_EQ(ReleaseStats().background_running, 0u);

  // The first free gives the heap a deadline; the second then finds the
  // process multi-threaded with pages waiting: the condition to start.
  FreeMarked(a);
  ASSERT_NE(ReleaseStats().next_release_in_ms, UINT64_MAX);
  FreeMarked(b);
  EXPECT_EQ(g_created_inside_free.load(), 0) << "free() created a thread";
  EXPECT_EQ(ReleaseStats().background_running, 0u);

  // The next allocation's slow path starts it (so the frees above had
  // their chance to: the test can fail).
  const int created_before = g_created.load();
  free(malloc(kBlock));
  if (MaintenanceThreadAllowed()) {
    EXPECT_EQ(g_created.load(), created_before + 1);
    EXPECT_EQ(ReleaseStats().background_running, 1u);
  } else {
    EXPECT_EQ(g_created.load(), created_before);
    EXPECT_EQ(ReleaseStats().background_running, 0u);
  }
  EXPECT_EQ(g_created_inside_free.load(), 0);

  g_stop.store(true);
  ASSERT_EQ(pthread_join(idle, nullptr), 0);
}

}  // namespace
}  // namespace rseqmalloc_test
