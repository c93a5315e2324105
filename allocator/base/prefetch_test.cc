#include "allocator/base/prefetch.h"

#include <fstream>
#include <sstream>
#include <string>

#include "gtest/gtest.h"

namespace rseqmalloc::internal {
namespace {

// The kernel reads the same CPUID bit and lists it as "3dnowprefetch".
TEST(Prefetch, DetectionAgreesWithTheKernel) {
  std::ifstream cpuinfo("/proc/cpuinfo");
  if (!cpuinfo) GTEST_SKIP() << "no /proc/cpuinfo";
  std::string line;
  bool found_flags = false;
  bool kernel_says = false;
  while (std::getline(cpuinfo, line)) {
    if (line.rfind("flags", 0) != 0) continue;
    found_flags = true;
    std::istringstream words(line.substr(line.find(':') + 1));
    std::string word;
    while (words >> word) kernel_says |= word == "3dnowprefetch";
    break;
  }
  if (!found_flags) GTEST_SKIP() << "no flags line in /proc/cpuinfo";
  EXPECT_EQ(CpuHasPrefetchW(), kernel_says);
}

}  // namespace
}  // namespace rseqmalloc::internal
