// large_realloc: one buffer per thread grown by realloc in small steps to a
// large final size, as a program appending to a string, a byte array or a
// log does (CPython's bytes/str concatenation does exactly this). Every step
// writes its last byte. An allocator that copies the whole block on each
// step is quadratic here (growing to 32 MiB once took 29 s); growing in
// place, or moving with room to spare, keeps it linear. One op = one buffer
// grown from empty to --size.
//
//   large_realloc --threads 4 --size 64M --step 4K --ms 1000
#include <atomic>
#include <cstdint>
#include <cstdlib>

#include "bench/harness.h"

namespace rseqmalloc::bench {
namespace {

constexpr char kUsage[] =
    "usage: large_realloc [--threads N] [--size BYTES] [--step BYTES] [--ms MILLISECONDS]\n"
    "  N threads each grow a buffer by realloc in steps of STEP (default 4K)\n"
    "  to SIZE (default 64M), over and over; at least one growth each.\n";

int Main(int argc, char** argv) {
  Options options(argc, argv, kUsage);
  int threads = static_cast<int>(options.Int("threads", 1));
  SizeDist size = options.Size("size", "64M");
  SizeDist step = options.Size("step", "4K");
  double seconds = static_cast<double>(options.Int("ms", 1000)) / 1000.0;
  options.Finish();
  if (threads < 1) options.Fail("--threads must be at least 1");

  uint64_t ops = 0;
  double elapsed = RunTimed(
      threads, seconds,
      [&](int t, const std::atomic<bool>& stop) -> uint64_t {
        Rng rng(t + 1);
        uint64_t n = 0;
        do {
          size_t target = size.Next(rng);
          char* buf = nullptr;
          for (size_t len = 0; len < target;) {
            len += step.Next(rng);
            if (len > target) len = target;
            char* grown = static_cast<char*>(realloc(buf, len));
            if (grown == nullptr) abort();
            buf = grown;
            buf[len - 1] = static_cast<char>(len);
          }
          DoNotOptimize(buf);
          free(buf);
          ++n;
        } while (!stop.load(std::memory_order_relaxed));
        return n;
      },
      &ops);

  ResultLine result("large_realloc", options);
  result.AddThroughput(elapsed, ops);
  result.Print();
  return 0;
}

}  // namespace
}  // namespace rseqmalloc::bench

int main(int argc, char** argv) { return rseqmalloc::bench::Main(argc, argv); }
