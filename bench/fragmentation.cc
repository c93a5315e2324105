// fragmentation: how much memory a heap keeps once its holes stop fitting.
// Each thread fills its share of --mib with objects from --size (default
// 16-1024 B), frees a random half of them, then allocates the freed volume
// again in objects four times larger, which the holes left behind cannot hold
// unless the allocator coalesces or returns them. It reports the time of the
// three phases, the RSS while the final live set is held (against the bytes
// actually live), and the RSS after everything is freed.
//
//   fragmentation --threads 1 --mib 256
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
    "usage: fragmentation [--threads N] [--size SIZE] [--mib MIB]\n"
    "  Fill MIB MiB (split across N threads; default 256) with objects of\n"
    "  SIZE (default 16-1024), free a random half, refill the freed volume\n"
    "  with objects 4x larger.\n";

struct Shard {
  std::vector<void*> objects;
  std::vector<uint32_t> sizes;  // of objects, for the free phase's accounting
  uint64_t live_bytes = 0;
  uint64_t allocations = 0;
};

void* Fill(size_t size) {
  void* p = malloc(size);
  if (p == nullptr) abort();
  memset(p, 0x5a, size);  // small objects: touch all of them, as a program would
  return p;
}

void RunPhases(Shard& shard, const SizeDist& dist, uint64_t budget, uint64_t seed) {
  Rng rng(seed);
  shard.objects.reserve(budget / 256);
  shard.sizes.reserve(budget / 256);
  // Phase 1: fill.
  while (shard.live_bytes < budget) {
    size_t size = dist.Next(rng);
    shard.objects.push_back(Fill(size));
    shard.sizes.push_back(static_cast<uint32_t>(size));
    shard.live_bytes += size;
    ++shard.allocations;
  }
  // Phase 2: free a random half.
  uint64_t freed = 0;
  size_t kept = 0;
  for (size_t i = 0; i < shard.objects.size(); ++i) {
    if (rng.Percent(50)) {
      free(shard.objects[i]);
      freed += shard.sizes[i];
    } else {
      shard.objects[kept++] = shard.objects[i];
    }
  }
  shard.objects.resize(kept);
  shard.live_bytes -= freed;
  // Phase 3: the same volume again, in objects too big for the holes.
  uint64_t refilled = 0;
  while (refilled < freed) {
    size_t size = dist.Next(rng) * 4;
    shard.objects.push_back(Fill(size));
    refilled += size;
    ++shard.allocations;
  }
  shard.live_bytes += refilled;
}

int Main(int argc, char** argv) {
  Options options(argc, argv, kUsage);
  int threads = static_cast<int>(options.Int("threads", 1));
  SizeDist dist = options.Size("size", "16-1024");
  int64_t mib = options.Int("mib", 256);
  options.Finish();
  if (threads < 1) options.Fail("--threads must be at least 1");
  if (mib < 1) options.Fail("--mib must be at least 1");

  uint64_t budget = (static_cast<uint64_t>(mib) << 20) / threads;
  std::vector<Shard> shards(threads);
  // Everyone holds the final live set until the main thread has measured it.
  std::barrier measured(threads + 1);
  std::barrier done(threads + 1);
  std::vector<std::thread> pool;
  double start = NowSeconds();
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      RunPhases(shards[t], dist, budget, t + 1);
      done.arrive_and_wait();
      measured.arrive_and_wait();
      for (void* p : shards[t].objects) free(p);
      shards[t].objects.clear();
      shards[t].objects.shrink_to_fit();
      shards[t].sizes.clear();
      shards[t].sizes.shrink_to_fit();
    });
  }
  done.arrive_and_wait();
  double elapsed = NowSeconds() - start;
  int64_t live_rss_kib = CurrentRssKib();
  uint64_t live_bytes = 0, allocations = 0;
  for (const Shard& s : shards) {
    live_bytes += s.live_bytes;
    allocations += s.allocations;
  }
  measured.arrive_and_wait();
  for (auto& th : pool) th.join();

  ResultLine result("fragmentation", options);
  result.AddThroughput(elapsed, allocations);
  result.Add("live_kib", static_cast<int64_t>(live_bytes >> 10));
  result.Add("live_rss_kib", live_rss_kib);
  result.Add("rss_over_live",
             static_cast<double>(live_rss_kib) / static_cast<double>(live_bytes >> 10));
  result.Print();
  return 0;
}

}  // namespace
}  // namespace rseqmalloc::bench

int main(int argc, char** argv) { return rseqmalloc::bench::Main(argc, argv); }
