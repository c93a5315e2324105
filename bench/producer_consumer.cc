// producer_consumer: objects allocated on one thread and freed on another.
// Threads come in pairs joined by a bounded lock-free single-producer /
// single-consumer ring; the producer mallocs and fills objects, the consumer
// reads and frees them. Every free is remote, so this measures how the
// allocator moves memory back from the freeing thread (or CPU) to the one
// that allocates: per-thread caches grow on one side and starve on the other.
//
//   producer_consumer --threads 2 --size 64 --ms 500
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
    "usage: producer_consumer [--threads N] [--size SIZE] [--ring SLOTS] [--ms MILLISECONDS]\n"
    "  N/2 producer-consumer pairs (N even, at least 2). SIZE as for pair\n"
    "  (default 64). SLOTS (a power of two, default 1024) bounds the objects in\n"
    "  flight per pair: a deep ring lets freed objects go cold in cache before\n"
    "  they are allocated again.\n";

constexpr int kSizeTable = 1024;

// One producer and one consumer; head and tail on their own cache lines.
struct alignas(64) Ring {
  alignas(64) std::atomic<uint64_t> head{0};  // next slot to fill (producer)
  alignas(64) std::atomic<uint64_t> tail{0};  // next slot to drain (consumer)
  alignas(64) std::atomic<bool> producer_done{false};
  explicit Ring(uint64_t n) : size(n), slots(new void*[n]) {}
  const uint64_t size;  // power of two
  std::unique_ptr<void*[]> slots;
};

uint64_t Produce(Ring& ring, const std::vector<size_t>& sizes, const std::atomic<bool>& stop) {
  uint64_t head = ring.head.load(std::memory_order_relaxed);
  uint64_t n = 0;
  while (!stop.load(std::memory_order_relaxed)) {
    // Wait for room: the consumer may be descheduled on an oversubscribed box.
    while (head - ring.tail.load(std::memory_order_acquire) == ring.size) {
      if (stop.load(std::memory_order_relaxed)) goto done;
      std::this_thread::yield();
    }
    {
      size_t size = sizes[n % kSizeTable];
      auto* p = static_cast<uint64_t*>(malloc(size < 8 ? 8 : size));
      if (p == nullptr) abort();
      *p = size;
      ring.slots[head & (ring.size - 1)] = p;
      ring.head.store(++head, std::memory_order_release);
      ++n;
    }
  }
done:
  ring.producer_done.store(true, std::memory_order_release);
  return 0;  // the consumer counts completed transfers
}

uint64_t Consume(Ring& ring) {
  uint64_t tail = ring.tail.load(std::memory_order_relaxed);
  uint64_t n = 0;
  uint64_t checksum = 0;
  for (;;) {
    uint64_t head = ring.head.load(std::memory_order_acquire);
    if (head == tail) {
      // Only a finished producer ends the pair, and only once drained.
      if (ring.producer_done.load(std::memory_order_acquire) &&
          ring.head.load(std::memory_order_acquire) == tail) {
        break;
      }
      std::this_thread::yield();
      continue;
    }
    while (tail != head) {
      auto* p = static_cast<uint64_t*>(ring.slots[tail & (ring.size - 1)]);
      checksum += *p;
      free(p);
      ++tail;
      ++n;
    }
    ring.tail.store(tail, std::memory_order_release);
  }
  DoNotOptimize(&checksum);
  return n;
}

int Main(int argc, char** argv) {
  Options options(argc, argv, kUsage);
  int threads = static_cast<int>(options.Int("threads", 2));
  SizeDist dist = options.Size("size", "64");
  int64_t ring_slots = options.Int("ring", 1024);
  double seconds = static_cast<double>(options.Int("ms", 500)) / 1000.0;
  options.Finish();
  if (threads < 2 || threads % 2 != 0) options.Fail("--threads must be even and at least 2");
  if (ring_slots < 1 || (ring_slots & (ring_slots - 1)) != 0) {
    options.Fail("--ring must be a power of two");
  }

  int pairs = threads / 2;
  std::vector<std::unique_ptr<Ring>> rings;
  std::vector<std::vector<size_t>> sizes(pairs);
  for (int i = 0; i < pairs; ++i) {
    rings.push_back(std::make_unique<Ring>(static_cast<uint64_t>(ring_slots)));
    Rng rng(i + 1);
    for (int k = 0; k < kSizeTable; ++k) sizes[i].push_back(dist.Next(rng));
  }

  uint64_t ops = 0;
  double elapsed = RunTimed(
      threads, seconds,
      [&](int t, const std::atomic<bool>& stop) -> uint64_t {
        Ring& ring = *rings[t / 2];
        return t % 2 == 0 ? Produce(ring, sizes[t / 2], stop) : Consume(ring);
      },
      &ops);

  ResultLine result("producer_consumer", options);
  result.AddThroughput(elapsed, ops);
  result.Print();
  return 0;
}

}  // namespace
}  // namespace rseqmalloc::bench

int main(int argc, char** argv) { return rseqmalloc::bench::Main(argc, argv); }
