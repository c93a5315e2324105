// large: allocations of 256 KiB to 64 MiB (log-uniform), every page written,
// then freed while a couple of others are still live. This is the page-level
// path: mmap/munmap, page caching, huge-page alignment and how fast memory
// goes back to the OS. Page faults on fresh memory dominate unless the
// allocator reuses pages it already has, which then shows up in RSS instead.
//
//   large --threads 1 --size 256K~64M --live 2 --ms 500
//   large --threads 2 --replacements 1000   (a fixed amount of work: see below)
//
// Peak RSS from a timed run grows with the number of operations, since each
// thread's sizes come from the same seeded sequence and the largest pair of
// live blocks only grows with its length: a faster allocator reaches larger
// pairs in the same time. --replacements N (per thread) compares memory at
// equal work.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "bench/harness.h"

namespace rseqmalloc::bench {
namespace {

constexpr char kUsage[] =
    "usage: large [--threads N] [--size SIZE] [--live K] [--ms MILLISECONDS] [--replacements R]\n"
    "  N threads each keep K live large objects (default 2) and replace the\n"
    "  oldest one at a time. SIZE defaults to 256K~64M (log-uniform).\n"
    "  R > 0: each thread makes exactly R replacements, however long they\n"
    "  take (--ms is then ignored): peak RSS at equal work.\n";

int Main(int argc, char** argv) {
  Options options(argc, argv, kUsage);
  int threads = static_cast<int>(options.Int("threads", 1));
  SizeDist dist = options.Size("size", "256K~64M");
  int64_t live = options.Int("live", 2);
  double seconds = static_cast<double>(options.Int("ms", 500)) / 1000.0;
  int64_t replacements = options.Int("replacements", 0);
  options.Finish();
  if (threads < 1) options.Fail("--threads must be at least 1");
  if (live < 1) options.Fail("--live must be at least 1");
  if (replacements < 0) options.Fail("--replacements must be 0 (timed) or more");
  // Counted: the clock still runs from the common start to the last thread's
  // end; the stop flag, raised at once, is not looked at.
  if (replacements > 0) seconds = 0;
  uint64_t counted = static_cast<uint64_t>(replacements);

  uint64_t ops = 0;
  double elapsed = RunTimed(
      threads, seconds,
      [&](int t, const std::atomic<bool>& stop) -> uint64_t {
        Rng rng(t + 1);
        std::vector<void*> ring(live, nullptr);
        uint64_t n = 0;
        while (counted > 0 ? n < counted : !stop.load(std::memory_order_relaxed)) {
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
