// working_set: threads share one working set of small blocks of mixed sizes
// (default 4096 live, uniform 16 B-1 KiB). Each step a thread allocates a
// block, writes it, swaps it into a random slot and frees the block it
// displaced, which another thread allocated most of the time. With --sized 1
// the block is freed with sized operator delete, as C++ containers do. Unlike
// `server`, every size is small and nothing is touched page by page: this is
// the front-end caches and the layers behind them, under remote frees over
// many size classes. One op = one block allocated and one freed.
//
//   working_set --threads 8 --size 16-1024 --live 4096 --sized 0 --ms 500
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>

#include "bench/harness.h"

namespace rseqmalloc::bench {
namespace {

constexpr char kUsage[] =
    "usage: working_set [--threads N] [--size SIZE] [--live OBJECTS] [--sized 0|1]\n"
    "                   [--ms MILLISECONDS]\n"
    "  N threads replace random blocks of one shared set of OBJECTS (default\n"
    "  4096) blocks of SIZE (default 16-1024); --sized 1 frees with sized\n"
    "  operator delete.\n";

constexpr int kBatch = 64;

// The block's size lives in its first word, for the sized delete.
void* NewBlock(size_t size, bool sized) {
  void* p = sized ? ::operator new(size) : malloc(size);
  if (p == nullptr) abort();
  *static_cast<uint64_t*>(p) = size;
  return p;
}

void FreeBlock(void* p, bool sized) {
  if (sized) {
    ::operator delete(p, static_cast<size_t>(*static_cast<uint64_t*>(p)));
  } else {
    free(p);
  }
}

int Main(int argc, char** argv) {
  Options options(argc, argv, kUsage);
  int threads = static_cast<int>(options.Int("threads", 1));
  SizeDist dist = options.Size("size", "16-1024");
  int64_t live = options.Int("live", 4096);
  bool sized = options.Int("sized", 0) != 0;
  double seconds = static_cast<double>(options.Int("ms", 500)) / 1000.0;
  options.Finish();
  if (threads < 1) options.Fail("--threads must be at least 1");
  if (live < 1) options.Fail("--live must be at least 1");
  if (dist.max_size() < 8) options.Fail("--size must be at least 8 bytes");

  auto table = std::make_unique<std::atomic<void*>[]>(live);
  Rng fill_rng(777);
  for (int64_t i = 0; i < live; ++i) {
    size_t size = dist.Next(fill_rng);
    table[i].store(NewBlock(size < 8 ? 8 : size, sized), std::memory_order_relaxed);
  }

  uint64_t ops = 0;
  double elapsed = RunTimed(
      threads, seconds,
      [&](int t, const std::atomic<bool>& stop) -> uint64_t {
        Rng rng(t + 1);
        uint64_t n = 0;
        while (!stop.load(std::memory_order_relaxed)) {
          for (int i = 0; i < kBatch; ++i) {
            size_t size = dist.Next(rng);
            void* fresh = NewBlock(size < 8 ? 8 : size, sized);
            void* old = table[rng.Next() % live].exchange(fresh, std::memory_order_acq_rel);
            FreeBlock(old, sized);
          }
          n += kBatch;
        }
        return n;
      },
      &ops);

  for (int64_t i = 0; i < live; ++i) FreeBlock(table[i].load(std::memory_order_relaxed), sized);
  table.reset();

  ResultLine result("working_set", options);
  result.AddThroughput(elapsed, ops);
  result.Print();
  return 0;
}

}  // namespace
}  // namespace rseqmalloc::bench

int main(int argc, char** argv) { return rseqmalloc::bench::Main(argc, argv); }
