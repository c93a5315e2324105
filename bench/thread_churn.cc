// thread_churn: short-lived threads, as in thread-per-task code. The main
// thread starts a wave of --threads threads; each allocates --allocs objects
// of --size (default 16-1024 B), frees half, and hands the other half to the
// main thread, which frees them after the thread has exited. It measures
// thread start/exit cost inside the allocator (per-thread cache set-up and
// flush) and whether memory of dead threads is reused. One op = one thread.
//
//   thread_churn --threads 2 --allocs 1000 --ms 500
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <thread>
#include <vector>

#include "bench/harness.h"

namespace rseqmalloc::bench {
namespace {

constexpr char kUsage[] =
    "usage: thread_churn [--threads N] [--size SIZE] [--allocs K] [--ms MILLISECONDS]\n"
    "  Waves of N threads, each making K allocations (default 1000) of SIZE\n"
    "  (default 16-1024), until the duration has passed.\n";

void Worker(const SizeDist& dist, uint64_t seed, int allocs, std::vector<void*>* handoff) {
  Rng rng(seed);
  std::vector<void*> mine;
  mine.reserve(allocs);
  for (int i = 0; i < allocs; ++i) {
    size_t size = dist.Next(rng);
    void* p = malloc(size);
    if (p == nullptr) abort();
    memset(p, 1, size < 64 ? size : 64);
    mine.push_back(p);
  }
  for (int i = 0; i < allocs; ++i) {
    if (i % 2 == 0) {
      free(mine[i]);
    } else {
      handoff->push_back(mine[i]);
    }
  }
}

int Main(int argc, char** argv) {
  Options options(argc, argv, kUsage);
  int threads = static_cast<int>(options.Int("threads", 1));
  SizeDist dist = options.Size("size", "16-1024");
  int allocs = static_cast<int>(options.Int("allocs", 1000));
  double seconds = static_cast<double>(options.Int("ms", 500)) / 1000.0;
  options.Finish();
  if (threads < 1) options.Fail("--threads must be at least 1");

  std::vector<std::vector<void*>> handoff(threads);
  for (auto& h : handoff) h.reserve(allocs);
  std::vector<std::thread> wave;
  wave.reserve(threads);
  uint64_t started = 0;
  double start = NowSeconds();
  double elapsed = 0;
  do {
    for (int t = 0; t < threads; ++t) {
      wave.emplace_back(Worker, std::cref(dist), started + t + 1, allocs, &handoff[t]);
    }
    for (auto& th : wave) th.join();
    wave.clear();
    // The threads are gone; what they allocated is freed here (remote frees).
    for (auto& h : handoff) {
      for (void* p : h) free(p);
      h.clear();
    }
    started += threads;
    elapsed = NowSeconds() - start;
  } while (elapsed < seconds);

  ResultLine result("thread_churn", options);
  result.AddThroughput(elapsed, started);
  result.Print();
  return 0;
}

}  // namespace
}  // namespace rseqmalloc::bench

int main(int argc, char** argv) { return rseqmalloc::bench::Main(argc, argv); }
