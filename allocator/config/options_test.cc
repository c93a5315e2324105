#include "allocator/config/options.h"

#include <unistd.h>

#include <string>

#include <gtest/gtest.h>

namespace rseqmalloc::internal {
namespace {

// Runs ParseOptions on `env`, capturing what it prints through a pipe.
int Parse(std::initializer_list<const char*> vars, Options* out, std::string* printed) {
  std::vector<const char*> env(vars);
  env.push_back(nullptr);
  int fds[2];
  EXPECT_EQ(pipe(fds), 0);
  int bad = ParseOptions(env.data(), out, fds[1]);
  close(fds[1]);
  char buf[4096];
  ssize_t n = read(fds[0], buf, sizeof buf);
  close(fds[0]);
  printed->assign(buf, n > 0 ? static_cast<size_t>(n) : 0);
  return bad;
}

TEST(Options, DefaultsWhenNothingIsSet) {
  Options o;
  std::string printed;
  EXPECT_EQ(Parse({"PATH=/bin", "HOME=/root"}, &o, &printed), 0);
  EXPECT_EQ(o.cache, CacheMode::kAuto);
  EXPECT_EQ(o.per_cpu_cache_bytes, 1536u * 1024);
  EXPECT_EQ(o.per_cpu_cache_max_bytes, 6u * 1024 * 1024);
  EXPECT_FALSE(o.stats_at_exit);
  EXPECT_TRUE(o.abort_on_invalid_free);
  EXPECT_EQ(printed, "");
}

TEST(Options, ValidValuesAreApplied) {
  Options o;
  std::string printed;
  EXPECT_EQ(Parse({"RSEQMALLOC_CACHE=thread", "RSEQMALLOC_PER_CPU_CACHE_BYTES=256K",
                   "RSEQMALLOC_PER_CPU_CACHE_MAX_BYTES=2M",
                   "RSEQMALLOC_THREAD_CACHE_BYTES=4M", "RSEQMALLOC_RETAINED_FREE_BYTES=0",
                   "RSEQMALLOC_STATS=1", "RSEQMALLOC_VERBOSE=1",
                   "RSEQMALLOC_ABORT_ON_INVALID_FREE=0", "RSEQMALLOC_STATS_SIGNAL=12",
                   "RSEQMALLOC_CHECK_SIZED_FREE=1", "RSEQMALLOC_STATS_FILE=/tmp/report.%p",
                   "RSEQMALLOC_RELEASE_DELAY_MS=250", "RSEQMALLOC_BACKGROUND_THREAD=0"},
                  &o, &printed),
            0)
      << printed;
  EXPECT_EQ(o.cache, CacheMode::kThread);
  EXPECT_EQ(o.per_cpu_cache_bytes, 256u * 1024);
  EXPECT_EQ(o.per_cpu_cache_max_bytes, 2u * 1024 * 1024);
  EXPECT_EQ(o.thread_cache_bytes, 4u * 1024 * 1024);
  EXPECT_EQ(o.retained_free_bytes, 0u);
  EXPECT_TRUE(o.stats_at_exit);
  EXPECT_TRUE(o.verbose);
  EXPECT_FALSE(o.abort_on_invalid_free);
  EXPECT_EQ(o.stats_signal, 12);
  EXPECT_TRUE(o.check_sized_free);
  EXPECT_STREQ(o.stats_file, "/tmp/report.%p");
  EXPECT_EQ(o.release_delay_ms, 250u);
  EXPECT_FALSE(o.background_thread);
}

TEST(Options, ReleaseDefaults) {
  Options o;
  EXPECT_EQ(o.release_delay_ms, 5000u);
  EXPECT_TRUE(o.background_thread);
  EXPECT_EQ(o.retained_free_bytes, size_t{1} << 30);
  EXPECT_FALSE(o.huge_pages);
  std::string printed;
  EXPECT_EQ(Parse({"RSEQMALLOC_RELEASE_DELAY_MS=0", "RSEQMALLOC_HUGE_PAGES=1"}, &o, &printed), 0);
  EXPECT_EQ(o.release_delay_ms, 0u);
  EXPECT_TRUE(o.huge_pages);
}

TEST(Options, EveryCacheModeParses) {
  for (auto [text, mode] : {std::pair{"auto", CacheMode::kAuto}, {"cpu", CacheMode::kCpu},
                            {"cid", CacheMode::kCid}, {"thread", CacheMode::kThread},
                            {"none", CacheMode::kNone}}) {
    Options o;
    std::string printed;
    std::string var = std::string("RSEQMALLOC_CACHE=") + text;
    EXPECT_EQ(Parse({var.c_str()}, &o, &printed), 0);
    EXPECT_EQ(o.cache, mode);
    EXPECT_STREQ(CacheModeName(mode), text);
  }
}

TEST(Options, BadValueKeepsDefaultAndPrintsOneLineNamingVariable) {
  Options o;
  std::string printed;
  EXPECT_EQ(Parse({"RSEQMALLOC_CACHE=percpu"}, &o, &printed), 1);
  EXPECT_EQ(o.cache, CacheMode::kAuto);
  EXPECT_EQ(printed,
            "rseqmalloc: invalid RSEQMALLOC_CACHE=percpu (accepted: auto, cpu, cid, thread, "
            "none); keeping the default\n");
}

TEST(Options, RejectsMalformedAndOutOfRangeValues) {
  const char* bad[] = {"RSEQMALLOC_PER_CPU_CACHE_BYTES=", "RSEQMALLOC_PER_CPU_CACHE_BYTES=12Q",
                       "RSEQMALLOC_PER_CPU_CACHE_BYTES=1K",  // below 64K
                       "RSEQMALLOC_PER_CPU_CACHE_BYTES=99999999999999999999999",
                       "RSEQMALLOC_PER_CPU_CACHE_MAX_BYTES=65M",  // above 64M
                       "RSEQMALLOC_THREAD_CACHE_BYTES=1G", "RSEQMALLOC_STATS=yes",
                       "RSEQMALLOC_VERBOSE=", "RSEQMALLOC_NO_SUCH_THING=1",
                       "RSEQMALLOC_STATS_SIGNAL=65", "RSEQMALLOC_STATS_SIGNAL=9",
                       "RSEQMALLOC_STATS_SIGNAL=1K", "RSEQMALLOC_STATS_SIGNAL=",
                       "RSEQMALLOC_CHECK_SIZED_FREE=2", "RSEQMALLOC_STATS_FILE=",
                       "RSEQMALLOC_RELEASE_DELAY_MS=", "RSEQMALLOC_RELEASE_DELAY_MS=5s",
                       "RSEQMALLOC_RELEASE_DELAY_MS=3600001", "RSEQMALLOC_BACKGROUND_THREAD=yes",
                       "RSEQMALLOC_STATS_FILE=/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
                       "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"};
  for (const char* var : bad) {
    Options o;
    std::string printed;
    EXPECT_EQ(Parse({var}, &o, &printed), 1) << var;
    EXPECT_EQ(std::count(printed.begin(), printed.end(), '\n'), 1) << printed;
    EXPECT_EQ(o.per_cpu_cache_bytes, Options().per_cpu_cache_bytes) << var;
    EXPECT_EQ(o.per_cpu_cache_max_bytes, Options().per_cpu_cache_max_bytes) << var;
    EXPECT_EQ(o.stats_signal, 0) << var;
    EXPECT_FALSE(o.check_sized_free) << var;
    EXPECT_STREQ(o.stats_file, "") << var;
    EXPECT_EQ(o.release_delay_ms, Options().release_delay_ms) << var;
    EXPECT_TRUE(o.background_thread) << var;
  }
}

TEST(Options, PrintOptionsListsEveryVariable) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  PrintOptions(Options(), fds[1]);
  close(fds[1]);
  char buf[8192];
  ssize_t n = read(fds[0], buf, sizeof buf);
  close(fds[0]);
  std::string text(buf, n > 0 ? static_cast<size_t>(n) : 0);
  for (const char* name : {"RSEQMALLOC_CACHE=auto", "RSEQMALLOC_PER_CPU_CACHE_BYTES=1572864",
                           "RSEQMALLOC_PER_CPU_CACHE_MAX_BYTES=6291456",
                           "RSEQMALLOC_THREAD_CACHE_BYTES=", "RSEQMALLOC_RETAINED_FREE_BYTES=",
                           "RSEQMALLOC_STATS=0", "RSEQMALLOC_VERBOSE=0",
                           "RSEQMALLOC_ABORT_ON_INVALID_FREE=1", "RSEQMALLOC_CHECK_SIZED_FREE=0",
                           "RSEQMALLOC_STATS_SIGNAL=0", "RSEQMALLOC_STATS_FILE=",
                           "RSEQMALLOC_RELEASE_DELAY_MS=5000", "RSEQMALLOC_BACKGROUND_THREAD=1"}) {
    EXPECT_NE(text.find(name), std::string::npos) << name;
  }
}

}  // namespace
}  // namespace rseqmalloc::internal
