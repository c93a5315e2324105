// idle_release: does an allocator give memory back once a program goes
// quiet? Threads allocate and touch --mib MiB (default 512) in mixed sizes,
// then free all of it but --live-mib (default 16), keeping a random subset
// spread over the whole heap, and stop. The main thread then sleeps without
// calling the allocator for --ms milliseconds (default 10000) and reads the
// resident set size at 0, 1/10, 1/2 and the whole of that time (open/read
// of /proc/self/statm: no malloc).
//
//   idle_release --threads 4 --mib 512 --live-mib 16
//
// Reported: live_kib (bytes still allocated), rss_<T>ms_kib for each
// reading (rss_0ms, rss_1000ms, rss_5000ms, rss_10000ms by default) and
// rss_idle_end_kib, the last one again under a fixed name (tools/compare's
// figure for this workload); "ops" are the allocations of the fill.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "bench/harness.h"

namespace rseqmalloc::bench {
namespace {

constexpr char kUsage[] =
    "usage: idle_release [--threads N] [--size SIZE] [--mib MIB] [--live-mib LIVE] [--ms MS]\n"
    "  N threads fill MIB MiB (default 512) with SIZE objects (default mix),\n"
    "  free all but LIVE MiB (default 16), then the process sleeps MS ms\n"
    "  (default 10000) and reports its RSS at 0, MS/10, MS/2 and MS.\n";

struct Shard {
  std::vector<void*> kept;
  uint64_t kept_bytes = 0;
  uint64_t allocations = 0;
};

// Fills `budget` bytes, then frees everything except a random subset of
// about `keep` bytes (so what stays is spread over every part of the heap).
void Run(Shard& shard, const SizeDist& dist, uint64_t budget, uint64_t keep, uint64_t seed) {
  Rng rng(seed);
  std::vector<void*> all;
  std::vector<size_t> sizes;
  all.reserve(budget / 512);
  sizes.reserve(budget / 512);
  uint64_t filled = 0;
  while (filled < budget) {
    size_t size = dist.Next(rng);
    void* p = malloc(size);
    if (p == nullptr) abort();
    memset(p, 0x3c, size);
    all.push_back(p);
    sizes.push_back(size);
    filled += size;
  }
  shard.allocations = all.size();
  // Keep each object with probability keep/budget.
  uint64_t per_million = keep * 1'000'000 / budget;
  shard.kept.reserve(all.size() * per_million / 1'000'000 + 16);
  for (size_t i = 0; i < all.size(); ++i) {
    if (shard.kept_bytes < keep && rng.Next() % 1'000'000 < per_million) {
      shard.kept.push_back(all[i]);
      shard.kept_bytes += sizes[i];
    } else {
      free(all[i]);
    }
  }
}

int Main(int argc, char** argv) {
  Options options(argc, argv, kUsage);
  int threads = static_cast<int>(options.Int("threads", 4));
  SizeDist dist = options.Size("size", "mix");
  int64_t mib = options.Int("mib", 512);
  int64_t live_mib = options.Int("live-mib", 16);
  int64_t idle_ms = options.Int("ms", 10000);
  options.Finish();
  if (threads < 1) options.Fail("--threads must be at least 1");
  if (mib < 1 || live_mib < 0 || live_mib > mib) options.Fail("need 0 <= LIVE <= MIB, MIB >= 1");
  if (idle_ms < 0) options.Fail("--ms must not be negative");

  uint64_t budget = (static_cast<uint64_t>(mib) << 20) / threads;
  uint64_t keep = (static_cast<uint64_t>(live_mib) << 20) / threads;
  std::vector<Shard> shards(threads);
  std::vector<std::thread> pool;
  double start = NowSeconds();
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] { Run(shards[t], dist, budget, keep, t + 1); });
  }
  for (auto& th : pool) th.join();
  double elapsed = NowSeconds() - start;

  // From here on, no allocator call until the last reading.
  int64_t rss[4];
  const int64_t at_ms[4] = {0, idle_ms / 10, idle_ms / 2, idle_ms};
  double quiet = NowSeconds();
  for (int i = 0; i < 4; ++i) {
    double wait = quiet + static_cast<double>(at_ms[i]) / 1000 - NowSeconds();
    if (wait > 0) SleepSeconds(wait);
    rss[i] = CurrentRssKib();  // allocates nothing
  }

  uint64_t live = 0, allocations = 0;
  for (const Shard& s : shards) {
    live += s.kept_bytes;
    allocations += s.allocations;
  }
  ResultLine result("idle_release", options);
  result.AddThroughput(elapsed, allocations);
  result.Add("live_kib", static_cast<int64_t>(live >> 10));
  for (int i = 0; i < 4; ++i) {
    char key[48];
    snprintf(key, sizeof(key), "rss_%lldms_kib", static_cast<long long>(at_ms[i]));
    result.Add(key, rss[i]);
  }
  result.Add("rss_idle_end_kib", rss[3]);  // the last reading, whatever MS is
  result.Print();
  for (Shard& s : shards) {
    for (void* p : s.kept) free(p);
  }
  return 0;
}

}  // namespace
}  // namespace rseqmalloc::bench

int main(int argc, char** argv) { return rseqmalloc::bench::Main(argc, argv); }
