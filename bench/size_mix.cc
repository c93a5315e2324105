// size_mix: one size distribution against the front-end caches. Each thread
// keeps its own small working set (default 32 live blocks) and replaces a
// random one per step with a block whose size comes from --size: one class
// ("64"), two populations ("bimodal": 80 % 16-64 B, 20 % 2-4 KiB), or every
// class up to 16 KiB ("16-16K"). Nothing crosses threads, so a per-thread
// cache serves this perfectly; a per-CPU cache must do as well whatever the
// number of classes in play, which is the point of the workload. Reports
// ns_per_op (per thread) beside the throughput.
//
//   size_mix --threads 1 --size 16-16K --live 32 --ms 500
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "bench/harness.h"

namespace rseqmalloc::bench {
namespace {

constexpr char kUsage[] =
    "usage: size_mix [--threads N] [--size SIZE] [--live K] [--ms MILLISECONDS]\n"
    "  N threads each replace random blocks of their own K (default 32) live\n"
    "  blocks with blocks of SIZE (default 16-16K; try 64, bimodal).\n";

int Main(int argc, char** argv) {
  Options options(argc, argv, kUsage);
  int threads = static_cast<int>(options.Int("threads", 1));
  SizeDist dist = options.Size("size", "16-16K");
  int64_t live = options.Int("live", 32);
  double seconds = static_cast<double>(options.Int("ms", 500)) / 1000.0;
  options.Finish();
  if (threads < 1) options.Fail("--threads must be at least 1");
  if (live < 1) options.Fail("--live must be at least 1");

  uint64_t ops = 0;
  double elapsed = RunTimed(
      threads, seconds,
      [&](int t, const std::atomic<bool>& stop) -> uint64_t {
        Rng rng(t + 1);
        std::vector<void*> blocks(static_cast<size_t>(live), nullptr);
        uint64_t n = 0;
        while (!stop.load(std::memory_order_relaxed)) {
          for (int i = 0; i < 64; ++i) {
            void*& slot = blocks[rng.Next() % blocks.size()];
            free(slot);
            size_t size = dist.Next(rng);
            slot = malloc(size);
            if (slot == nullptr) abort();
            *static_cast<char*>(slot) = static_cast<char>(size);
          }
          n += 64;
        }
        for (void* p : blocks) free(p);
        return n;
      },
      &ops);

  ResultLine result("size_mix", options);
  result.AddThroughput(elapsed, ops);
  result.Add("ns_per_op", ops == 0 ? 0.0 : elapsed * 1e9 * threads / static_cast<double>(ops));
  result.Print();
  return 0;
}

}  // namespace
}  // namespace rseqmalloc::bench

int main(int argc, char** argv) { return rseqmalloc::bench::Main(argc, argv); }
