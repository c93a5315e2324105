// PopOnce / PushOnce: the one-attempt forms that fast paths use. An aborted
// section leaves garbage in its result registers, so an abort must read as
// a miss (nullptr / false) with id == kAborted, never as a hit. With delays
// injected between reading the id and committing, 16 threads on 2 cores
// move unique tokens through a per-CPU slab, retrying aborted attempts:
// every token must survive exactly once, and aborts must have been seen.
#include <sys/mman.h>

#include <atomic>
#include <cstdint>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "rseq/cpus.h"
#include "rseq/primitives.h"
#include "rseq/registration.h"

namespace rseqmalloc::rseq {
namespace {

constexpr unsigned kShift = 12;            // 4 KiB per id
constexpr std::uint16_t kBegin = 8;        // slots 8.. (header of class 0 at 0)
constexpr std::uint16_t kEnd = 8 + 256;
constexpr int kTokensPerId = 64;

template <IndexMode kMode>
void RunTokens() {
  ASSERT_NE(RegisterCurrentThread(), Registration::kUnavailable);
  const int ids = NumPossibleCpus();
  const size_t bytes = static_cast<size_t>(ids) << kShift;
  void* base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  ASSERT_NE(base, MAP_FAILED);
  // Each id's class 0 starts with kTokensPerId tokens: 1-based, unique.
  std::vector<bool> seen(static_cast<size_t>(ids) * kTokensPerId + 1, false);
  for (int id = 0; id < ids; ++id) {
    char* region = static_cast<char*>(base) + (static_cast<size_t>(id) << kShift);
    auto** slots = reinterpret_cast<std::uintptr_t**>(region);
    for (int i = 0; i < kTokensPerId; ++i) {
      slots[kBegin + i] = reinterpret_cast<std::uintptr_t*>(
          static_cast<std::uintptr_t>(id) * kTokensPerId + i + 1);
    }
    *reinterpret_cast<std::uint32_t*>(region) =
        static_cast<std::uint32_t>(kBegin + kTokensPerId) | (std::uint32_t{kEnd} << 16);
  }

  std::atomic<std::uint64_t> aborts{0};
  internal::SetInjectedDelaySpins(200);
  std::vector<std::thread> threads;
  for (int t = 0; t < 16; ++t) {
    threads.emplace_back([&] {
      RegisterCurrentThread();
      std::uint64_t my_aborts = 0;
      for (int i = 0; i < 20000; ++i) {
        int id;
        void* token = RseqOpsWithDelay::PopOnce<kMode>(base, kShift, 0, kBegin, &id);
        if (token == nullptr) {
          if (id == kAborted) ++my_aborts;
          continue;
        }
        // Put it back; an aborted or full attempt has not stored it.
        while (!RseqOpsWithDelay::PushOnce<kMode>(base, kShift, 0, token, &id)) {
          if (id == kAborted) ++my_aborts;
        }
      }
      aborts.fetch_add(my_aborts);
    });
  }
  for (auto& th : threads) th.join();
  internal::SetInjectedDelaySpins(0);

  int total = 0;
  for (int id = 0; id < ids; ++id) {
    char* region = static_cast<char*>(base) + (static_cast<size_t>(id) << kShift);
    std::uint16_t current = *reinterpret_cast<std::uint16_t*>(region);
    auto** slots = reinterpret_cast<std::uintptr_t**>(region);
    for (int s = kBegin; s < current; ++s) {
      auto token = reinterpret_cast<std::uintptr_t>(slots[s]);
      ASSERT_GE(token, 1u);
      ASSERT_LT(token, seen.size());
      EXPECT_FALSE(seen[token]) << "token " << token << " duplicated";
      seen[token] = true;
      ++total;
    }
  }
  EXPECT_EQ(total, ids * kTokensPerId) << "tokens lost";
  EXPECT_GT(aborts.load(), 0u) << "no attempt aborted: the test proved nothing";
  munmap(base, bytes);
}

TEST(OnceOps, AbortReadsAsMissCpuId) { RunTokens<IndexMode::kCpuId>(); }

TEST(OnceOps, AbortReadsAsMissMmCid) {
  if (!MmCidSupported()) GTEST_SKIP() << "kernel without mm_cid";
  RunTokens<IndexMode::kMmCid>();
}

}  // namespace
}  // namespace rseqmalloc::rseq
