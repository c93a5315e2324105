// exchange: threads hand each other batches of blocks of many sizes. Each
// thread allocates a batch (default 64 blocks, sizes drawn from --size,
// default log-uniform 16 B-16 KiB), writes them, passes the batch to the
// next thread in a ring, and frees the batch it received from the previous
// one. Every free is remote and every size class is in play at once: the
// blocks a CPU frees must travel back, through the layers under the
// front-end caches, to the CPUs that allocate them. One op = one block
// allocated and freed.
//
//   exchange --threads 8 --size 16~16K --batch 64 --ms 500
#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>

#include "bench/harness.h"

namespace rseqmalloc::bench {
namespace {

constexpr char kUsage[] =
    "usage: exchange [--threads N] [--size SIZE] [--batch B] [--ms MILLISECONDS]\n"
    "  N threads (at least 2) in a ring: each allocates batches of B blocks\n"
    "  (default 64) of sizes from SIZE (default 16~16K) and frees the batches\n"
    "  its neighbour allocated.\n";

// A one-slot mailbox between neighbours: a full batch or nothing.
struct alignas(64) Mailbox {
  std::atomic<void**> batch{nullptr};
};

int Main(int argc, char** argv) {
  Options options(argc, argv, kUsage);
  int threads = static_cast<int>(options.Int("threads", 2));
  SizeDist dist = options.Size("size", "16~16K");
  int64_t batch = options.Int("batch", 64);
  double seconds = static_cast<double>(options.Int("ms", 500)) / 1000.0;
  options.Finish();
  if (threads < 2) options.Fail("--threads must be at least 2");
  if (batch < 1 || batch > 4096) options.Fail("--batch must be 1..4096");

  std::vector<Mailbox> mailboxes(threads);
  // Batch arrays travel around the ring with their blocks, so they belong to
  // no thread: two per thread, allocated before the timed run.
  std::vector<std::unique_ptr<void*[]>> arrays;
  for (int i = 0; i < 2 * threads; ++i) arrays.emplace_back(new void*[batch]);
  uint64_t ops = 0;
  double elapsed = RunTimed(
      threads, seconds,
      [&](int t, const std::atomic<bool>& stop) -> uint64_t {
        Rng rng(t + 1);
        Mailbox& out = mailboxes[(t + 1) % threads];
        Mailbox& in = mailboxes[t];
        std::vector<void**> spare;
        spare.reserve(arrays.size());  // never grows inside the timed loop
        spare.push_back(arrays[2 * t].get());
        spare.push_back(arrays[2 * t + 1].get());
        uint64_t n = 0;
        while (!stop.load(std::memory_order_relaxed)) {
          if (void** got = in.batch.exchange(nullptr, std::memory_order_acquire)) {
            for (int64_t i = 0; i < batch; ++i) free(got[i]);
            n += static_cast<uint64_t>(batch);
            spare.push_back(got);
          }
          if (spare.empty() || out.batch.load(std::memory_order_relaxed) != nullptr) {
            std::this_thread::yield();  // the neighbour has not caught up
            continue;
          }
          void** fill = spare.back();
          spare.pop_back();
          for (int64_t i = 0; i < batch; ++i) {
            size_t size = dist.Next(rng);
            auto* p = static_cast<char*>(malloc(size));
            if (p == nullptr) abort();
            p[0] = static_cast<char>(size);
            p[size - 1] = static_cast<char>(i);
            fill[i] = p;
          }
          out.batch.store(fill, std::memory_order_release);
        }
        return n;
      },
      &ops);
  for (Mailbox& box : mailboxes) {
    if (void** left = box.batch.load()) {
      for (int64_t i = 0; i < batch; ++i) free(left[i]);
    }
  }

  ResultLine result("exchange", options);
  result.AddThroughput(elapsed, ops);
  result.Print();
  return 0;
}

}  // namespace
}  // namespace rseqmalloc::bench

int main(int argc, char** argv) { return rseqmalloc::bench::Main(argc, argv); }
