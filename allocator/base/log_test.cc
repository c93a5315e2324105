#include "allocator/base/log.h"

#include <string>

#include <gtest/gtest.h>

namespace rseqmalloc::internal {
namespace {

std::string Text(const LogLine& line) { return std::string(line.data(), line.size()); }

TEST(LogLine, FormatsNumbersAndPointers) {
  LogLine line;
  line.Str("a=").Dec(0).Str(" b=").Dec(18446744073709551615ull).Str(" c=").SignedDec(-42)
      .Str(" p=").Hex(0xdeadbeef).Str(" z=").Hex(0);
  EXPECT_EQ(Text(line), "a=0 b=18446744073709551615 c=-42 p=0xdeadbeef z=0x0");
}

TEST(LogLine, PaddedDecimals) {
  LogLine line;
  line.PaddedDec(42, 5).Str("|").PaddedDec(0, 1).Str("|").PaddedDec(123456, 3);
  EXPECT_EQ(Text(line), "   42|0|123456");
}

TEST(LogLine, FixedPoint) {
  LogLine line;
  line.Fixed(12345, 2).Str(" ").Fixed(7, 3).Str(" ").Fixed(5, 0);
  EXPECT_EQ(Text(line), "123.45 0.007 5");
}

TEST(LogLine, TruncatesInsteadOfOverflowing) {
  LogLine line;
  std::string big(2000, 'x');
  line.Str(big.c_str());
  EXPECT_EQ(line.size(), 512u);
}

TEST(CrashWithPointer, PrintsOneLineNamingThePointer) {
  EXPECT_DEATH(CrashWithPointer("free(): invalid pointer", reinterpret_cast<void*>(0x1234)),
               "^rseqmalloc: free\\(\\): invalid pointer 0x1234\n$");
}

}  // namespace
}  // namespace rseqmalloc::internal
