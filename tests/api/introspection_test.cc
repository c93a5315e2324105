// Statistics and tuning entry points: mallinfo, mallinfo2, malloc_stats,
// malloc_info, mallopt, malloc_trim.
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/api/api_declarations.h"
#include "tests/util/test_util.h"

namespace rseqmalloc_test {
namespace {

constexpr size_t kMiB = size_t{1} << 20;
// 10 MiB live as many small blocks: glibc counts mmapped (large) blocks in
// hblkhd, not in arena / uordblks, so small blocks are the portable probe.
constexpr size_t kBlockSize = 256;
constexpr size_t kBlocks = 10 * kMiB / kBlockSize;

std::string ReadAll(int fd) {
  std::string out;
  lseek(fd, 0, SEEK_SET);
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) out.append(buf, n);
  return out;
}

// Runs fn with file descriptor 2 sent to a temporary file; returns the text.
template <typename Fn>
std::string CaptureStderr(Fn fn) {
  char path[] = "/tmp/rseqmalloc_stderr_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return "<mkstemp failed>";
  unlink(path);
  fflush(stderr);
  int saved = dup(2);
  dup2(fd, 2);
  fn();
  fflush(stderr);
  dup2(saved, 2);
  close(saved);
  std::string text = ReadAll(fd);
  close(fd);
  return text;
}

std::vector<void*> AllocateLive() {
  std::vector<void*> blocks(kBlocks);
  for (void*& p : blocks) {
    p = malloc(kBlockSize);
    std::memset(p, 0x42, kBlockSize);
  }
  return blocks;
}

TEST(Mallinfo2, CountsTenMebibytesLiveAndTheirRelease) {
  struct mallinfo2 before = mallinfo2();
  std::vector<void*> blocks = AllocateLive();
  struct mallinfo2 live = mallinfo2();
  EXPECT_GE(live.uordblks, before.uordblks + 9 * kMiB)
      << "before " << before.uordblks << " live " << live.uordblks;
  EXPECT_GE(live.arena, 10 * kMiB);
  EXPECT_GE(live.arena, live.uordblks) << "in use exceeds what was obtained";
  for (void* p : blocks) free(p);
  struct mallinfo2 after = mallinfo2();
  EXPECT_LE(after.uordblks + 9 * kMiB, live.uordblks)
      << "live " << live.uordblks << " after free " << after.uordblks;
}

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
TEST(Mallinfo, IntFieldsTrackLiveBytes) {
  struct mallinfo before = mallinfo();
  std::vector<void*> blocks = AllocateLive();
  struct mallinfo live = mallinfo();
  EXPECT_GE(static_cast<long>(live.uordblks),
            static_cast<long>(before.uordblks) + static_cast<long>(9 * kMiB));
  EXPECT_GE(live.arena, live.uordblks);
  for (void* p : blocks) free(p);
}
#pragma GCC diagnostic pop

TEST(MallocStats, WritesToStderr) {
  void* keep = malloc(1000);
  std::string text = CaptureStderr([] { malloc_stats(); });
  free(keep);
  EXPECT_FALSE(text.empty()) << "malloc_stats wrote nothing to stderr";
}

TEST(MallocInfo, WritesXml) {
  FILE* f = tmpfile();
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(malloc_info(0, f), 0);
  fflush(f);
  std::string text = ReadAll(fileno(f));
  fclose(f);
  size_t first = text.find_first_not_of(" \t\r\n");
  ASSERT_NE(first, std::string::npos) << "malloc_info wrote nothing";
  EXPECT_EQ(text[first], '<') << text;
  EXPECT_NE(text.find("malloc"), std::string::npos) << text;
  EXPECT_TRUE(text.find("</") != std::string::npos ||
              text.find("/>") != std::string::npos)
      << "no closing tag: " << text;
}

TEST(MallocInfo, NonZeroOptionsGiveEinval) {
  // glibc reserves `options` and rejects anything but 0.
  FILE* f = tmpfile();
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(malloc_info(1, f), EINVAL);
  fclose(f);
}

TEST(Mallopt, ReturnsZeroOrOneAndKeepsMallocWorking) {
  const std::pair<int, int> settings[] = {
      {M_MXFAST, 64},
      {M_TRIM_THRESHOLD, 128 * 1024},
      {M_TOP_PAD, 0},
      {M_MMAP_THRESHOLD, 128 * 1024},
      {M_MMAP_MAX, 65536},
      {M_ARENA_TEST, 8},
      {M_ARENA_MAX, 8},
      {M_PERTURB, 0},
      {M_CHECK_ACTION, 3},
      {12345, 1},  // unknown parameter
      {-100, 0},  // unknown parameter
  };
  for (auto [param, value] : settings) {
    int r = mallopt(param, value);
    EXPECT_TRUE(r == 0 || r == 1) << "mallopt(" << param << ") = " << r;
    void* p = malloc(100 + param % 50);
    ASSERT_NE(p, nullptr);
    free(p);
  }
}

// glibc's own tests (tst-malloc-thread-exit, tst-malloc-fork-deadlock, ...)
// and programs that tune glibc abort when mallopt fails: every documented
// parameter gets glibc 2.36's answer, which the glibc variant proves.
TEST(Mallopt, DocumentedParametersGetGlibcsAnswer) {
  struct Case {
    int param;
    int value;
    int expected;
  };
  const Case cases[] = {
      {M_MXFAST, 64, 1},      {M_MXFAST, 0, 1},
      {M_MXFAST, 160, 1},     {M_MXFAST, 161, 0},  // above glibc's MAX_FAST_SIZE
      {M_MXFAST, -1, 0},      {M_TRIM_THRESHOLD, 128 * 1024, 1},
      {M_TOP_PAD, 4096, 1},   {M_MMAP_THRESHOLD, 128 * 1024, 1},
      {M_MMAP_THRESHOLD, 1 << 30, 1},
      {M_MMAP_MAX, 0, 1},     {M_MMAP_MAX, 65536, 1},
      {M_CHECK_ACTION, 3, 1}, {M_PERTURB, 0xA5, 1},
      {M_PERTURB, 0, 1},      {M_ARENA_TEST, 8, 1},
      {M_ARENA_TEST, 0, 1},   {M_ARENA_MAX, 1, 1},
      {M_ARENA_MAX, 0, 1},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(mallopt(c.param, c.value), c.expected)
        << "mallopt(" << c.param << ", " << c.value << ")";
  }
  void* p = malloc(1000);
  ASSERT_NE(p, nullptr);
  free(p);
}

#ifndef RSEQMALLOC_TEST_GLIBC
// glibc 2.36 answers 1 even for a parameter it does not know (its manual
// says 0 on error); we answer 0, so a typo in a tuning call is visible.
TEST(Mallopt, UnknownParameterGetsZero) {
  EXPECT_EQ(mallopt(12345, 1), 0);
  EXPECT_EQ(mallopt(-100, 0), 0);
}
#endif

// A stream with no file descriptor behind it (open_memstream, fmemopen)
// gets the XML too: it is written through the FILE*, as glibc does.
TEST(MallocInfo, WritesToAMemoryStream) {
  char* buf = nullptr;
  size_t len = 0;
  FILE* f = open_memstream(&buf, &len);
  ASSERT_NE(f, nullptr);
  fputs("before;", f);
  EXPECT_EQ(malloc_info(0, f), 0);
  fputs(";after", f);
  ASSERT_EQ(fclose(f), 0);
  std::string text(buf, len);
  free(buf);
  EXPECT_EQ(text.rfind("before;<", 0), 0u) << text;
  EXPECT_NE(text.find("malloc"), std::string::npos) << text;
  EXPECT_EQ(text.substr(text.size() - 6), ";after") << text;
}

TEST(MallocInfo, WritesToAFixedBufferStream) {
  char buf[64 * 1024] = {};
  FILE* f = fmemopen(buf, sizeof(buf) - 1, "w");
  ASSERT_NE(f, nullptr);
  EXPECT_EQ(malloc_info(0, f), 0);
  ASSERT_EQ(fclose(f), 0);
  std::string text(buf);
  EXPECT_NE(text.find("<malloc"), std::string::npos) << text;
  EXPECT_NE(text.find("</malloc>"), std::string::npos) << text;
}

TEST(MallocTrim, ReturnsZeroOrOne) {
  int r = malloc_trim(0);
  EXPECT_TRUE(r == 0 || r == 1) << r;
  r = malloc_trim(64 * 1024);
  EXPECT_TRUE(r == 0 || r == 1) << r;
}

// A program that frees everything must see its resident memory fall once it
// asks for it (DESIGN.md, "Memory return").
TEST(MallocTrim, ReleasesFreedSmallBlocks) {
  constexpr size_t kTotal = 128 * kMiB;
  constexpr size_t kSize = 512;
  std::vector<void*> blocks(kTotal / kSize);
  for (void*& p : blocks) {
    p = malloc(kSize);
    ASSERT_NE(p, nullptr);
    std::memset(p, 0x33, kSize);
  }
  size_t peak = CurrentRssBytes();
  for (void* p : blocks) free(p);
  int r = malloc_trim(0);
  EXPECT_TRUE(r == 0 || r == 1);
  size_t after = CurrentRssBytes();
  EXPECT_LT(after + 64 * kMiB, peak)
      << "RSS " << peak / kMiB << " MiB at peak, " << after / kMiB
      << " MiB after freeing 128 MiB and malloc_trim(0)";
}

// None of these is a cancellation point: a thread with a cancellation
// pending gets its answer and is cancelled at its next cancellation point.
// (They read /proc and write reports with calls that are: acted on inside
// a noexcept function, the cancellation called std::terminate.)
std::atomic<bool> g_go{false};
std::atomic<int> g_calls_returned{0};

void* CallsWithCancellationPending(void*) {
  while (!g_go.load()) {
  }
  mallinfo2();
  g_calls_returned.fetch_add(1);
  malloc_stats();
  g_calls_returned.fetch_add(1);
  malloc_trim(0);
  g_calls_returned.fetch_add(1);
#ifndef RSEQMALLOC_TEST_GLIBC  // glibc's malloc_info may act on it (fprintf)
  char buffer[1 << 16];
  if (FILE* f = fmemopen(buffer, sizeof buffer, "w")) {
    malloc_info(0, f);
    g_calls_returned.fetch_add(1);
    fclose(f);  // a cancellation point: may be where it acts
  }
#else
  g_calls_returned.fetch_add(1);
#endif
  pthread_testcancel();
  return nullptr;
}

TEST(Introspection, NoCallIsACancellationPoint) {
  pthread_t thread;
  ASSERT_EQ(pthread_create(&thread, nullptr, CallsWithCancellationPending, nullptr), 0);
  ASSERT_EQ(pthread_cancel(thread), 0);  // pending: the thread is spinning
  CaptureStderr([&thread] {  // malloc_stats writes its report there
    g_go.store(true);
    void* result = nullptr;
    pthread_join(thread, &result);
    EXPECT_EQ(result, PTHREAD_CANCELED);
  });
  EXPECT_EQ(g_calls_returned.load(), 4);
}

}  // namespace
}  // namespace rseqmalloc_test
