// Out of memory: a child process limits its address space (RLIMIT_AS) to
// what it uses now plus 256 MiB, then
//  1. mallocs blocks of 1, 2, 4, ... MiB until one fails, then fills what is
//     left with halving sizes down to 16 bytes, until every size fails:
//     each failure must be NULL with errno == ENOMEM, never a crash;
//  2. in that exhausted state, on every CPU it may run on (it also hops
//     between them while it fills, so that every per-CPU cache has held
//     blocks of each size), every entry point fails the way C and C++
//     say: operator new throws std::bad_alloc, nothrow new returns nullptr,
//     calloc / aligned_alloc return NULL with ENOMEM, posix_memalign returns
//     ENOMEM and leaves its output alone, and a failed realloc leaves the old
//     block intact and usable;
//  3. frees everything, and the process recovers: the largest block that
//     fitted fits again, and every size up to 1 MiB (every size class) can
//     be allocated, written and freed.
// The checks run in the child and report with write(2) and the exit status
// (gtest cannot run there); the parent kills it at a deadline, so an
// allocator that loops or deadlocks when memory runs out fails cleanly.
#include <fcntl.h>
#include <malloc.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "gtest/gtest.h"
#include "tests/util/test_util.h"

namespace rseqmalloc_test {
namespace {

constexpr size_t kKiB = size_t{1} << 10;
constexpr size_t kMiB = size_t{1} << 20;
constexpr size_t kHeadroom = 256 * kMiB;
// A request no process under the limit can satisfy, whatever was freed.
constexpr size_t kBeyondLimit = 1024 * kMiB;
// Blocks the fill may hold: a 256 MiB room filled down from 1 MiB holds a
// few thousand; far more would mean the limit is not in force.
constexpr size_t kMaxHeld = size_t{1} << 18;

// Held blocks live outside the heap (static storage, counted in the address
// space before the limit is set), so the fill never needs malloc itself.
void* g_held[kMaxHeld];
size_t g_num_held = 0;

[[noreturn]] void ChildFail(const char* what, size_t value) {
  char line[256];
  int n = snprintf(line, sizeof(line), "oom_test child: %s (value %zu, errno %d)\n", what, value,
                   errno);
  if (n > 0) (void)!write(STDERR_FILENO, line, static_cast<size_t>(n));
  _exit(1);
}

#define CHILD_CHECK(cond, value)                  \
  do {                                            \
    if (!(cond)) ChildFail(#cond, (value));       \
  } while (0)

void ChildNote(const char* what, size_t value) {
  char line[160];
  int n = snprintf(line, sizeof(line), "oom_test child: %s %zu\n", what, value);
  if (n > 0) (void)!write(STDERR_FILENO, line, static_cast<size_t>(n));
}

size_t AddressSpaceBytes() {
  int fd = open("/proc/self/statm", O_RDONLY);
  if (fd < 0) ChildFail("open /proc/self/statm", 0);
  char buf[128] = {};
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) ChildFail("read /proc/self/statm", 0);
  return strtoull(buf, nullptr, 10) * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

void Hold(void* p) {
  CHILD_CHECK(g_num_held < kMaxHeld, g_num_held);
  g_held[g_num_held] = p;
  ++g_num_held;
}

// The CPUs the child may run on, and a move to the next one. The child
// hops while it fills, so that per-CPU caches other than the current one
// hold blocks of every size when memory runs out, and runs the phase-2
// checks on each CPU: a failure while another CPU's cache still holds the
// class is what it must not see (it did: operator new succeeded after
// malloc had failed, on the CPU it had last fetched blocks on).
constexpr int kMaxCpus = 8;
int g_cpus[kMaxCpus];
int g_num_cpus = 0;
int g_next_cpu = 0;

void FindCpus() { g_num_cpus = AllowedCpus(g_cpus, kMaxCpus); }

void MoveToNextCpu() {
  if (g_num_cpus < 2) return;
  (void)PinCallingThreadTo(g_cpus[g_next_cpu]);
  g_next_cpu = (g_next_cpu + 1) % g_num_cpus;
}

// malloc(size) until it fails; the failure must be NULL + ENOMEM.
size_t FillWith(size_t size) {
  size_t got = 0;
  for (;;) {
    errno = 0;
    void* p = malloc(size);
    if (p == nullptr) {
      CHILD_CHECK(errno == ENOMEM, size);
      return got;
    }
    Hold(p);
    if (++got % 64 == 0) MoveToNextCpu();
  }
}

// Phase 1. Returns the largest block that was granted.
size_t Exhaust(size_t* total_held) {
  size_t largest = 0;
  size_t size = kMiB;
  for (;; size *= 2) {
    errno = 0;
    void* p = malloc(size);
    if (p == nullptr) {
      CHILD_CHECK(errno == ENOMEM, size);
      break;
    }
    Hold(p);
    largest = size;
    *total_held += size;
  }
  CHILD_CHECK(largest >= kMiB, largest);  // the limit left room for something
  for (size /= 2; size >= 16; size /= 2) *total_held += FillWith(size) * size;
  return largest;
}

// Phase 2: every entry point, with memory exhausted for every size we tried.
void FailuresAreClean(void* old) {
  errno = 0;
  CHILD_CHECK(malloc(16) == nullptr && errno == ENOMEM, 16);
  errno = 0;
  CHILD_CHECK(malloc(kMiB) == nullptr && errno == ENOMEM, kMiB);

  bool threw = false;
  try {
    Escape(::operator new(4 * kKiB));
  } catch (const std::bad_alloc&) {
    threw = true;
  }
  CHILD_CHECK(threw, 4 * kKiB);
  threw = false;
  try {
    std::vector<char> v(kBeyondLimit);
    Escape(v.data());
  } catch (const std::bad_alloc&) {
    threw = true;
  }
  CHILD_CHECK(threw, kBeyondLimit);
  CHILD_CHECK(::operator new(64 * kKiB, std::nothrow) == nullptr, 64 * kKiB);
  CHILD_CHECK(::operator new[](kBeyondLimit, std::nothrow) == nullptr, kBeyondLimit);

  errno = 0;
  CHILD_CHECK(calloc(1, kMiB) == nullptr && errno == ENOMEM, kMiB);
  errno = 0;
  CHILD_CHECK(calloc(kBeyondLimit / 8, 8) == nullptr && errno == ENOMEM, kBeyondLimit);
  errno = 0;
  CHILD_CHECK(aligned_alloc(4096, kMiB) == nullptr && errno == ENOMEM, kMiB);

  void* out = &out;  // a value posix_memalign must not overwrite on failure
  CHILD_CHECK(posix_memalign(&out, 64, kMiB) == ENOMEM, kMiB);
  CHILD_CHECK(out == &out, 0);
  CHILD_CHECK(posix_memalign(&out, 4096, kBeyondLimit) == ENOMEM, kBeyondLimit);
  CHILD_CHECK(out == &out, 0);

  // A failed realloc leaves the old block as it was, still ours to use and
  // free.
  uint64_t key = PatternKey(old, kKiB, 7);
  FillPattern(old, kKiB, key);
  for (size_t grow_to : {kMiB, kBeyondLimit}) {
    errno = 0;
    void* q = realloc(old, grow_to);
    CHILD_CHECK(q == nullptr && errno == ENOMEM, grow_to);
    CHILD_CHECK(PatternIntact(Launder(old), kKiB, key), grow_to);
  }
  errno = 0;
  CHILD_CHECK(reallocarray(old, kBeyondLimit, 2) == nullptr && errno == ENOMEM, 2);
  CHILD_CHECK(PatternIntact(Launder(old), kKiB, key), 2);
}

// Phase 3.
void Recovers(size_t largest) {
  for (size_t i = g_num_held; i-- > 0;) free(g_held[i]);
  g_num_held = 0;

  void* big = malloc(largest);
  CHILD_CHECK(big != nullptr, largest);
  memset(big, 0x11, kMiB);  // touch its start only: RSS is not what is limited
  free(big);
  for (size_t size : SizeSpread(kMiB)) {
    void* a = malloc(size);
    void* b = calloc(1, size);
    CHILD_CHECK(a != nullptr && b != nullptr, size);
    memset(a, 0x22, size);
    CHILD_CHECK(static_cast<unsigned char*>(b)[size - 1] == 0, size);
    free(a);
    free(b);
  }
  auto* s = new std::vector<int>(100000, 3);
  CHILD_CHECK((*s)[99999] == 3, 0);
  delete s;
}

void ChildMain() {
  FindCpus();
  size_t limit = AddressSpaceBytes() + kHeadroom;
  struct rlimit rl = {limit, limit};
  CHILD_CHECK(setrlimit(RLIMIT_AS, &rl) == 0, limit);

  // The block a failed realloc must leave alone, taken before memory runs
  // out (glibc serves no small block at all once its heap cannot grow).
  void* old = malloc(kKiB);
  CHILD_CHECK(old != nullptr, kKiB);
  size_t total = 0;
  size_t largest = Exhaust(&total);
  ChildNote("largest block granted (bytes):", largest);
  ChildNote("bytes held when exhausted:", total);
  ChildNote("blocks held when exhausted:", g_num_held);
  // Half the headroom at least: the rest may go to the allocator's address
  // space reservations and metadata, but not more. (It may also be more
  // than the headroom: address space reserved before the limit, such as the
  // unused part of rseqmalloc's current 64 MiB chunk, is usable after it.)
  CHILD_CHECK(total >= kHeadroom / 2, total);

  for (int i = 0; i < (g_num_cpus < 2 ? 1 : g_num_cpus); ++i) {
    MoveToNextCpu();
    FailuresAreClean(old);
  }
  free(old);
  Recovers(largest);
  _exit(0);
}

// realloc grows a block that must move with a quarter more room than asked
// for; near the limit, where the room does not fit and the exact size does,
// it must still succeed. A 1 MiB block right after a 96 MiB one keeps the
// latter from growing in place (the check below says whether it moved).
void ReallocNearTheLimitChild() {
  constexpr size_t kBlock = 96 * kMiB;
  auto* p = static_cast<unsigned char*>(malloc(kBlock));
  void* after = malloc(kMiB);
  CHILD_CHECK(p != nullptr && after != nullptr, kBlock);
  p[0] = 0x5a;
  p[kBlock - 1] = 0xa5;
  // Room for the exact size (104 MiB) but not for the 120 MiB of room.
  size_t limit = AddressSpaceBytes() + 112 * kMiB;
  struct rlimit rl = {limit, limit};
  CHILD_CHECK(setrlimit(RLIMIT_AS, &rl) == 0, limit);
  auto* q = static_cast<unsigned char*>(realloc(p, kBlock + 8 * kMiB));
  CHILD_CHECK(q != nullptr, kBlock + 8 * kMiB);
  CHILD_CHECK(q[0] == 0x5a && q[kBlock - 1] == 0xa5, 0);
  ChildNote("the block moved (1) or grew in place (0):", q != p);
  free(q);
  free(after);
  _exit(0);
}

// Runs `child` (which ends in _exit) in a forked process; the child's checks
// report with write(2) and its exit status, and a child that hangs out of
// memory is killed at the deadline.
void RunInChild(void (*child)()) {
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) child();
  int status = 0;
  ASSERT_TRUE(WaitWithDeadline(pid, 60, &status)) << "the child hung out of memory: killed";
  ASSERT_TRUE(WIFEXITED(status)) << "the child died by signal "
                                 << (WIFSIGNALED(status) ? WTERMSIG(status) : 0)
                                 << " (its last lines are above)";
  EXPECT_EQ(WEXITSTATUS(status), 0) << "a check failed in the child (see its line above)";
}

TEST(OutOfMemory, ReallocThatMustMoveFitsWithoutItsRoom) { RunInChild(ReallocNearTheLimitChild); }

TEST(OutOfMemory, FailsCleanlyAndRecovers) { RunInChild(ChildMain); }

}  // namespace
}  // namespace rseqmalloc_test
