// large_calloc: calloc of large blocks that the program then uses sparsely
// (a hash table or bitmap allocated zeroed and filled as it goes), freed and
// asked for again. Fresh pages read as zero already; an allocator that
// writes zeros into them anyway pays for every page in time and resident
// memory (calloc(1 GiB) made 1 GiB resident). One op = one calloc, a write
// to one byte in every 64 pages, one free.
//
//   large_calloc --threads 1 --size 64M --ms 500
#include <atomic>
#include <cstdint>
#include <cstdlib>

#include "bench/harness.h"

namespace rseqmalloc::bench {
namespace {

constexpr char kUsage[] =
    "usage: large_calloc [--threads N] [--size SIZE] [--ms MILLISECONDS]\n"
    "  N threads each calloc a block of SIZE (default 64M), write one byte\n"
    "  in every 64 pages, check a zero, free it, over and over.\n";

constexpr size_t kStride = 64 * 4096;

int Main(int argc, char** argv) {
  Options options(argc, argv, kUsage);
  int threads = static_cast<int>(options.Int("threads", 1));
  SizeDist dist = options.Size("size", "64M");
  double seconds = static_cast<double>(options.Int("ms", 500)) / 1000.0;
  options.Finish();
  if (threads < 1) options.Fail("--threads must be at least 1");

  uint64_t ops = 0;
  double elapsed = RunTimed(
      threads, seconds,
      [&](int t, const std::atomic<bool>& stop) -> uint64_t {
        Rng rng(t + 1);
        uint64_t n = 0;
        do {
          size_t size = dist.Next(rng);
          auto* p = static_cast<unsigned char*>(calloc(1, size));
          if (p == nullptr) abort();
          for (size_t off = 0; off < size; off += kStride) {
            if (p[off] != 0) abort();  // calloc must zero
            p[off] = 1;
          }
          if (p[size - 1] != 0) abort();
          free(p);
          ++n;
        } while (!stop.load(std::memory_order_relaxed));
        return n;
      },
      &ops);

  ResultLine result("large_calloc", options);
  result.AddThroughput(elapsed, ops);
  result.Print();
  return 0;
}

}  // namespace
}  // namespace rseqmalloc::bench

int main(int argc, char** argv) { return rseqmalloc::bench::Main(argc, argv); }
