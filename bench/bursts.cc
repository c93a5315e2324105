// bursts: each thread fills a ring of block pointers in bursts of one size
// at a time, cycling through a fixed histogram (thousands of 8-48 B blocks
// per burst, a few of 4 KiB-128 KiB). When the ring is full it frees all of
// it but one fifth -- the front part in allocation order, the back part in
// reverse -- and fills it again around that fifth, which moves on by a
// fifth each cycle. So frees and allocations come in runs of tens of
// thousands of blocks of many classes, far more than any front-end cache
// holds: they go down to the central free lists and come back up, on the
// thread that freed them. SmartHeap's benchmarks (sh6bench, sh8bench, in
// mimalloc-bench) allocate this way; mimalloc, whose pages take frees back
// in place, was 1.5-1.8x faster than rseqmalloc on a program of this shape.
// One op = one block allocated (and, later, freed).
//
//   bursts --threads 2 --ring 200000 --ms 500
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "bench/harness.h"

namespace rseqmalloc::bench {
namespace {

constexpr char kUsage[] =
    "usage: bursts [--threads N] [--ring BLOCKS] [--ms MILLISECONDS]\n"
    "  N threads each fill a ring of BLOCKS pointers (default 200000) in bursts\n"
    "  of one size and free four fifths of it whenever it is full.\n";

struct Burst {
  size_t size;
  int count;
};
// Mostly tiny blocks, as programs allocate them, with a rare large one.
constexpr Burst kBursts[] = {{8, 1000},   {16, 5000},   {48, 1000},  {64, 100},
                             {128, 100},  {256, 100},   {512, 10},   {1024, 5},
                             {4096, 3},   {8192, 1},    {32768, 1},  {131072, 1}};
constexpr int kKinds = sizeof(kBursts) / sizeof(kBursts[0]);

int Main(int argc, char** argv) {
  Options options(argc, argv, kUsage);
  int threads = static_cast<int>(options.Int("threads", 1));
  int64_t ring = options.Int("ring", 200000);
  double seconds = static_cast<double>(options.Int("ms", 500)) / 1000.0;
  options.Finish();
  if (threads < 1) options.Fail("--threads must be at least 1");
  if (ring < 10 || ring > (1 << 24)) options.Fail("--ring must be 10..16M");

  uint64_t ops = 0;
  double elapsed = RunTimed(
      threads, seconds,
      [&](int t, const std::atomic<bool>& stop) -> uint64_t {
        size_t n = static_cast<size_t>(ring);
        std::vector<void*> slots(n, nullptr);
        size_t pos = 0;
        size_t keep_begin = n, keep_end = n;  // the fifth kept from the last cycle
        uint64_t done = 0;
        int kind = t % kKinds;
        while (!stop.load(std::memory_order_relaxed)) {
          kind = (kind + 1) % kKinds;
          for (int c = 0; c < kBursts[kind].count; ++c) {
            if (pos == keep_begin) pos = keep_end;
            if (pos >= n) {
              keep_begin = keep_end >= n ? 0 : keep_end;
              keep_end = keep_begin + n / 5 < n ? keep_begin + n / 5 : n;
              for (size_t i = 0; i < keep_begin; ++i) free(slots[i]);
              for (size_t i = n; i > keep_end; --i) free(slots[i - 1]);
              pos = keep_begin == 0 ? keep_end : 0;
            }
            void* p = malloc(kBursts[kind].size);
            if (p == nullptr) abort();
            *static_cast<volatile char*>(p) = 1;
            slots[pos++] = p;
            ++done;
          }
        }
        // Still live: what this cycle filled (below pos, around the kept
        // fifth) and the kept fifth.
        for (size_t i = 0; i < n; ++i) {
          if (i < pos || (i >= keep_begin && i < keep_end)) free(slots[i]);
        }
        return done;
      },
      &ops);

  ResultLine result("bursts", options);
  result.AddThroughput(elapsed, ops);
  result.Print();
  return 0;
}

}  // namespace
}  // namespace rseqmalloc::bench

int main(int argc, char** argv) { return rseqmalloc::bench::Main(argc, argv); }
