// handoff: working sets that outlive the threads that built them, in the
// manner of the Larson server benchmark. Each of N chains owns a set of
// --blocks live objects of --size (default 8-1000 B, uniform). A thread of
// the chain makes --rounds replacements (free a random object of the set,
// allocate one of a random size in its place and write its ends), then
// exits, and a new thread takes the set over: every object the previous
// thread allocated is freed by its successor, which may run on another
// CPU, and every size class is in play. With N above the number of CPUs,
// chains share CPUs, so per-thread caches multiply while per-CPU ones do
// not. Each object carries a tag that its free checks (a corrupt or
// duplicated block aborts the run). One op = one replacement.
//
//   handoff --threads 8 --blocks 1000 --rounds 20000 --ms 500
#include <atomic>
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
    "usage: handoff [--threads N] [--size SIZE] [--blocks B] [--rounds R] [--ms MILLISECONDS]\n"
    "  N chains of threads share nothing but the allocator. Each chain keeps B\n"
    "  live objects (default 1000) of SIZE (default 8-1000); each of its\n"
    "  threads replaces R random ones (default 20000), then hands the set to\n"
    "  a new thread. Runs until the duration has passed.\n";

// What a block holds in its first 8 bytes: its slot and its size, so that
// the free can tell a block that is not the one the slot was given.
uint64_t Tag(size_t slot, size_t size) {
  return (uint64_t{slot} << 32) ^ size ^ 0x5a5a000000005a5aULL;
}

// The tag and the last byte must not overlap.
size_t DrawSize(const SizeDist& dist, Rng& rng) {
  size_t size = dist.Next(rng);
  return size < 9 ? 9 : size;
}

struct Block {
  void* p;
  size_t size;
};

void* NewBlock(size_t slot, size_t size) {
  void* p = malloc(size);
  if (p == nullptr) abort();
  uint64_t tag = Tag(slot, size);
  memcpy(p, &tag, sizeof tag);
  static_cast<char*>(p)[size - 1] = static_cast<char>(slot);
  return p;
}

void FreeBlock(size_t slot, const Block& b) {
  uint64_t tag;
  memcpy(&tag, b.p, sizeof tag);
  if (tag != Tag(slot, b.size) || static_cast<char*>(b.p)[b.size - 1] != static_cast<char>(slot)) {
    fprintf(stderr, "handoff: block %p of slot %zu was overwritten\n", b.p, slot);
    abort();
  }
  free(b.p);
}

// One thread's life: up to `rounds` replacements, fewer once `stop` is set.
uint64_t Generation(std::vector<Block>* set, const SizeDist& dist, uint64_t seed, int64_t rounds,
                    const std::atomic<bool>& stop) {
  Rng rng(seed);
  uint64_t done = 0;
  while (done < static_cast<uint64_t>(rounds)) {
    if ((done & 63) == 0 && stop.load(std::memory_order_relaxed)) break;
    size_t slot = rng.Next() % set->size();
    Block& b = (*set)[slot];
    FreeBlock(slot, b);
    b.size = DrawSize(dist, rng);
    b.p = NewBlock(slot, b.size);
    ++done;
  }
  return done;
}

int Main(int argc, char** argv) {
  Options options(argc, argv, kUsage);
  int threads = static_cast<int>(options.Int("threads", 1));
  SizeDist dist = options.Size("size", "8-1000");
  int64_t blocks = options.Int("blocks", 1000);
  int64_t rounds = options.Int("rounds", 20000);
  double seconds = static_cast<double>(options.Int("ms", 500)) / 1000.0;
  options.Finish();
  if (threads < 1) options.Fail("--threads must be at least 1");
  if (blocks < 1 || blocks > (1 << 24)) options.Fail("--blocks must be 1..16M");
  if (rounds < 1) options.Fail("--rounds must be at least 1");

  // Each chain's set is built by the main thread: the first generation
  // already frees objects another thread allocated.
  std::vector<std::vector<Block>> sets(threads);
  Rng fill(7);
  for (auto& set : sets) {
    set.resize(static_cast<size_t>(blocks));
    for (size_t slot = 0; slot < set.size(); ++slot) {
      size_t size = DrawSize(dist, fill);
      set[slot] = {NewBlock(slot, size), size};
    }
  }
  std::atomic<uint64_t> generations{0};

  uint64_t ops = 0;
  double elapsed = RunTimed(
      threads, seconds,
      [&](int t, const std::atomic<bool>& stop) -> uint64_t {
        uint64_t n = 0;
        uint64_t seed = static_cast<uint64_t>(t + 1) << 32;
        while (!stop.load(std::memory_order_relaxed)) {
          uint64_t done = 0;
          std::thread worker([&] { done = Generation(&sets[t], dist, ++seed, rounds, stop); });
          worker.join();
          n += done;
          generations.fetch_add(1, std::memory_order_relaxed);
        }
        return n;
      },
      &ops);

  for (auto& set : sets) {
    for (size_t slot = 0; slot < set.size(); ++slot) FreeBlock(slot, set[slot]);
  }

  ResultLine result("handoff", options);
  result.AddThroughput(elapsed, ops);
  result.Add("generations", static_cast<int64_t>(generations.load()));
  result.Print();
  return 0;
}

}  // namespace
}  // namespace rseqmalloc::bench

int main(int argc, char** argv) { return rseqmalloc::bench::Main(argc, argv); }
