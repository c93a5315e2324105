// server: a request-serving process in miniature. Many threads share a table
// of live objects; each step a thread allocates a new object from a
// long-tailed size mix (80 % <= 256 B, 19 % <= 8 KiB, 1 % up to 1 MiB),
// writes it, swaps it into a random slot of the table and frees the object it
// displaced. That object was usually allocated by another thread and lived for
// about `live` steps of the whole process, so this mixes remote frees, varied
// lifetimes and sizes from every tier of the allocator at once.
//
//   server --threads 16 --size mix --live 20000 --ms 500
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
    "  N threads replace random objects of a shared table of OBJECTS live\n"
    "  objects (default 20000). SIZE defaults to mix (see pair --help).\n";

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
  options.Finish();
  if (threads < 1) options.Fail("--threads must be at least 1");
  if (live < 1) options.Fail("--live must be at least 1");

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
        while (!stop.load(std::memory_order_relaxed)) {
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
