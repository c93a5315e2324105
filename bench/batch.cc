// batch: one thread allocates K blocks, then frees them all, over and over
// (a parser building a tree and dropping it, a request's temporary
// objects). Unlike `pair`, the cache must hold K objects and hand them out
// in a row: a per-CPU cache needs the capacity (and the refills) to do it.
// One op = one block allocated and freed.
//
//   batch --threads 1 --count 1000 --size 64 --ms 500
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "bench/harness.h"

namespace rseqmalloc::bench {
namespace {

constexpr char kUsage[] =
    "usage: batch [--threads N] [--count K] [--size SIZE] [--ms MILLISECONDS]\n"
    "  N threads each allocate K blocks (default 1000) of SIZE (default 64),\n"
    "  then free them in the same order, over and over.\n";

int Main(int argc, char** argv) {
  Options options(argc, argv, kUsage);
  int threads = static_cast<int>(options.Int("threads", 1));
  int64_t count = options.Int("count", 1000);
  SizeDist dist = options.Size("size", "64");
  double seconds = static_cast<double>(options.Int("ms", 500)) / 1000.0;
  options.Finish();
  if (threads < 1) options.Fail("--threads must be at least 1");
  if (count < 1 || count > (1 << 24)) options.Fail("--count must be 1..16M");

  uint64_t ops = 0;
  double elapsed = RunTimed(
      threads, seconds,
      [&](int t, const std::atomic<bool>& stop) -> uint64_t {
        Rng rng(t + 1);
        std::vector<size_t> sizes(static_cast<size_t>(count));
        for (size_t& s : sizes) s = dist.Next(rng);
        std::vector<void*> blocks(static_cast<size_t>(count));
        uint64_t n = 0;
        while (!stop.load(std::memory_order_relaxed)) {
          for (int64_t i = 0; i < count; ++i) {
            void* p = malloc(sizes[i]);
            if (p == nullptr) abort();
            *static_cast<volatile char*>(p) = 1;
            blocks[i] = p;
          }
          for (int64_t i = 0; i < count; ++i) free(blocks[i]);
          n += static_cast<uint64_t>(count);
        }
        return n;
      },
      &ops);

  ResultLine result("batch", options);
  result.AddThroughput(elapsed, ops);
  result.Print();
  return 0;
}

}  // namespace
}  // namespace rseqmalloc::bench

int main(int argc, char** argv) { return rseqmalloc::bench::Main(argc, argv); }
