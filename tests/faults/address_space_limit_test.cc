// A process started under an address-space limit (RLIMIT_AS) gets no flat
// class array (allocator/pages/pagemap.h: its 128 MiB of address space
// would eat into the limit), so every free() finds its class in the
// pagemap's leaves, out of line. The test re-executes itself with a limit set before the new
// image starts (the allocator decides at its first heap growth) and runs a
// cross-thread workload there over every size class; the child checks that
// no such mapping exists and that blocks and their sizes come back right.
// Without a limit, the same binary must have the flat array.
#include <malloc.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

namespace {

constexpr char kChildVariable[] = "ADDRESS_SPACE_LIMIT_TEST_CHILD";
// Finite but far above what the workload needs: any finite limit must do.
constexpr rlim_t kLimit = rlim_t{64} << 30;

// Whether the flat class array is mapped: an anonymous read-only mapping of
// at least 32 MiB (it is 128 MiB, split where parts became writable; the
// heap is written where it covers, near the middle).
bool HasFlatClassArray() {
  FILE* maps = fopen("/proc/self/maps", "r");
  if (maps == nullptr) return false;
  bool found = false;
  unsigned long long begin, end;
  char perms[8];
  char rest[512];
  while (fscanf(maps, "%llx-%llx %7s", &begin, &end, perms) == 3) {
    if (fgets(rest, sizeof(rest), maps) == nullptr) break;
    // rest: " offset dev inode [path]\n"; anonymous mappings have no path.
    bool anonymous = strchr(rest, '/') == nullptr && strchr(rest, '[') == nullptr;
    if (anonymous && strcmp(perms, "r--p") == 0 && end - begin >= (32ull << 20)) found = true;
  }
  fclose(maps);
  return found;
}

size_t SizeOf(unsigned i) {
  // Every class up to 256 KiB and some large blocks: 16 B .. 512 KiB.
  unsigned shift = 4 + i % 15;
  return (size_t{1} << shift) + (i * 37) % (size_t{1} << shift);
}

void Fill(void* p, size_t size, unsigned char tag) {
  memset(p, tag, size < 64 ? size : 64);
}

bool Holds(const void* p, size_t size, unsigned char tag) {
  const unsigned char* c = static_cast<const unsigned char*>(p);
  for (size_t i = 0; i < (size < 64 ? size : 64); ++i) {
    if (c[i] != tag) return false;
  }
  return true;
}

// Pairs of threads: each allocates, the other checks and frees.
void CrossThreadWorkload() {
  constexpr int kThreads = 4;
  constexpr unsigned kBlocks = 600;
  constexpr int kRounds = 10;
  struct Box {
    std::atomic<void**> blocks{nullptr};
  };
  std::vector<Box> boxes(kThreads);
  std::atomic<int> bad{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      unsigned char tag = static_cast<unsigned char>(t + 1);
      for (int round = 0; round < kRounds; ++round) {
        void** mine = static_cast<void**>(malloc(kBlocks * sizeof(void*)));
        for (unsigned i = 0; i < kBlocks; ++i) {
          size_t size = SizeOf(i + round);
          mine[i] = malloc(size);
          if (mine[i] == nullptr || malloc_usable_size(mine[i]) < size) {
            bad.fetch_add(1);
            continue;
          }
          Fill(mine[i], size, tag);
        }
        // Hand them to the next thread; free what the previous one handed us.
        void** expected = nullptr;
        while (!boxes[(t + 1) % kThreads].blocks.compare_exchange_weak(expected, mine)) {
          expected = nullptr;
          std::this_thread::yield();
        }
        void** theirs;
        while ((theirs = boxes[t].blocks.exchange(nullptr)) == nullptr) std::this_thread::yield();
        unsigned char their_tag = static_cast<unsigned char>((t + kThreads - 1) % kThreads + 1);
        for (unsigned i = 0; i < kBlocks; ++i) {
          if (theirs[i] == nullptr) continue;
          if (!Holds(theirs[i], SizeOf(i + round), their_tag)) bad.fetch_add(1);
          free(theirs[i]);
        }
        free(theirs);
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(bad.load(), 0);
}

TEST(AddressSpaceLimit, ChildWorkload) {
  if (getenv(kChildVariable) == nullptr) GTEST_SKIP() << "runs in the child of LimitedChild";
  struct rlimit limit;
  ASSERT_EQ(getrlimit(RLIMIT_AS, &limit), 0);
  ASSERT_EQ(limit.rlim_cur, kLimit);
  CrossThreadWorkload();
  EXPECT_FALSE(HasFlatClassArray());
}

TEST(AddressSpaceLimit, LimitedChild) {
  if (getenv(kChildVariable) != nullptr) GTEST_SKIP() << "the child itself";
  pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    struct rlimit limit = {kLimit, kLimit};
    if (setrlimit(RLIMIT_AS, &limit) != 0) _exit(90);
    setenv(kChildVariable, "1", 1);
    // The child is a second gtest run: its files must not be the parent's.
    unsetenv("TEST_PREMATURE_EXIT_FILE");
    unsetenv("XML_OUTPUT_FILE");
    unsetenv("GTEST_OUTPUT");
    char* args[] = {const_cast<char*>("/proc/self/exe"),
                    const_cast<char*>("--gtest_filter=AddressSpaceLimit.ChildWorkload"), nullptr};
    execv("/proc/self/exe", args);
    _exit(91);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

TEST(AddressSpaceLimit, UnlimitedHasTheFlatArray) {
  if (getenv(kChildVariable) != nullptr) GTEST_SKIP() << "the child itself";
  struct rlimit limit;
  ASSERT_EQ(getrlimit(RLIMIT_AS, &limit), 0);
  if (limit.rlim_cur != RLIM_INFINITY) GTEST_SKIP() << "this run has an address-space limit";
  CrossThreadWorkload();
  EXPECT_TRUE(HasFlatClassArray());
}

}  // namespace
