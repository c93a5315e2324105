#include "rseq/cpus.h"

#include <sched.h>

#include <cstring>

#include "gtest/gtest.h"

namespace rseqmalloc::rseq {
namespace {

int Parse(const char* text) {
  return internal::ParseCpuListEnd(text, static_cast<int>(std::strlen(text)));
}

TEST(CpusTest, ParsesKernelCpuLists) {
  EXPECT_EQ(Parse("0\n"), 1);
  EXPECT_EQ(Parse("0-1\n"), 2);
  EXPECT_EQ(Parse("0-3,8-11\n"), 12);
  EXPECT_EQ(Parse("0,2,4-5"), 6);
  EXPECT_EQ(Parse("0-1023\n"), 1024);
}

TEST(CpusTest, RejectsMalformedLists) {
  EXPECT_EQ(Parse(""), -1);
  EXPECT_EQ(Parse("x"), -1);
  EXPECT_EQ(Parse("0-a"), -1);
  EXPECT_EQ(Parse(",1"), -1);
}

TEST(CpusTest, CountsAreConsistent) {
  EXPECT_GE(AllowedCpuCount(), 1);
  EXPECT_GE(NumPossibleCpus(), AllowedCpuCount());
  EXPECT_LT(sched_getcpu(), NumPossibleCpus());
}

}  // namespace
}  // namespace rseqmalloc::rseq
