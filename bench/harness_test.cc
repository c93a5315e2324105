#include "bench/harness.h"

#include <cstdint>
#include <cstdlib>

#include "gtest/gtest.h"

namespace rseqmalloc::bench {
namespace {

TEST(SizeDist, ParsesEveryForm) {
  SizeDist d;
  ASSERT_TRUE(SizeDist::Parse("64", &d));
  Rng rng(1);
  EXPECT_EQ(d.Next(rng), 64u);
  ASSERT_TRUE(SizeDist::Parse("8K", &d));
  EXPECT_EQ(d.Next(rng), 8192u);
  ASSERT_TRUE(SizeDist::Parse("1M", &d));
  EXPECT_EQ(d.max_size(), 1u << 20);
  ASSERT_TRUE(SizeDist::Parse("16-1024", &d));
  EXPECT_EQ(d.max_size(), 1024u);
  ASSERT_TRUE(SizeDist::Parse("256K~64M", &d));
  EXPECT_EQ(d.max_size(), 64u << 20);
  ASSERT_TRUE(SizeDist::Parse("mix", &d));
  ASSERT_TRUE(SizeDist::Parse("small", &d));
}

TEST(SizeDist, RejectsNonsense) {
  SizeDist d;
  EXPECT_FALSE(SizeDist::Parse("", &d));
  EXPECT_FALSE(SizeDist::Parse("0", &d));
  EXPECT_FALSE(SizeDist::Parse("abc", &d));
  EXPECT_FALSE(SizeDist::Parse("64Q", &d));
  EXPECT_FALSE(SizeDist::Parse("1024-16", &d));
  EXPECT_FALSE(SizeDist::Parse("-5", &d));
  // A failed parse leaves the old distribution in place.
  ASSERT_TRUE(SizeDist::Parse("64", &d));
  EXPECT_FALSE(SizeDist::Parse("x-y", &d));
  EXPECT_EQ(d.spec(), "64");
}

TEST(SizeDist, UniformStaysInBoundsAndCoversThem) {
  SizeDist d;
  ASSERT_TRUE(SizeDist::Parse("16-24", &d));
  Rng rng(7);
  bool seen[25] = {};
  for (int i = 0; i < 10000; ++i) {
    size_t s = d.Next(rng);
    ASSERT_GE(s, 16u);
    ASSERT_LE(s, 24u);
    seen[s] = true;
  }
  for (int s = 16; s <= 24; ++s) EXPECT_TRUE(seen[s]) << s;
}

TEST(SizeDist, LogUniformSpreadsOverOctaves) {
  SizeDist d;
  ASSERT_TRUE(SizeDist::Parse("1K~1M", &d));
  Rng rng(3);
  int below_32k = 0;
  constexpr int kDraws = 100000;
  for (int i = 0; i < kDraws; ++i) {
    size_t s = d.Next(rng);
    ASSERT_GE(s, 1024u);
    ASSERT_LE(s, 1u << 20);
    below_32k += s < (32u << 10);
  }
  // 5 of the 10 octaves lie below 32 KiB: about half the draws.
  EXPECT_NEAR(static_cast<double>(below_32k) / kDraws, 0.5, 0.02);
}

TEST(SizeDist, MixHasTheAdvertisedTiers) {
  SizeDist d;
  ASSERT_TRUE(SizeDist::Parse("mix", &d));
  Rng rng(11);
  int small = 0, medium = 0, large = 0;
  constexpr int kDraws = 200000;
  for (int i = 0; i < kDraws; ++i) {
    size_t s = d.Next(rng);
    ASSERT_GE(s, 8u);
    ASSERT_LE(s, 1u << 20);
    if (s <= 256) {
      ++small;
    } else if (s <= 8192) {
      ++medium;
    } else {
      ++large;
    }
  }
  EXPECT_NEAR(static_cast<double>(small) / kDraws, 0.80, 0.01);
  EXPECT_NEAR(static_cast<double>(medium) / kDraws, 0.19, 0.01);
  EXPECT_NEAR(static_cast<double>(large) / kDraws, 0.01, 0.002);
}

TEST(Rng, SeedsGiveDifferentStreams) {
  Rng a(1), b(2), a2(1);
  uint64_t x = a.Next();
  EXPECT_NE(x, b.Next());
  EXPECT_EQ(x, a2.Next());
}

TEST(Options, ReadsBothSpellingsAndDefaults) {
  const char* argv[] = {"prog", "--threads=3", "--size", "16-32", "--ms", "7"};
  Options o(6, const_cast<char**>(argv), "usage\n");
  EXPECT_EQ(o.Int("threads", 1), 3);
  EXPECT_EQ(o.Size("size", "64").max_size(), 32u);
  EXPECT_EQ(o.Int("ms", 500), 7);
  EXPECT_EQ(o.Int("live", 42), 42);
  o.Finish();
  ASSERT_EQ(o.used().size(), 4u);
  EXPECT_EQ(o.used()[0].first, "threads");
  EXPECT_EQ(o.used()[0].second, "3");
}

TEST(OptionsDeathTest, RejectsUnknownOptionsAndBadValues) {
  const char* unknown[] = {"prog", "--thraeds=3"};
  EXPECT_EXIT(
      {
        Options o(2, const_cast<char**>(unknown), "usage\n");
        o.Int("threads", 1);
        o.Finish();
      },
      testing::ExitedWithCode(2), "unknown option --thraeds");
  const char* bad[] = {"prog", "--threads=two"};
  EXPECT_EXIT(
      {
        Options o(2, const_cast<char**>(bad), "usage\n");
        o.Int("threads", 1);
      },
      testing::ExitedWithCode(2), "non-negative integer");
}

TEST(Rss, ReadingsAreSaneAndSeeTouchedMemory) {
  int64_t before = CurrentRssKib();
  ASSERT_GT(before, 0);
  constexpr size_t kBytes = 64 << 20;
  void* p = malloc(kBytes);
  ASSERT_NE(p, nullptr);
  TouchPages(p, kBytes);
  int64_t during = CurrentRssKib();
  EXPECT_GE(during - before, 60 << 10);  // at least ~60 of the 64 MiB
  EXPECT_GE(PeakRssKib(), during);
  free(p);
}

TEST(RunTimed, EveryThreadRunsAndOpsAddUp) {
  std::atomic<int> ran{0};
  uint64_t ops = 0;
  double elapsed = RunTimed(
      4, 0.02,
      [&](int t, const std::atomic<bool>& stop) -> uint64_t {
        ran.fetch_add(1);
        while (!stop.load()) {
        }
        return static_cast<uint64_t>(t + 1);
      },
      &ops);
  EXPECT_EQ(ran.load(), 4);
  EXPECT_EQ(ops, 10u);
  EXPECT_GE(elapsed, 0.02);
}

}  // namespace
}  // namespace rseqmalloc::bench
