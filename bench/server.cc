// server: a request-serving process in miniature. Many threads share a table
// of live objects; each step a thread allocates a new object from a
// long-tailed size mix (80 % <= 256 B, 19 % <= 8 KiB, 1 % up to 1 MiB),
// writes it, swaps it into a random slot of the table and frees the object it
// displaced. That object was usually allocated by another thread and lived for
// about `live` steps of the whole process, so this mixes remote frees, varied
// lifetimes and sizes from every tier of the allocator at once.
//
//   server --threads 16 --size mix --live 20000 --ms 500
//   server --threads 2 --steps 6000000   (a fixed amount of work: see below)
//
// Peak RSS from a timed run grows with the number of replacements: the
// large blocks' churn leaves every allocator's free pages a little more
// fragmented with each one, so a faster allocator reaches a higher peak in
// the same time. --steps S (in all, shared among the threads) compares
// memory at equal work.
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <vector>

#include "bench/harness.h"

namespace rseqmalloc::bench {
namespace {

constexpr char kUsage[] =
    "usage: server [--threads N] [--size SIZE] [--live OBJECTS] [--ms MILLISECONDS]\n"
    "              [--steps S]\n"
    "  N threads replace random objects of a shared table of OBJECTS live\n"
    "  objects (default 20000). SIZE defaults to mix (see pair --help).\n"
    "  S > 0: the threads make S replacements in all, each S / N rounded up\n"
    "  to a multiple of 64, however long they take (--ms is then ignored):\n"
    "  peak RSS at equal work.\n";

constexpr int kBatch = 64;

void* NewObject(size_t size) {
  void* p = malloc(size);
  if (p == nullptr) abort();
  *static_cast<uint64_t*>(p) = size;  // the mix never goes below 8 bytes
  TouchPages(p, size);
  return p;
}

int Main(int argc, char** argv) {
  Options options(argc, argv, kUsage);
  int threads = static_cast<int>(options.Int("threads", 1));
  SizeDist dist = options.Size("size", "mix");
  int64_t live = options.Int("live", 20000);
  double seconds = static_cast<double>(options.Int("ms", 500)) / 1000.0;
  int64_t steps = options.Int("steps", 0);
  options.Finish();
  if (threads < 1) options.Fail("--threads must be at least 1");
  if (live < 1) options.Fail("--live must be at least 1");
  if (steps < 0) options.Fail("--steps must be 0 (timed) or more");
  // Counted: the clock still runs from the common start to the last thread's
  // end; the stop flag, raised at once, is not looked at.
  if (steps > 0) seconds = 0;
  uint64_t counted = static_cast<uint64_t>(steps / threads + (steps % threads != 0));

  auto table = std::make_unique<std::atomic<void*>[]>(live);
  Rng fill_rng(12345);
  for (int64_t i = 0; i < live; ++i) {
    size_t size = dist.Next(fill_rng);
    table[i].store(NewObject(size < 8 ? 8 : size), std::memory_order_relaxed);
  }

  uint64_t ops = 0;
  double elapsed = RunTimed(
      threads, seconds,
      [&](int t, const std::atomic<bool>& stop) -> uint64_t {
        Rng rng(t + 1);
        uint64_t n = 0;
        uint64_t checksum = 0;
        while (counted > 0 ? n < counted : !stop.load(std::memory_order_relaxed)) {
          for (int i = 0; i < kBatch; ++i) {
            size_t size = dist.Next(rng);
            void* fresh = NewObject(size < 8 ? 8 : size);
            void* old = table[rng.Next() % live].exchange(fresh, std::memory_order_acq_rel);
            checksum += *static_cast<uint64_t*>(old);  // "handle the request"
            free(old);
          }
          n += kBatch;
        }
        DoNotOptimize(&checksum);
        return n;
      },
      &ops);

  for (int64_t i = 0; i < live; ++i) free(table[i].load(std::memory_order_relaxed));
  table.reset();

  ResultLine result("server", options);
  result.AddThroughput(elapsed, ops);
  result.Print();
  return 0;
}

}  // namespace
}  // namespace rseqmalloc::bench

int main(int argc, char** argv) { return rseqmalloc::bench::Main(argc, argv); }
