// Run by address_space_limit_test under a tight address-space limit
// (RLIMIT_AS, set before exec). Linked with rseqmalloc; allocates nothing
// before it is asked to, so "measure" reports the address space of the
// process before the allocator's first mapping.
//
//   measure       prints the process's VmSize in KiB and exits
//   work BYTES    BYTES is the headroom the limit leaves above that; the
//                 program allocates as a small program under such a limit
//                 would, and exits 0 when every allocation succeeded; then
//                 threads churn mixed sizes at the limit, where a refusal
//                 (ENOMEM) is allowed and a crash is not
//
// Exit codes name the step that failed (a crash is a failure too).
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>

namespace {

// VmSize from /proc/self/status, read without allocating.
long VmSizeKiB() {
  char buf[4096];
  int fd = open("/proc/self/status", O_RDONLY);
  if (fd < 0) return -1;
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  const char* line = strstr(buf, "VmSize:");
  return line == nullptr ? -1 : strtol(line + 7, nullptr, 10);
}

void Fail(const char* step, int code) {
  char line[160];
  int n = snprintf(line, sizeof(line), "address_space_limit_helper: %s failed\n", step);
  if (n > 0) write(2, line, static_cast<size_t>(n));
  _exit(code);
}

// Many small blocks: every one must come back.
void SmallBlocks(unsigned count, size_t size, int code) {
  void** blocks = static_cast<void**>(malloc(count * sizeof(void*)));
  if (blocks == nullptr) Fail("the array of small blocks", code);
  for (unsigned i = 0; i < count; ++i) {
    blocks[i] = malloc(size);
    if (blocks[i] == nullptr) Fail("a small block", code);
    memset(blocks[i], static_cast<int>(i), size);
  }
  for (unsigned i = 0; i < count; ++i) free(blocks[i]);
  free(blocks);
}

// Large blocks of growing sizes, one live at a time: the address space of
// the freed ones must serve the next.
void GrowingBlocks(size_t largest, int code) {
  for (int round = 0; round < 3; ++round) {
    for (size_t size = size_t{64} << 10; size <= largest; size += size / 3) {
      char* p = static_cast<char*>(malloc(size));
      if (p == nullptr) Fail("a large block", code);
      p[0] = 1;
      p[size - 1] = 1;
      free(p);
    }
  }
}

// Threads allocating and freeing mixed sizes (16 B - 4 KiB, every 50th up
// to 256 KiB) at the limit: a block may be refused, with ENOMEM, but every
// block handed out must be usable (the page heap unmaps free spans while
// other threads allocate and free).
constexpr int kChurnThreads = 4;
constexpr int kChurnBlocks = 1000;
int g_bad_refusals = 0;

void* Churn(void* arg) {
  uint32_t seed = static_cast<uint32_t>(reinterpret_cast<uintptr_t>(arg)) * 2654435761u + 1;
  void** blocks = static_cast<void**>(malloc(kChurnBlocks * sizeof(void*)));
  if (blocks == nullptr) return nullptr;
  for (int round = 0; round < 10; ++round) {
    for (int i = 0; i < kChurnBlocks; ++i) {
      seed = seed * 1664525u + 1013904223u;
      size_t size = 16 + (seed >> 20) * (i % 50 == 0 ? 64 : 1);
      errno = 0;
      blocks[i] = malloc(size);
      if (blocks[i] == nullptr) {
        if (errno != ENOMEM) __atomic_fetch_add(&g_bad_refusals, 1, __ATOMIC_RELAXED);
        continue;
      }
      memset(blocks[i], 1, size);
    }
    for (int i = 0; i < kChurnBlocks; ++i) free(blocks[i]);
  }
  free(blocks);
  return nullptr;
}

void ThreadedChurn(int code) {
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setstacksize(&attr, size_t{512} << 10);  // 8 MiB each would not fit
  pthread_t threads[kChurnThreads];
  int started = 0;
  for (int t = 0; t < kChurnThreads; ++t) {
    if (pthread_create(&threads[started], &attr, Churn,
                       reinterpret_cast<void*>(static_cast<uintptr_t>(t))) == 0) {
      ++started;
    }
  }
  for (int t = 0; t < started; ++t) pthread_join(threads[t], nullptr);
  if (started == 0) Fail("starting any churning thread", code);
  if (g_bad_refusals != 0) Fail("a refusal without ENOMEM", code);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc == 2 && strcmp(argv[1], "measure") == 0) {
    char line[32];
    int n = snprintf(line, sizeof(line), "%ld\n", VmSizeKiB());
    if (n > 0) write(1, line, static_cast<size_t>(n));
    return 0;
  }
  if (argc != 3 || strcmp(argv[1], "work") != 0) return 2;
  size_t headroom = strtoull(argv[2], nullptr, 10);
  SmallBlocks(100000, 16, 10);
  // First, while thread stacks still find room: the heap keeps what the
  // steps below free mapped, for reuse.
  ThreadedChurn(14);
  GrowingBlocks(headroom / 3, 11);
  // Small blocks filling a quarter of the headroom.
  SmallBlocks(static_cast<unsigned>(headroom / 4 / 100), 100, 12);
  // After the small blocks, a block as large as the biggest before.
  void* p = malloc(headroom / 3);
  if (p == nullptr) Fail("the last large block", 13);
  free(p);
  return 0;
}
