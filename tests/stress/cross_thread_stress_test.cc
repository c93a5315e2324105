// Multithreaded stress with cross-thread frees and payload checks.
//
// N threads (many more than the 2 cores) allocate log-uniform sizes from
// 1 B to 1 MiB (mostly small), fill every byte with a pattern derived from
// (pointer, size, seed), grow and shrink blocks with realloc, and post blocks
// to other threads' mailboxes; the receiver checks the pattern and frees.
// At the end all live blocks are gathered, checked for overlap and pattern,
// and freed; the allocation and free counts must match.
//
// Duration: RSEQMALLOC_STRESS_SECONDS (default 2 per thread count) for long
// runs by hand, e.g.
//   RSEQMALLOC_STRESS_SECONDS=600 bazel-bin/tests/stress/cross_thread_stress_test
#include <pthread.h>
#include <stdlib.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "tests/util/test_util.h"

namespace rseqmalloc_test {
namespace {

constexpr size_t kMiB = size_t{1} << 20;
constexpr int kLiveSlots = 128;           // live blocks per thread
constexpr size_t kTotalLiveBytesCap = 128 * kMiB;  // bounds the RSS
constexpr int kMailboxSlots = 32;

struct Block {
  void* p = nullptr;
  size_t size = 0;
  uint64_t key = 0;
};

struct Mailbox {
  std::mutex mu;
  Block slots[kMailboxSlots];
  int count = 0;
};

struct Shared {
  explicit Shared(int n) : mailboxes(n), threads(n) {}
  std::vector<Mailbox> mailboxes;
  struct PerThread {
    Block live[kLiveSlots];
    long allocs = 0;
    long frees = 0;
    long corrupted = 0;
    long failed = 0;
    long overlaps = 0;
    std::string first_error;
  };
  std::vector<PerThread> threads;
  std::atomic<bool> stop{false};
};

double StressSeconds() {
  const char* s = getenv("RSEQMALLOC_STRESS_SECONDS");
  if (s != nullptr && *s != '\0') return atof(s);
  return 2.0;
}

size_t PickSize(Rng& rng) {
  // Mostly small, a tail up to 1 MiB: 7 in 8 below 1 KiB.
  return rng.Below(8) != 0 ? rng.LogUniform(1, 1024)
                           : rng.LogUniform(1, kMiB);
}

void CheckAndFree(Shared::PerThread& me, const Block& b, const char* where) {
  size_t bad = FindPatternMismatch(b.p, b.size, b.key);
  if (bad != b.size) {
    if (me.corrupted++ == 0) {
      me.first_error = std::string(where) + ": block of " +
                       std::to_string(b.size) + " B corrupted at offset " +
                       std::to_string(bad);
    }
  }
  free(b.p);
  ++me.frees;
}

// Sorted by address, neighbours must not overlap. Returns overlaps found.
long CountOverlaps(std::vector<Block> blocks) {
  std::sort(blocks.begin(), blocks.end(), [](const Block& a, const Block& b) {
    return a.p < b.p;
  });
  long overlaps = 0;
  for (size_t i = 0; i + 1 < blocks.size(); ++i) {
    auto end = static_cast<char*>(blocks[i].p) + blocks[i].size;
    if (end > static_cast<char*>(blocks[i + 1].p)) ++overlaps;
  }
  return overlaps;
}

void Worker(Shared* shared, int id, uint64_t seed) {
  Rng rng(seed);
  Shared::PerThread& me = shared->threads[id];
  const int n = static_cast<int>(shared->mailboxes.size());
  const size_t kLiveBytesCap = std::max(2 * kMiB, kTotalLiveBytesCap / n);
  size_t live_bytes = 0;
  long iteration = 0;
  while (!shared->stop.load(std::memory_order_relaxed)) {
    ++iteration;
    Block& slot = me.live[rng.Below(kLiveSlots)];
    uint64_t op = rng.Below(16);
    if (slot.p == nullptr) {
      size_t size = PickSize(rng);
      if (live_bytes + size > kLiveBytesCap) continue;
      slot.p = malloc(size);
      if (slot.p == nullptr) {
        ++me.failed;
        continue;
      }
      ++me.allocs;
      slot.size = size;
      slot.key = PatternKey(slot.p, size, seed + iteration);
      FillPattern(slot.p, size, slot.key);
      live_bytes += size;
    } else if (op < 3) {
      // realloc to a new size; the common prefix must survive.
      size_t size = PickSize(rng);
      if (live_bytes - slot.size + size > kLiveBytesCap) continue;
      void* q = realloc(slot.p, size);
      if (q == nullptr) {
        ++me.failed;
        continue;
      }
      size_t kept = std::min(size, slot.size);
      size_t bad = FindPatternMismatch(q, kept, slot.key);
      if (bad != kept && me.corrupted++ == 0) {
        me.first_error = "realloc " + std::to_string(slot.size) + " -> " +
                         std::to_string(size) + " lost byte " +
                         std::to_string(bad);
      }
      live_bytes = live_bytes - slot.size + size;
      slot.p = q;
      slot.size = size;
      slot.key = PatternKey(q, size, seed + iteration);
      FillPattern(q, size, slot.key);
    } else if (op < 9) {
      // Post to another thread; if its mailbox is full, free here.
      Mailbox& box = shared->mailboxes[rng.Below(n)];
      bool posted = false;
      {
        std::lock_guard<std::mutex> lock(box.mu);
        if (box.count < kMailboxSlots) {
          box.slots[box.count++] = slot;
          posted = true;
        }
      }
      if (!posted) CheckAndFree(me, slot, "local free");
      live_bytes -= slot.size;
      slot = Block{};
    } else {
      CheckAndFree(me, slot, "local free");
      live_bytes -= slot.size;
      slot = Block{};
    }
    if ((iteration & 15) == 0) {
      // Drain own mailbox: blocks other threads allocated.
      Block got[kMailboxSlots];
      int count;
      {
        std::lock_guard<std::mutex> lock(shared->mailboxes[id].mu);
        count = shared->mailboxes[id].count;
        std::copy(shared->mailboxes[id].slots,
                  shared->mailboxes[id].slots + count, got);
        shared->mailboxes[id].count = 0;
      }
      for (int i = 0; i < count; ++i) CheckAndFree(me, got[i], "cross free");
    }
    if ((iteration & 4095) == 0) {
      std::vector<Block> sample;
      for (const Block& b : me.live) {
        if (b.p != nullptr) sample.push_back(b);
      }
      me.overlaps += CountOverlaps(std::move(sample));
    }
  }
}

class CrossThreadStress : public testing::TestWithParam<int> {};

TEST_P(CrossThreadStress, PatternsSurviveCrossThreadFrees) {
  const int n = GetParam();
  Shared shared(n);
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i) {
    threads.emplace_back(Worker, &shared, i, 1000 + i);
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(StressSeconds()));
  shared.stop = true;
  for (std::thread& t : threads) t.join();

  // Gather every block still live anywhere: no two may overlap.
  std::vector<Block> all;
  for (auto& t : shared.threads) {
    for (const Block& b : t.live) {
      if (b.p != nullptr) all.push_back(b);
    }
  }
  for (Mailbox& box : shared.mailboxes) {
    all.insert(all.end(), box.slots, box.slots + box.count);
  }
  EXPECT_EQ(CountOverlaps(all), 0) << "live blocks overlap";

  Shared::PerThread totals;
  for (const Block& b : all) CheckAndFree(totals, b, "final free");
  for (auto& t : shared.threads) {
    totals.allocs += t.allocs;
    totals.frees += t.frees;
    totals.corrupted += t.corrupted;
    totals.failed += t.failed;
    totals.overlaps += t.overlaps;
    if (totals.first_error.empty()) totals.first_error = t.first_error;
  }
  EXPECT_EQ(totals.corrupted, 0) << totals.first_error;
  EXPECT_EQ(totals.overlaps, 0);
  EXPECT_EQ(totals.failed, 0) << "allocations returned NULL";
  EXPECT_EQ(totals.allocs, totals.frees) << "not everything was freed";
  EXPECT_GT(totals.allocs, 1000) << "the stress barely ran";
  RecordProperty("allocations", std::to_string(totals.allocs));
}

INSTANTIATE_TEST_SUITE_P(Threads, CrossThreadStress, testing::Values(16, 64),
                         [](const testing::TestParamInfo<int>& info) {
                           return std::to_string(info.param) + "Threads";
                         });

}  // namespace
}  // namespace rseqmalloc_test
