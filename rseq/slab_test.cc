// PercpuSlab: layout, the fast paths' contract on one id, every capacity
// change, and a hammer where 32 threads (on 2 CPUs) move unique tokens
// through the slab while another thread evicts, shrinks and drains ids from
// outside and a signal storm lands in the middle of sections. Every
// configuration runs with the rseq sections, with the portable reference
// (the oracle: same contract under a lock per id) and with a delay inside
// every section, where restarts must happen and change nothing.
#include "rseq/slab.h"

#include <sched.h>
#include <time.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include "gtest/gtest.h"
#include "rseq/cpus.h"
#include "rseq/registration.h"
#include "rseq/restarts.h"
#include "rseq/test_util.h"

namespace rseqmalloc::rseq {
namespace {

template <typename ImplT, IndexMode kModeV, bool kDelayV = false>
struct SlabConfig {
  using Impl = ImplT;
  static constexpr IndexMode kMode = kModeV;
  static constexpr bool kDelayed = kDelayV;
};

struct SlabConfigNames {
  template <typename T>
  static std::string GetName(int) {
    std::string impl = T::kDelayed ? "SectionsDelayed"
                       : T::Impl::kIsReference ? "Reference"
                                               : "Sections";
    return impl + (T::kMode == IndexMode::kCpuId ? "CpuId" : "MmCid");
  }
};

constexpr std::uint32_t kCapacity[] = {0, 8, 32, 2, 100};
constexpr int kClasses = 5;
constexpr std::size_t kSecondClass = 2;

void* Token(std::uintptr_t n) { return reinterpret_cast<void*>(n * 16); }

template <typename C>
class SlabTest : public ::testing::Test {
 protected:
  void SetUp() override {
    RSEQMALLOC_SKIP_IF_UNSUPPORTED(C);
    ASSERT_NE(RegisterCurrentThread(), Registration::kUnavailable);
    slab_ = std::make_unique<PercpuSlab>();
    ASSERT_TRUE(slab_->Init(kCapacity, kClasses));
  }
  void TearDown() override {
    internal::SetInjectedDelaySpins(0);
    if (slab_) slab_->Release();
  }

  void* Pop(std::size_t cls) {
    return slab_->Pop<typename C::Impl, C::kDelayed>(cls, [] { return static_cast<void*>(nullptr); });
  }
  bool Push(std::size_t cls, void* item) {
    bool done = true;
    slab_->Push<typename C::Impl, C::kDelayed>(cls, item, [&done] { done = false; });
    return done;
  }

  std::unique_ptr<PercpuSlab> slab_;
};

using Configs = ::testing::Types<SlabConfig<SlabSections, IndexMode::kCpuId>,
                                 SlabConfig<SlabSections, IndexMode::kMmCid>,
                                 SlabConfig<SlabReference, IndexMode::kCpuId>,
                                 SlabConfig<SlabReference, IndexMode::kMmCid>,
                                 SlabConfig<SlabSections, IndexMode::kCpuId, true>,
                                 SlabConfig<SlabSections, IndexMode::kMmCid, true>>;
TYPED_TEST_SUITE(SlabTest, Configs, SlabConfigNames);

// Every class's first slot has a 0 below it, classes do not overlap, and
// nothing is in use before the first Grow.
TYPED_TEST(SlabTest, LayoutLeavesAZeroBelowEveryClass) {
  PercpuSlab& slab = *this->slab_;
  std::uint32_t previous_end = 0;
  for (int cls = 1; cls < kClasses; ++cls) {
    EXPECT_EQ(slab.max_capacity(cls), kCapacity[cls]);
    EXPECT_GT(slab.begin(cls), previous_end) << "no marker slot below class " << cls;
    EXPECT_GE(slab.begin(cls) * 8, 4 * kClasses + 8) << "class " << cls << " in the headers";
    previous_end = slab.begin(cls) + slab.max_capacity(cls);
    for (int id = 0; id < slab.num_ids(); ++id) {
      EXPECT_EQ(slab.FillOf(id, cls).capacity, 0u);
    }
  }
}

// A region holds 2^kSlabShift / 8 slots, headers and markers included:
// ranges that fill it exactly less one fit, one more does not, and a
// capacity near 2^32 fails rather than wrapping the count of slots.
TEST(SlabInit, RejectsRangesThatDoNotFitInARegion) {
  const std::uint32_t region_slots = (std::uint32_t{1} << kSlabShift) / 8;
  // The two classes' headers take the first two slots; class 1 then needs
  // a marker, its range, and the region's closing 0.
  const std::uint32_t fits = region_slots - 4;
  for (std::uint32_t capacity : {fits + 1, region_slots, std::uint32_t{0xffffffff}}) {
    const std::uint32_t too_many[2] = {0, capacity};
    PercpuSlab slab;
    EXPECT_FALSE(slab.Init(too_many, 2)) << capacity << " slots";
  }
  const std::uint32_t just[2] = {0, fits};
  PercpuSlab slab;
  ASSERT_TRUE(slab.Init(just, 2));
  EXPECT_EQ(slab.max_capacity(1), fits);
  slab.Release();
}

// Before Start, and in a thread whose area is not registered, every pop
// misses and every push fails.
TYPED_TEST(SlabTest, NotStartedMissesEverywhere) {
  EXPECT_LT(this->slab_->CurrentId(), 0);
  for (int cls = 0; cls < kClasses; ++cls) {
    EXPECT_EQ(this->Pop(cls), nullptr);
    EXPECT_FALSE(this->Push(cls, Token(1)));
  }
}

// A miss returns what the miss function gives, even when that needs no
// call: GCC 12 once returned the section's item register instead (a stale
// value after an abort or for an unregistered thread, 0 on an empty class).
TYPED_TEST(SlabTest, AMissReturnsWhatTheMissGives) {
  PercpuSlab& slab = *this->slab_;
  auto pop = [&slab](std::size_t cls) {
    return slab.Pop<typename TypeParam::Impl, TypeParam::kDelayed>(cls, [] { return Token(7); });
  };
  EXPECT_EQ(pop(kSecondClass), Token(7)) << "not started";
  slab.Start(TypeParam::kMode);
  testing::ScopedPinToCurrentCpu pin;
  const int id = slab.CurrentId();
  ASSERT_GE(id, 0);
  EXPECT_EQ(pop(kSecondClass), Token(7)) << "header 0";
  ASSERT_EQ(slab.Grow(id, kSecondClass, 2), 2u);
  EXPECT_EQ(pop(kSecondClass), Token(7)) << "empty";
  ASSERT_TRUE(this->Push(kSecondClass, Token(3)));
  void* got = pop(kSecondClass);
  // A preemption may move an mm_cid (or abort the pop) even when pinned.
  if (got != Token(3)) {
    EXPECT_EQ(got, Token(7));
  }
}

// On one id: capacity bounds pushes, pops come back in LIFO order, an empty
// class misses, and ShrinkUnused / Evict / Drain move exactly what they say.
TYPED_TEST(SlabTest, OneIdFollowsTheContract) {
  PercpuSlab& slab = *this->slab_;
  slab.Start(TypeParam::kMode);
  testing::ScopedPinToCurrentCpu pin;
  const int id = slab.CurrentId();
  ASSERT_GE(id, 0);
  ASSERT_LT(id, slab.num_ids());
  constexpr std::size_t kCls = kSecondClass;  // 32 slots

  EXPECT_EQ(this->Pop(kCls), nullptr) << "pop on a class with header 0";
  EXPECT_FALSE(this->Push(kCls, Token(1))) << "push on a class with header 0";
  EXPECT_EQ(slab.Grow(id, kCls, 4), 4u);
  for (int i = 1; i <= 4; ++i) EXPECT_TRUE(this->Push(kCls, Token(i)));
  EXPECT_FALSE(this->Push(kCls, Token(5))) << "push beyond capacity";
  EXPECT_EQ(slab.FillOf(id, kCls).cached, 4u);
  EXPECT_EQ(this->Pop(kCls), Token(4));
  EXPECT_EQ(this->Pop(kCls), Token(3));
  // Capacity 4, 2 cached: 2 slots free to take back.
  EXPECT_EQ(slab.ShrinkUnused(id, kCls, 10), 2u);
  EXPECT_FALSE(this->Push(kCls, Token(6)));
  EXPECT_EQ(slab.Grow(id, kCls, 100), 30u) << "grows up to the class's maximum";
  for (int i = 3; i <= 8; ++i) EXPECT_TRUE(this->Push(kCls, Token(i)));  // 8 cached

  std::vector<void*> out;
  auto sink = [](void* context, std::size_t cls, void* const* objects, int n) {
    EXPECT_EQ(cls, kSecondClass);
    auto* v = static_cast<std::vector<void*>*>(context);
    v->insert(v->end(), objects, objects + n);
  };
  ASSERT_TRUE(slab.Evict(id, kCls, 5, sink, &out));
  EXPECT_EQ(out, (std::vector<void*>{Token(6), Token(7), Token(8)})) << "the objects above 5";
  EXPECT_EQ(slab.FillOf(id, kCls).capacity, 5u);
  EXPECT_EQ(slab.FillOf(id, kCls).cached, 5u);
  EXPECT_FALSE(this->Push(kCls, Token(9)));
  EXPECT_EQ(this->Pop(kCls), Token(5));

  if (!slab.RemoteAvailable()) GTEST_SKIP() << "no membarrier: no drain";
  out.clear();
  EXPECT_GT(slab.ResidentBytes(id), 0u);
  ASSERT_TRUE(slab.Drain(id, sink, &out));
  // (Before anything reads the region again: a read maps the shared zero
  // page, which mincore counts and RSS does not.)
  EXPECT_EQ(slab.ResidentBytes(id), 0u) << "a drained id keeps its pages";
  EXPECT_EQ(out, (std::vector<void*>{Token(1), Token(2), Token(3), Token(4)}));
  EXPECT_EQ(slab.FillOf(id, kCls).capacity, 0u);
  EXPECT_EQ(this->Pop(kCls), nullptr);
  EXPECT_FALSE(this->Push(kCls, Token(10)));
  // The region comes back as zeros: every class works again from capacity 0.
  for (int cls = 1; cls < kClasses; ++cls) EXPECT_EQ(slab.FillOf(id, cls).capacity, 0u);
  EXPECT_EQ(slab.Grow(id, kCls, 2), 2u);
  EXPECT_TRUE(this->Push(kCls, Token(11)));
  EXPECT_EQ(this->Pop(kCls), Token(11));
  EXPECT_EQ(this->Pop(kCls), nullptr) << "the begin marker is 0 again";
}

// The sections and the slow paths agree on where every id's region is (the
// shift, the header and slot offsets): on each CPU the thread may run on, in
// cpu_id mode (the only mode whose id is chosen by where the thread runs), a
// push through the sections is what FillOf finds on that id and on
// no other, and a pop gets it back.
TYPED_TEST(SlabTest, SectionsAndSlowPathsAgreeOnEveryId) {
  if (TypeParam::kMode != IndexMode::kCpuId) GTEST_SKIP() << "ids follow CPUs in cpu mode";
  PercpuSlab& slab = *this->slab_;
  slab.Start(IndexMode::kCpuId);
  cpu_set_t allowed;
  ASSERT_EQ(sched_getaffinity(0, sizeof(allowed), &allowed), 0);
  constexpr std::size_t kCls = kClasses - 1;  // the last class: furthest into the region
  int checked = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE && cpu < slab.num_ids(); ++cpu) {
    if (!CPU_ISSET(cpu, &allowed)) continue;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    ASSERT_EQ(sched_setaffinity(0, sizeof(one), &one), 0);
    sched_yield();
    if (slab.CurrentId() != cpu) continue;  // moved already (a hotplug race): next
    ASSERT_EQ(slab.Grow(cpu, kCls, 3), 3u);
    ASSERT_TRUE(this->Push(kCls, Token(1000 + cpu)));
    for (int id = 0; id < slab.num_ids(); ++id) {
      EXPECT_EQ(slab.FillOf(id, kCls).cached, id == cpu ? 1u : 0u) << "pushed on cpu " << cpu;
    }
    EXPECT_EQ(this->Pop(kCls), Token(1000 + cpu)) << "on cpu " << cpu;
    EXPECT_EQ(slab.FillOf(cpu, kCls).cached, 0u);
    ++checked;
  }
  ASSERT_EQ(sched_setaffinity(0, sizeof(allowed), &allowed), 0);
  EXPECT_GT(checked, 0);
  std::printf("checked %d ids\n", checked);
}

// Batches move what fits, top first out, in one section each.
TYPED_TEST(SlabTest, BatchesMoveWhatFits) {
  PercpuSlab& slab = *this->slab_;
  slab.Start(TypeParam::kMode);
  testing::ScopedPinToCurrentCpu pin;
  const int id = slab.CurrentId();
  ASSERT_GE(id, 0);
  using Impl = typename TypeParam::Impl;
  constexpr bool kDelay = TypeParam::kDelayed;
  void* items[10];
  for (int i = 0; i < 10; ++i) items[i] = Token(i + 1);
  int ran_on = -5;
  EXPECT_EQ((slab.PushBatch<Impl, kDelay>(kSecondClass, items, 10, &ran_on)), 0)
      << "no capacity yet";
  EXPECT_EQ(ran_on, id);
  slab.Grow(id, kSecondClass, 8);
  EXPECT_EQ((slab.PushBatch<Impl, kDelay>(kSecondClass, items, 10, &ran_on)), 8);
  void* out[10] = {};
  EXPECT_EQ((slab.PopBatch<Impl, kDelay>(kSecondClass, out, 3, &ran_on)), 3);
  EXPECT_EQ(out[0], Token(8));
  EXPECT_EQ(out[1], Token(7));
  EXPECT_EQ(out[2], Token(6));
  EXPECT_EQ((slab.PopBatch<Impl, kDelay>(kSecondClass, out, 10, &ran_on)), 5);
  EXPECT_EQ(out[0], Token(5));
  EXPECT_EQ(out[4], Token(1));
  EXPECT_EQ((slab.PopBatch<Impl, kDelay>(kSecondClass, out, 10, &ran_on)), 0) << "empty";
  // A batch of none moves none (the copy loop must not run once anyway).
  slab.Push<Impl, kDelay>(kSecondClass, Token(20), [] {});
  EXPECT_EQ((slab.PushBatch<Impl, kDelay>(kSecondClass, items, 0, &ran_on)), 0);
  EXPECT_EQ((slab.PopBatch<Impl, kDelay>(kSecondClass, out, 0, &ran_on)), 0);
  EXPECT_EQ(slab.FillOf(id, kSecondClass).cached, 1u);
  EXPECT_EQ(this->Pop(kSecondClass), Token(20));
  EXPECT_EQ(this->Pop(kSecondClass), nullptr);
}

// The retrying slow-path forms report where they ran.
TYPED_TEST(SlabTest, RetryingFormsReportTheirId) {
  PercpuSlab& slab = *this->slab_;
  slab.Start(TypeParam::kMode);
  testing::ScopedPinToCurrentCpu pin;
  int id = slab.CurrentId();
  ASSERT_GE(id, 0);
  int ran_on = -5;
  EXPECT_FALSE(slab.PushRetrying(1, Token(1), &ran_on));
  EXPECT_EQ(ran_on, id);
  slab.Grow(id, 1, 1);
  EXPECT_TRUE(slab.PushRetrying(1, Token(1), &ran_on));
  EXPECT_EQ(slab.PopRetrying(1, &ran_on), Token(1));
  EXPECT_EQ(ran_on, id);
}

// --- Hammer -----------------------------------------------------------------

constexpr int kThreads = 32;
constexpr int kTokensPerThread = 24;
constexpr int kHand = 48;
constexpr double kSeconds = 0.4;

double Now() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

// Tokens outside the slab and every hand: a locked pool, and a lock-free
// array for what a signal handler could not push back.
struct Pool {
  std::mutex lock;
  std::vector<void*> tokens;
  void Put(void* const* items, int n) {
    std::lock_guard<std::mutex> hold(lock);
    tokens.insert(tokens.end(), items, items + n);
  }
  void* Take() {
    std::lock_guard<std::mutex> hold(lock);
    if (tokens.empty()) return nullptr;
    void* t = tokens.back();
    tokens.pop_back();
    return t;
  }
};
Pool g_pool;
void* g_handler_spill[1 << 16];
std::atomic<int> g_handler_spills{0};
PercpuSlab* g_slab = nullptr;

void ToPool(void*, std::size_t, void* const* objects, int n) { g_pool.Put(objects, n); }

template <typename C>
void HandlerWork() {
  if constexpr (!C::Impl::kIsReference) {  // the reference locks: not in a handler
    static std::atomic<unsigned> turn{0};
    std::size_t cls = 1 + turn.fetch_add(1, std::memory_order_relaxed) % (kClasses - 1);
    void* t = g_slab->Pop<typename C::Impl, C::kDelayed>(cls, [] { return static_cast<void*>(nullptr); });
    if (t == nullptr) return;
    g_slab->Push<typename C::Impl, C::kDelayed>(cls, t, [t] {
      g_handler_spill[g_handler_spills.fetch_add(1, std::memory_order_relaxed)] = t;
    });
  }
}

void NoWork() {}

// Capacity changes are exclusive per id: the workers' Grow and the
// maintainer's Evict / ShrinkUnused / Drain take the id's mutex.
std::mutex g_id_locks[kMaxPossibleCpusFallback];

TYPED_TEST(SlabTest, TokensSurviveOversubscriptionRemoteChangesAndSignals) {
  PercpuSlab& slab = *this->slab_;
  if (!slab.RemoteAvailable()) GTEST_SKIP() << "no membarrier(PRIVATE_EXPEDITED_RSEQ)";
  slab.Start(TypeParam::kMode);
  g_slab = &slab;
  g_pool.tokens.clear();
  g_handler_spills.store(0);
  const int total = kThreads * kTokensPerThread;
  for (int t = 1; t <= total; ++t) g_pool.tokens.push_back(Token(t));
  if (TypeParam::kDelayed) internal::SetInjectedDelaySpins(300);
  const std::uint64_t restarts_before = RestartCount();

  std::atomic<bool> workers_done{false};
  std::atomic<std::uint64_t> remote_ops{0};
  std::thread maintainer([&] {
    unsigned rng = 99;
    while (!workers_done.load()) {
      rng = rng * 1103515245u + 12345u;
      int id = static_cast<int>((rng >> 8) % static_cast<unsigned>(slab.num_ids()));
      std::size_t cls = 1 + (rng >> 16) % (kClasses - 1);
      std::lock_guard<std::mutex> hold(g_id_locks[id]);
      switch ((rng >> 24) % 3) {
        case 0: slab.Drain(id, ToPool, nullptr); break;
        case 1: slab.Evict(id, cls, (rng >> 4) % 4, ToPool, nullptr); break;
        default: slab.ShrinkUnused(id, cls, 1); break;
      }
      remote_ops.fetch_add(1);
      sched_yield();
    }
  });

  std::vector<std::vector<void*>> hands(kThreads);
  std::atomic<int> bad_ids{0};
  const double deadline = Now() + kSeconds;
  std::int64_t handled = testing::RunThreads(
      kThreads,
      [&](int thread) {
        std::vector<void*>& hand = hands[thread];
        hand.reserve(kHand + 1);
        unsigned rng = thread * 2654435761u + 7;
        for (std::int64_t i = 0; i < 2000 || Now() < deadline; ++i) {
          rng = rng * 1103515245u + 12345u;
          std::size_t cls = 1 + (rng >> 16) % (kClasses - 1);
          if ((rng >> 24) % 16 == 0) {
            // Now and then a batch each way: the slow paths' sections.
            int ran_on;
            if ((rng >> 28) & 1) {
              void* give[4];
              int n = 0;
              while (n < 4 && !hand.empty()) {
                give[n++] = hand.back();
                hand.pop_back();
              }
              int k = slab.PushBatch<typename TypeParam::Impl, TypeParam::kDelayed>(
                  cls, give, static_cast<unsigned>(n), &ran_on);
              hand.insert(hand.end(), give + k, give + n);  // what did not fit
            } else if (hand.size() + 4 <= kHand) {
              void* got[4];
              int k = slab.PopBatch<typename TypeParam::Impl, TypeParam::kDelayed>(cls, got, 4,
                                                                                 &ran_on);
              hand.insert(hand.end(), got, got + k);
            }
            continue;
          }
          if (((rng >> 20) & 1) && !hand.empty()) {
            if (!this->Push(cls, hand.back())) {
              int id = slab.CurrentId();
              if (id < 0 || id >= slab.num_ids()) {
                bad_ids.fetch_add(1);
                continue;
              }
              std::lock_guard<std::mutex> hold(g_id_locks[id]);
              slab.Grow(id, cls, 1);
              continue;  // keep the token; try again later
            }
            hand.pop_back();
          } else if (hand.size() < kHand) {
            void* t = this->Pop(cls);
            if (t == nullptr) t = g_pool.Take();
            if (t != nullptr) hand.push_back(t);
          }
        }
      },
      TypeParam::Impl::kIsReference ? nullptr : &HandlerWork<TypeParam>);
  workers_done.store(true);
  maintainer.join();
  internal::SetInjectedDelaySpins(0);
  EXPECT_EQ(bad_ids.load(), 0);
  if (!TypeParam::Impl::kIsReference) {
    EXPECT_GT(handled, 0) << "the signal storm never hit";
  }
  EXPECT_GT(remote_ops.load(), 0u);

  // Everything left in the slab goes to the pool; then every token must be
  // somewhere exactly once.
  for (int id = 0; id < slab.num_ids(); ++id) ASSERT_TRUE(slab.Drain(id, ToPool, nullptr));
  std::map<void*, int> seen;
  for (const auto& hand : hands) {
    for (void* t : hand) ++seen[t];
  }
  for (void* t : g_pool.tokens) ++seen[t];
  for (int i = 0; i < g_handler_spills.load(); ++i) ++seen[g_handler_spill[i]];
  EXPECT_EQ(seen.size(), static_cast<std::size_t>(total)) << "tokens lost or invented";
  for (const auto& [token, count] : seen) {
    auto value = reinterpret_cast<std::uintptr_t>(token);
    EXPECT_EQ(count, 1) << "token " << value / 16 << " present " << count << " times";
    EXPECT_TRUE(value % 16 == 0 && value >= 16 && value <= std::uintptr_t{16} * total)
        << "foreign value " << value;
  }
  std::uint64_t restarts = RestartCount() - restarts_before;
  std::printf("restarts: %llu, remote operations: %llu, signals: %lld\n",
              static_cast<unsigned long long>(restarts),
              static_cast<unsigned long long>(remote_ops.load()), static_cast<long long>(handled));
  if (TypeParam::kDelayed) {
    EXPECT_GT(restarts, 0u) << "no section was ever restarted";
  }
}

// A section that aborts is never a hit and never loses its item: with a
// long delay inside every pop and a signal storm, each call that saw an
// abort must have missed, and the stack must still hold what it held.
TYPED_TEST(SlabTest, AbortedPopIsAMissAndKeepsTheItem) {
  if (!TypeParam::kDelayed) GTEST_SKIP() << "needs the delaying sections";
  PercpuSlab& slab = *this->slab_;
  slab.Start(TypeParam::kMode);
  internal::SetInjectedDelaySpins(2000);
  std::atomic<std::int64_t> aborted_calls{0}, wrong{0};
  testing::RunThreads(
      4,
      [&](int thread) {
        testing::ScopedPinToCurrentCpu pin;
        int id = slab.CurrentId();
        {
          std::lock_guard<std::mutex> hold(g_id_locks[id]);
          slab.Grow(id, 4, 100);
        }
        for (int i = 0; i < 3000; ++i) {
          void* mine = Token(1000 + thread * 10000 + i);
          if (!this->Push(4, mine)) continue;
          std::uint64_t before = ThreadRestartCount();
          void* got = this->Pop(4);
          if (ThreadRestartCount() != before) {
            aborted_calls.fetch_add(1);
            // The aborted pop reported a miss; the token is still there.
            if (got != nullptr) wrong.fetch_add(1);
            int ran_on;
            got = slab.PopRetrying(4, &ran_on);
            // An mm_cid may change at a preemption even on a pinned thread;
            // only a pop on the same id must find the stack non-empty.
            if (got == nullptr && ran_on != id) continue;
          }
          if (got == nullptr) wrong.fetch_add(1);
        }
      },
      &NoWork);
  internal::SetInjectedDelaySpins(0);
  EXPECT_GT(aborted_calls.load(), 0) << "no pop was aborted";
  EXPECT_EQ(wrong.load(), 0);
}

}  // namespace
}  // namespace rseqmalloc::rseq
