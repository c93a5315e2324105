// realloc_growth: buffers that grow a little at a time, as parsers, string
// builders and log formatters grow them. Each thread, in turn: a C buffer
// grown by realloc in steps of 1-32 bytes, a std::string appended in chunks,
// and a std::vector<uint32_t> grown by push_back, each to a final length drawn
// from --size (default 1-64K bytes). It measures in-place growth and the cost
// of moving between size classes. One op = one buffer grown to its length.
//
//   realloc_growth --threads 2 --size 1-64K --ms 500
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "bench/harness.h"

namespace rseqmalloc::bench {
namespace {

constexpr char kUsage[] =
    "usage: realloc_growth [--threads N] [--size SIZE] [--ms MILLISECONDS]\n"
    "  N threads grow buffers to lengths drawn from SIZE (default 1-64K) by\n"
    "  realloc, std::string::append and std::vector::push_back.\n";

void GrowWithRealloc(Rng& rng, size_t target) {
  char* buf = nullptr;
  size_t len = 0;
  while (len < target) {
    size_t step = rng.Uniform(1, 32);
    char* grown = static_cast<char*>(realloc(buf, len + step));
    if (grown == nullptr) abort();
    buf = grown;
    memset(buf + len, 'a', step);
    len += step;
  }
  DoNotOptimize(buf);
  free(buf);
}

void GrowString(Rng& rng, size_t target) {
  static constexpr char kText[] = "0123456789abcdefghijklmnopqrstuvwxyz";
  std::string s;
  while (s.size() < target) s.append(kText, rng.Uniform(1, sizeof(kText) - 1));
  DoNotOptimize(s.data());
}

void GrowVector(size_t target) {
  std::vector<uint32_t> v;
  for (uint32_t i = 0; i * sizeof(uint32_t) < target; ++i) v.push_back(i);
  DoNotOptimize(v.data());
}

int Main(int argc, char** argv) {
  Options options(argc, argv, kUsage);
  int threads = static_cast<int>(options.Int("threads", 1));
  SizeDist dist = options.Size("size", "1-64K");
  double seconds = static_cast<double>(options.Int("ms", 500)) / 1000.0;
  options.Finish();
  if (threads < 1) options.Fail("--threads must be at least 1");

  uint64_t ops = 0;
  double elapsed = RunTimed(
      threads, seconds,
      [&](int t, const std::atomic<bool>& stop) -> uint64_t {
        Rng rng(t + 1);
        uint64_t n = 0;
        while (!stop.load(std::memory_order_relaxed)) {
          size_t target = dist.Next(rng);
          switch (n % 3) {
            case 0:
              GrowWithRealloc(rng, target);
              break;
            case 1:
              GrowString(rng, target);
              break;
            default:
              GrowVector(target);
              break;
          }
          ++n;
        }
        return n;
      },
      &ops);

  ResultLine result("realloc_growth", options);
  result.AddThroughput(elapsed, ops);
  result.Print();
  return 0;
}

}  // namespace
}  // namespace rseqmalloc::bench

int main(int argc, char** argv) { return rseqmalloc::bench::Main(argc, argv); }
