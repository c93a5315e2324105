// large: allocations of 256 KiB to 64 MiB (log-uniform), every page written,
// then freed while a couple of others are still live. This is the page-level
// path: mmap/munmap, page caching, huge-page alignment and how fast memory
// goes back to the OS. Page faults on fresh memory dominate unless the
// allocator reuses pages it already has, which then shows up in RSS instead.
//
//   large --threads 1 --size 256K~64M --live 2 --ms 500
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "bench/harness.h"

namespace rseqmalloc::bench {
namespace {

constexpr char kUsage[] =
    "usage: large [--threads N] [--size SIZE] [--live K] [--ms MILLISECONDS]\n"
    "  N threads each keep K live large objects (default 2) and replace the\n"
    "  oldest one at a time. SIZE defaults to 256K~64M (log-uniform).\n";

int Main(int argc, char** argv) {
  Options options(argc, argv, kUsage);
  int threads = static_cast<int>(options.Int("threads", 1));
  SizeDist dist = options.Size("size", "256K~64M");
  int64_t live = options.Int("live", 2);
  double seconds = static_cast<double>(options.Int("ms", 500)) / 1000.0;
  options.Finish();
  if (threads < 1) options.Fail("--threads must be at least 1");
  if (live < 1) options.Fail("--live must be at least 1");

  uint64_t ops = 0;
  double elapsed = RunTimed(
      threads, seconds,
      [&](int t, const std::atomic<bool>& stop) -> uint64_t {
        Rng rng(t + 1);
        std::vector<void*> ring(live, nullptr);
        uint64_t n = 0;
        while (!stop.load(std::memory_order_relaxed)) {
          void*& slot = ring[n % live];
          free(slot);
          size_t size = dist.Next(rng);
          slot = malloc(size);
          if (slot == nullptr) abort();
          TouchPages(slot, size);
          ++n;
        }
        for (void* p : ring) free(p);
        return n;
      },
      &ops);

  ResultLine result("large", options);
  result.AddThroughput(elapsed, ops);
  result.Print();
  return 0;
}

}  // namespace
}  // namespace rseqmalloc::bench

int main(int argc, char** argv) { return rseqmalloc::bench::Main(argc, argv); }
