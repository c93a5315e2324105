// memory_64threads: the memory cost of caches. 64 threads (on a machine with
// far fewer cores) each hold a working set of --objects small objects
// (default 2000 of 16-512 B) and churn it: free a random one, allocate a new
// one. Per-thread caches multiply with the thread count; per-CPU caches
// multiply with the core count, which is why they exist. Peak RSS, against
// the bytes actually live, is the figure; throughput is reported too.
//
//   memory_64threads --threads 64 --objects 2000 --ms 500
#include <atomic>
#include <barrier>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "bench/harness.h"

namespace rseqmalloc::bench {
namespace {

constexpr char kUsage[] =
    "usage: memory_64threads [--threads N] [--objects K] [--size SIZE] [--ms MILLISECONDS]\n"
    "  N threads (default 64) each keep K live objects (default 2000) of SIZE\n"
    "  (default 16-512) and replace random ones until the duration has passed.\n";

void* NewObject(size_t size) {
  void* p = malloc(size);
  if (p == nullptr) abort();
  memset(p, 7, size);
  return p;
}

int Main(int argc, char** argv) {
  Options options(argc, argv, kUsage);
  int threads = static_cast<int>(options.Int("threads", 64));
  int64_t objects = options.Int("objects", 2000);
  SizeDist dist = options.Size("size", "16-512");
  double seconds = static_cast<double>(options.Int("ms", 500)) / 1000.0;
  options.Finish();
  if (threads < 1) options.Fail("--threads must be at least 1");
  if (objects < 1) options.Fail("--objects must be at least 1");

  // Every thread fills its set, then all wait (blocked, not spinning) until
  // the last set is full, so the peak really holds all working sets at once;
  // only then does the clock start for the churn phase.
  std::barrier filled(threads + 1);
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> live_bytes{0};
  std::atomic<uint64_t> total_ops{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      Rng rng(t + 1);
      std::vector<void*> set(objects);
      std::vector<uint32_t> sizes(objects);
      uint64_t bytes = 0;
      for (int64_t i = 0; i < objects; ++i) {
        sizes[i] = static_cast<uint32_t>(dist.Next(rng));
        set[i] = NewObject(sizes[i]);
        bytes += sizes[i];
      }
      filled.arrive_and_wait();
      uint64_t n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        for (int i = 0; i < 64; ++i) {
          size_t k = rng.Next() % objects;
          free(set[k]);
          bytes -= sizes[k];
          sizes[k] = static_cast<uint32_t>(dist.Next(rng));
          set[k] = NewObject(sizes[k]);
          bytes += sizes[k];
        }
        n += 64;
      }
      live_bytes.fetch_add(bytes);
      total_ops.fetch_add(n);
      for (void* p : set) free(p);
    });
  }
  filled.arrive_and_wait();
  double start = NowSeconds();
  SleepSeconds(seconds);
  stop.store(true, std::memory_order_relaxed);
  for (auto& th : pool) th.join();
  double elapsed = NowSeconds() - start;
  uint64_t ops = total_ops.load();

  ResultLine result("memory_64threads", options);
  result.AddThroughput(elapsed, ops);
  result.Add("live_kib", static_cast<int64_t>(live_bytes.load() >> 10));
  result.Print();
  return 0;
}

}  // namespace
}  // namespace rseqmalloc::bench

int main(int argc, char** argv) { return rseqmalloc::bench::Main(argc, argv); }
