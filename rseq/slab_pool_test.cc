// A second user of PercpuSlab, unrelated to the allocator: a per-CPU pool of
// fixed-size nodes (say, request descriptors) in front of a locked global
// list. Threads get and put nodes; a miss refills a few from the global
// list and grows the CPU's stack; a full stack spills half of it back. Each
// node records its holder with an atomic exchange, so a node handed to two
// threads at once is caught; at the end every node is back exactly once.
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "gtest/gtest.h"
#include "rseq/registration.h"
#include "rseq/slab.h"
#include "rseq/test_util.h"

namespace rseqmalloc::rseq {
namespace {

struct Node {
  std::atomic<int> holder{-1};  // thread index, -1 when pooled
  std::uint64_t uses = 0;
};

class NodePool {
 public:
  static constexpr std::size_t kClass = 0;
  static constexpr std::uint32_t kMaxPerCpu = 64;
  static constexpr int kRefill = 8;

  explicit NodePool(int nodes) : storage_(static_cast<std::size_t>(nodes)) {
    for (Node& n : storage_) global_.push_back(&n);
    std::uint32_t capacity[1] = {kMaxPerCpu};
    ok_ = slab_.Init(capacity, 1);
    if (ok_) slab_.Start(MmCidSupported() ? IndexMode::kMmCid : IndexMode::kCpuId);
  }
  ~NodePool() { slab_.Release(); }
  bool ok() const { return ok_; }

  Node* Get() {
    void* p = slab_.Pop(kClass, [this] { return Refill(); });
    return static_cast<Node*>(p);
  }

  void Put(Node* n) {
    slab_.Push(kClass, n, [this, n] { Spill(n); });
  }

  // Everything back into the global list (test end).
  std::vector<Node*> DrainAll() {
    for (int id = 0; id < slab_.num_ids(); ++id) {
      slab_.Drain(id, [](void* self, std::size_t, void* const* nodes, int count) {
        auto* pool = static_cast<NodePool*>(self);
        for (int i = 0; i < count; ++i) pool->global_.push_back(static_cast<Node*>(nodes[i]));
      }, this);
    }
    return global_;
  }

 private:
  // A miss: grow this CPU's stack a little, refill it, return one node.
  void* Refill() {
    int id = -1;
    std::vector<Node*> got;
    {
      std::lock_guard<std::mutex> hold(lock_);
      for (int i = 0; i < kRefill && !global_.empty(); ++i) {
        got.push_back(global_.back());
        global_.pop_back();
      }
      id = slab_.CurrentId();
      if (id >= 0) slab_.Grow(id, kClass, kRefill);
    }
    if (got.empty()) return nullptr;
    for (std::size_t i = 1; i < got.size(); ++i) {
      int ran_on;
      if (!slab_.PushRetrying(kClass, got[i], &ran_on)) Return(got[i]);
    }
    return got[0];
  }

  // Full (or unregistered): the node goes back to the global list.
  void Spill(Node* n) { Return(n); }

  void Return(Node* n) {
    std::lock_guard<std::mutex> hold(lock_);
    global_.push_back(n);
  }

  PercpuSlab slab_;
  bool ok_ = false;
  std::mutex lock_;  // guards global_ and capacity changes (one lock is enough here)
  std::vector<Node> storage_;
  std::vector<Node*> global_;
};

TEST(SlabPool, NodesAreNeverSharedAndNeverLost) {
  ASSERT_NE(RegisterCurrentThread(), Registration::kUnavailable);
  constexpr int kNodes = 512;
  constexpr int kThreads = 24;
  auto pool = std::make_unique<NodePool>(kNodes);
  ASSERT_TRUE(pool->ok());
  std::atomic<int> shared{0};
  std::atomic<std::uint64_t> gets{0};
  testing::RunThreads(kThreads, [&](int thread) {
    std::vector<Node*> mine;
    unsigned rng = thread * 7919u + 1;
    for (int i = 0; i < 20000; ++i) {
      rng = rng * 1103515245u + 12345u;
      if (((rng >> 16) % 3 != 0 || mine.empty()) && mine.size() < 16) {
        Node* n = pool->Get();
        if (n == nullptr) continue;  // every node is out
        if (n->holder.exchange(thread) != -1) shared.fetch_add(1);
        ++n->uses;
        mine.push_back(n);
        gets.fetch_add(1, std::memory_order_relaxed);
      } else {
        Node* n = mine.back();
        mine.pop_back();
        if (n->holder.exchange(-1) != thread) shared.fetch_add(1);
        pool->Put(n);
      }
    }
    for (Node* n : mine) {
      n->holder.store(-1);
      pool->Put(n);
    }
  });
  EXPECT_EQ(shared.load(), 0) << "a node was handed to two threads at once";
  EXPECT_GT(gets.load(), 100000u);
  std::vector<Node*> back = pool->DrainAll();
  std::sort(back.begin(), back.end());
  EXPECT_EQ(back.size(), static_cast<std::size_t>(kNodes));
  EXPECT_EQ(std::adjacent_find(back.begin(), back.end()), back.end()) << "a node came back twice";
}

}  // namespace
}  // namespace rseqmalloc::rseq
