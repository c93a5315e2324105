// A process started under an address-space limit (RLIMIT_AS) gets no flat
// class array (allocator/pages/pagemap.h: its 128 MiB of address space
// would eat into the limit), so every free() finds its class in the
// pagemap's leaves, out of line. The test re-executes itself with a limit set before the new
// image starts (the allocator decides at its first heap growth) and runs a
// cross-thread workload there over every size class; the child checks that
// no such mapping exists and that blocks and their sizes come back right.
// Without a limit, the same binary must have the flat array.
//
// TightLimits: a helper program (address_space_limit_helper.cc) runs under
// limits of 24, 40 and 160 MiB above its own size before it allocates,
// RLIMIT_AS and RLIMIT_DATA in turn. The
// allocator must set itself up in that room (its reservations shrink) and
// give address space back when a mapping is refused, so that blocks of
// changing sizes fit one after another (docs/reliability.md, "A low
// address-space limit").
#include <malloc.h>
#include <pthread.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "allocator/api/rseqmalloc.h"
#include "tests/util/test_util.h"

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
  // A limit this roomy leaves the per-CPU caches their regions (a sliver of
  // it): only a limit they would take a real share of gives thread caches.
  EXPECT_STREQ(rseqmalloc_mode(), rseqmalloc_test::ExpectedCacheMode());
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

std::string HelperPath(const char* name) {
  const char* srcdir = getenv("TEST_SRCDIR");
  const char* workspace = getenv("TEST_WORKSPACE");
  std::string rel = std::string("tests/faults/") + name;
  if (srcdir == nullptr || workspace == nullptr) return rel;
  return std::string(srcdir) + "/" + workspace + "/" + rel;
}

// Runs the helper with `args`, with `resource` limited to `limit` bytes (0:
// no limit); returns its wait status, and its standard output in *out.
int RunHelper(const std::string& path, const char* mode, const char* arg, int resource,
              rlim_t limit, std::string* out) {
  int pipe_fds[2];
  if (pipe(pipe_fds) != 0) return -1;
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    dup2(pipe_fds[1], 1);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
    if (limit != 0) {
      struct rlimit rl = {limit, limit};
      if (setrlimit(resource, &rl) != 0) _exit(90);
    }
    char* args[] = {const_cast<char*>(path.c_str()), const_cast<char*>(mode),
                    const_cast<char*>(arg), nullptr};
    execv(path.c_str(), args);
    _exit(91);
  }
  close(pipe_fds[1]);
  char buf[256];
  ssize_t n;
  while ((n = read(pipe_fds[0], buf, sizeof(buf))) > 0) out->append(buf, static_cast<size_t>(n));
  close(pipe_fds[0]);
  int status = 0;
  if (waitpid(pid, &status, 0) != pid) return -1;
  return status;
}


TEST(AddressSpaceLimit, TightLimits) {
  if (getenv(kChildVariable) != nullptr) GTEST_SKIP() << "the child itself";
  // The base: the helper's size on glibc's malloc before it allocates,
  // plus the difference in code (the whole file, to be generous).
  std::string measured;
  int status = RunHelper(HelperPath("address_space_limit_helper_glibc"), "measure", nullptr,
                         RLIMIT_AS, 0, &measured);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
  long base_kib = strtol(measured.c_str(), nullptr, 10);
  ASSERT_GT(base_kib, 0) << measured;
  std::string path = HelperPath("address_space_limit_helper");
  struct stat file;
  ASSERT_EQ(stat(path.c_str(), &file), 0) << path;
  rlim_t base = static_cast<rlim_t>(base_kib) * 1024 + static_cast<rlim_t>(file.st_size);
  // RLIMIT_DATA counts private writable mappings, reserved or not: the
  // allocator's reservations meet it as they meet RLIMIT_AS.
  for (int resource : {RLIMIT_AS, RLIMIT_DATA}) {
    const char* name = resource == RLIMIT_AS ? "RLIMIT_AS" : "RLIMIT_DATA";
    struct rlimit limit;
    ASSERT_EQ(getrlimit(resource, &limit), 0);
    // What the threads leave cached varies from run to run, so the tightest
    // limit runs a few times: a small block that did not drain the caches
    // before ENOMEM failed between one run in three and four in five there.
    struct Case {
      rlim_t headroom_mib;
      int runs;
    };
    for (Case c : {Case{24, 4}, Case{40, 1}, Case{160, 1}}) {
      rlim_t headroom_mib = c.headroom_mib;
      rlim_t headroom = headroom_mib << 20;
      rlim_t bytes = base + headroom;
      if (limit.rlim_max != RLIM_INFINITY && bytes > limit.rlim_max) continue;
      for (int run = 0; run < c.runs; ++run) {
        std::string ignored;
        status = RunHelper(path, "work", std::to_string(headroom).c_str(), resource, bytes,
                           &ignored);
        EXPECT_TRUE(WIFEXITED(status)) << name << ", " << headroom_mib
                                       << " MiB of headroom: signal "
                                       << (WIFSIGNALED(status) ? WTERMSIG(status) : 0);
        if (WIFEXITED(status)) {
          EXPECT_EQ(WEXITSTATUS(status), 0) << name << ", " << headroom_mib
                                            << " MiB of headroom, run " << run;
        }
      }
    }
  }
}

}  // namespace
