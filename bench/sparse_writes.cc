// sparse_writes: blocks the program allocates but hardly writes (buffers
// sized for the worst case, tables reserved ahead). Each round a thread
// allocates COUNT blocks of 8-128 KiB (log-uniform), writes one byte at the
// start of each, then frees them all. Only the pages written should be
// resident: an allocator that backs such blocks with huge pages (or writes
// them itself) makes the whole blocks resident. One op = one round.
//
//   sparse_writes --threads 1 --count 5000 --ms 300
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>

#include "bench/harness.h"

namespace rseqmalloc::bench {
namespace {

constexpr char kUsage[] =
    "usage: sparse_writes [--threads N] [--size SIZE] [--count COUNT] [--ms MILLISECONDS]\n"
    "  N threads each allocate COUNT blocks (default 5000) of SIZE (default\n"
    "  8K~128K), write one byte in each, then free them, over and over.\n";

int Main(int argc, char** argv) {
  Options options(argc, argv, kUsage);
  int threads = static_cast<int>(options.Int("threads", 1));
  SizeDist dist = options.Size("size", "8K~128K");
  int64_t count = options.Int("count", 5000);
  double seconds = static_cast<double>(options.Int("ms", 300)) / 1000.0;
  options.Finish();
  if (threads < 1) options.Fail("--threads must be at least 1");
  if (count < 1) options.Fail("--count must be at least 1");

  uint64_t ops = 0;
  double elapsed = RunTimed(
      threads, seconds,
      [&](int t, const std::atomic<bool>& stop) -> uint64_t {
        Rng rng(t + 1);
        auto blocks = std::make_unique<unsigned char*[]>(count);
        uint64_t rounds = 0;
        do {
          for (int64_t i = 0; i < count; ++i) {
            blocks[i] = static_cast<unsigned char*>(malloc(dist.Next(rng)));
            if (blocks[i] == nullptr) abort();
            blocks[i][0] = static_cast<unsigned char>(i);
          }
          for (int64_t i = 0; i < count; ++i) {
            if (blocks[i][0] != static_cast<unsigned char>(i)) abort();
            free(blocks[i]);
          }
          ++rounds;
        } while (!stop.load(std::memory_order_relaxed));
        return rounds;
      },
      &ops);

  ResultLine result("sparse_writes", options);
  result.AddThroughput(elapsed, ops);
  result.Print();
  return 0;
}

}  // namespace
}  // namespace rseqmalloc::bench

int main(int argc, char** argv) { return rseqmalloc::bench::Main(argc, argv); }
