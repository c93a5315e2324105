// pair: the classic microbenchmark. Every thread mallocs an object, writes it
// and frees it at once, in a tight loop. It measures the allocator's fast path
// (and, with more threads than cores, how the fast path copes with preemption
// and with threads sharing a CPU's cache).
//
//   pair --threads 2 --size 64 --ms 500
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "bench/harness.h"

namespace rseqmalloc::bench {
namespace {

constexpr char kUsage[] =
    "usage: pair [--threads N] [--size SIZE] [--ms MILLISECONDS]\n"
    "  N threads each run malloc(SIZE) / write / free pairs for the duration.\n"
    "  SIZE: 64, 8K, 16-1024, small, mix (default 64).\n";

constexpr int kSizeTable = 1024;  // sizes drawn before the clock starts
constexpr int kBatch = 256;       // pairs between checks of the stop flag

int Main(int argc, char** argv) {
  Options options(argc, argv, kUsage);
  int threads = static_cast<int>(options.Int("threads", 1));
  SizeDist dist = options.Size("size", "64");
  double seconds = static_cast<double>(options.Int("ms", 500)) / 1000.0;
  options.Finish();
  if (threads < 1) options.Fail("--threads must be at least 1");

  std::vector<std::vector<size_t>> sizes(threads);
  for (int t = 0; t < threads; ++t) {
    Rng rng(t + 1);
    for (int i = 0; i < kSizeTable; ++i) sizes[t].push_back(dist.Next(rng));
  }

  uint64_t ops = 0;
  double elapsed = RunTimed(
      threads, seconds,
      [&](int t, const std::atomic<bool>& stop) -> uint64_t {
        const size_t* table = sizes[t].data();
        uint64_t n = 0;
        while (!stop.load(std::memory_order_relaxed)) {
          for (int i = 0; i < kBatch; ++i) {
            size_t size = table[(n + i) % kSizeTable];
            void* p = malloc(size);
            if (p == nullptr) abort();
            *static_cast<volatile char*>(p) = 1;
            DoNotOptimize(p);
            free(p);
          }
          n += kBatch;
        }
        return n;
      },
      &ops);

  ResultLine result("pair", options);
  result.AddThroughput(elapsed, ops);
  result.Print();
  return 0;
}

}  // namespace
}  // namespace rseqmalloc::bench

int main(int argc, char** argv) { return rseqmalloc::bench::Main(argc, argv); }
