// The page heap's release policy: the cap on free resident pages, the delay
// (with an injected clock), the sweep, and releases racing with allocation.
#include <gtest/gtest.h>

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "allocator/pages/page_heap.h"
#include "allocator/pages/page_heap_test_util.h"

namespace rseqmalloc::internal {
namespace {

// Heaps must outlive their memory, so each test gets its own static heap.
constinit PageHeap g_cap, g_release, g_timed, g_slack, g_weighted, g_late, g_growth, g_racing,
    g_absorb, g_walk, g_shuffle;

// The injected clock of the release-policy tests.
std::atomic<uint64_t> g_fake_now{1'000'000'000};
uint64_t FakeNow() { return g_fake_now.load(); }
constexpr uint64_t kSecond = 1'000'000'000;

TEST(PageHeap, CapReturnsOldestSpansToTheOs) {
  g_cap.SetFreeCap(1 << 20);
  std::vector<Span*> spans;
  for (int i = 0; i < 64; ++i) {
    Span* s = g_cap.New(8, kLargeClass);  // 64 KiB each, 4 MiB in all
    ASSERT_NE(s, nullptr);
    memset(s->start(), 0x77, s->bytes());
    spans.push_back(s);
  }
  std::vector<std::pair<void*, size_t>> ranges;
  for (Span* s : spans) ranges.emplace_back(s->start(), s->bytes());
  for (Span* s : spans) g_cap.Delete(s);
  PageHeapStats st;
  g_cap.GetStats(&st);
  EXPECT_LE(st.free_backed_bytes, size_t{1} << 20);
  EXPECT_GE(st.released_bytes_total, size_t{3} << 20);
  EXPECT_EQ(st.released_cap_bytes, st.released_bytes_total);
  size_t resident = 0;
  for (auto& [p, n] : ranges) resident += ResidentBytes(p, n);
  EXPECT_LE(resident, size_t{1} << 20);
  ExpectBalanced(&g_cap);
}

TEST(PageHeap, ReleaseAllLeavesOneReturnedRun) {
  std::vector<Span*> spans;
  for (int i = 0; i < 40; ++i) {
    Span* s = g_release.New(1 + i % 5, i % 2 ? kLargeClass : 3);
    ASSERT_NE(s, nullptr);
    memset(s->start(), 1, s->bytes());
    spans.push_back(s);
  }
  for (Span* s : spans) g_release.Delete(s);
  PageHeapStats st;
  g_release.GetStats(&st);
  EXPECT_GT(st.free_backed_bytes, 0u);
  g_release.ReleaseAll();
  g_release.GetStats(&st);
  EXPECT_EQ(st.free_backed_bytes, 0u);
  EXPECT_EQ(st.free_returned_bytes, st.total_bytes);
  // Everything came from one 2 MiB growth, so it coalesces back to one run.
  EXPECT_EQ(st.total_bytes, kGrowPages * kPageSize);
  EXPECT_EQ(st.free_spans, 1u);
}

// A span freed at t stays backed (and is reused) until t + delay, then the
// sweep returns it: its pages stop being resident.
TEST(PageHeap, FreedSpanStaysBackedForTheDelayThenGoesBack) {
  g_timed.SetClock(FakeNow);
  g_timed.SetReleaseDelay(10 * kSecond);
  uint64_t t0 = g_fake_now.load();
  Span* s = g_timed.New(16, kLargeClass);
  ASSERT_NE(s, nullptr);
  void* start = s->start();
  size_t bytes = s->bytes();
  memset(start, 0x5a, bytes);
  g_timed.Delete(s);
  PageHeapStats st;
  g_timed.GetStats(&st);
  EXPECT_EQ(st.free_backed_bytes, bytes);
  EXPECT_EQ(st.next_release_ns, t0 + 10 * kSecond);
  EXPECT_EQ(g_timed.next_release_deadline(), t0 + 10 * kSecond);

  g_fake_now.store(t0 + 5 * kSecond);  // within the delay (and its slack)
  EXPECT_EQ(g_timed.ReleaseExpired(), t0 + 10 * kSecond);
  EXPECT_EQ(ResidentBytes(start, bytes), bytes);

  uint64_t released = 0;
  g_fake_now.store(t0 + 10 * kSecond);
  EXPECT_EQ(g_timed.ReleaseExpired(&released), kNoDeadline);
  EXPECT_EQ(released, bytes);
  EXPECT_EQ(ResidentBytes(start, bytes), 0u);
  g_timed.GetStats(&st);
  EXPECT_EQ(st.free_backed_bytes, 0u);
  EXPECT_EQ(st.released_expired_bytes, bytes);
  EXPECT_EQ(st.next_release_ns, kNoDeadline);
  ExpectBalanced(&g_timed);
}

// A span the program frees takes in a returned neighbour no longer than
// itself when the result is long (returned pieces between resident runs
// fragmented big requests); a longer returned neighbour, a short result, or
// a span returned by the heap itself keep the states apart.
TEST(PageHeap, FreedLongSpanAbsorbsShorterReturnedNeighbour) {
  g_absorb.SetClock(FakeNow);
  g_absorb.SetReleaseDelay(kSecond);
  uint64_t t0 = g_fake_now.load();
  Span* a = g_absorb.New(200, kLargeClass);
  Span* b = g_absorb.New(100, kLargeClass);
  Span* guard1 = g_absorb.New(1, kLargeClass);
  Span* c = g_absorb.New(50, kLargeClass);
  Span* d = g_absorb.New(100, kLargeClass);
  Span* guard2 = g_absorb.New(1, kLargeClass);
  ASSERT_TRUE(a && b && guard1 && c && d && guard2);
  g_fake_now.store(t0);
  g_absorb.Delete(b);
  g_absorb.Delete(d);
  g_fake_now.store(t0 + 2 * kSecond);
  g_absorb.ReleaseExpired();  // b and d are returned now
  PageHeapStats st;
  g_absorb.GetStats(&st);
  const uint64_t returned_before = st.free_returned_bytes;
  const uint64_t spans_before = st.free_spans;
  EXPECT_EQ(st.free_backed_bytes, 0u);

  g_absorb.Delete(a);  // 200 pages next to the returned 100: one resident run
  g_absorb.GetStats(&st);
  EXPECT_EQ(st.free_backed_bytes, 300 * kPageSize);
  EXPECT_EQ(st.free_returned_bytes, returned_before - 100 * kPageSize);
  EXPECT_EQ(st.free_spans, spans_before);

  g_absorb.Delete(c);  // 50 pages next to the returned 100: apart
  g_absorb.GetStats(&st);
  EXPECT_EQ(st.free_backed_bytes, 350 * kPageSize);
  EXPECT_EQ(st.free_returned_bytes, returned_before - 100 * kPageSize);
  EXPECT_EQ(st.free_spans, spans_before + 1);

  // The merged run serves a request as long as both parts together.
  Span* whole = g_absorb.New(300, kLargeClass);
  ASSERT_NE(whole, nullptr);
  g_absorb.GetStats(&st);
  EXPECT_EQ(st.free_backed_bytes, 50 * kPageSize);
  g_absorb.Delete(whole);
  g_absorb.Delete(guard1);
  g_absorb.Delete(guard2);
  ExpectBalanced(&g_absorb);
}

// One sweep also takes what would expire within an eighth of the delay, and
// nothing younger.
TEST(PageHeap, SweepTakesWhatExpiresWithinItsSlack) {
  g_slack.SetClock(FakeNow);
  g_slack.SetReleaseDelay(8 * kSecond);
  uint64_t t0 = g_fake_now.load();
  Span* spans[3];
  for (Span*& s : spans) {
    s = g_slack.New(4, kLargeClass);
    ASSERT_NE(s, nullptr);
    memset(s->start(), 1, s->bytes());
  }
  Span* keep = g_slack.New(1, kLargeClass);  // keeps the three apart
  ASSERT_NE(keep, nullptr);
  // Free at t0, t0 + 0.9 s and t0 + 1.5 s (spans are adjacent only through
  // `keep` and the first, so free them in an order that does not merge).
  g_slack.Delete(spans[0]);
  g_fake_now.store(t0 + 900'000'000);
  g_slack.Delete(spans[2]);
  g_fake_now.store(t0 + 1'500'000'000);
  g_slack.Delete(spans[1]);  // merges with both, none bigger: it keeps its stamp
  PageHeapStats st;
  g_slack.GetStats(&st);
  EXPECT_EQ(st.free_spans, 2u);  // [0..2] merged, and the rest of the growth
  EXPECT_EQ(st.next_release_ns, t0 + 1'500'000'000 + 8 * kSecond);
  g_fake_now.store(t0 + 8'400'000'000);  // +8.4 s + 1 s slack < +9.5 s
  g_slack.ReleaseExpired();
  g_slack.GetStats(&st);
  EXPECT_EQ(st.free_backed_bytes, 12 * kPageSize);
  g_fake_now.store(t0 + 8'500'000'000);  // +8.5 s + 1 s slack >= +9.5 s
  g_slack.ReleaseExpired();
  g_slack.GetStats(&st);
  EXPECT_EQ(st.free_backed_bytes, 0u);
  g_slack.Delete(keep);
  ExpectBalanced(&g_slack);
}

// A merge of backed spans keeps the stamp of its biggest part, so a page
// freed now does not keep a large old run from going back, nor does an old
// page make a large fresh run go at once.
TEST(PageHeap, MergedStampIsTheBiggestPartsStamp) {
  g_weighted.SetClock(FakeNow);
  g_weighted.SetReleaseDelay(100 * kSecond);
  uint64_t t0 = g_fake_now.load();
  Span* big = g_weighted.New(30, kLargeClass);
  Span* small = g_weighted.New(10, kLargeClass);
  Span* guard = g_weighted.New(1, kLargeClass);
  Span* old_page = g_weighted.New(1, kLargeClass);
  Span* fresh = g_weighted.New(30, kLargeClass);
  Span* guard2 = g_weighted.New(1, kLargeClass);
  ASSERT_TRUE(big && small && guard && old_page && fresh && guard2);
  g_weighted.Delete(big);
  g_fake_now.store(t0 + 40 * kSecond);
  g_weighted.Delete(small);     // 10 pages join 30 older ones: t0
  g_weighted.Delete(old_page);  // alone between guard and fresh: t0 + 40 s
  PageHeapStats st;
  g_weighted.GetStats(&st);
  EXPECT_EQ(st.next_release_ns, t0 + 100 * kSecond);
  g_fake_now.store(t0 + 60 * kSecond);
  g_weighted.Delete(fresh);  // 30 fresh pages take in the 1 older: t0 + 60 s

  // At t0 + 100 s (the sweep's slack reaches t0 + 12.5 s) the old run goes
  // back and the fresh one stays.
  g_fake_now.store(t0 + 100 * kSecond);
  g_weighted.ReleaseExpired();
  g_weighted.GetStats(&st);
  EXPECT_EQ(st.free_backed_bytes, 31 * kPageSize);
  EXPECT_EQ(st.next_release_ns, t0 + 160 * kSecond);
  g_weighted.Delete(guard);
  g_weighted.Delete(guard2);
  ExpectBalanced(&g_weighted);
}

// Random runs of allocations and frees of 1-40 pages, with the clock
// standing still between some of them (equal stamps) and jumping between
// others: after every step the age list runs oldest to newest and holds
// exactly the free resident pages, through cuts, merges of every shape and
// timed releases.
TEST(PageHeap, AgeListStaysInOrderThroughCutsMergesAndReleases) {
  g_shuffle.SetClock(FakeNow);
  g_shuffle.SetReleaseDelay(50 * kSecond);
  std::mt19937 rng(7);
  std::vector<Span*> live;
  for (int step = 0; step < 3000; ++step) {
    uint32_t r = rng() % 100;
    if (r < 30) g_fake_now.fetch_add((rng() % 4) * kSecond / 2);  // 0 half the time
    if (live.empty() || rng() % 2 == 0) {
      Span* s = g_shuffle.New(1 + rng() % 40, kLargeClass);
      ASSERT_NE(s, nullptr);
      live.push_back(s);
    } else {
      size_t i = rng() % live.size();
      g_shuffle.Delete(live[i]);
      live[i] = live.back();
      live.pop_back();
    }
    if (r >= 97) g_shuffle.ReleaseExpired();
    ASSERT_TRUE(g_shuffle.AgeListConsistent()) << "after step " << step;
  }
  for (Span* s : live) g_shuffle.Delete(s);
  ASSERT_TRUE(g_shuffle.AgeListConsistent());
  ExpectBalanced(&g_shuffle);
}

// Keeping the age list in order costs next to nothing however many free
// spans there are. Old runs (one stamp, as a coarse clock gives many
// spans) with newer free spans behind them on the list: cutting a piece
// from an old run leaves the rest where the run was, and freeing the page
// between two old runs makes a merge that goes where its biggest part was.
// Walking from the newest end passed every newer free span each time;
// walking past equal stamps passed the other old runs.
TEST(PageHeap, AgeListStaysCheapWithManyFreeSpans) {
  g_walk.SetClock(FakeNow);
  g_walk.SetReleaseDelay(1000 * kSecond);
  constexpr int kRuns = 200;
  std::vector<Span*> old_runs(kRuns), old_guards(kRuns), new_runs(kRuns), new_guards(kRuns);
  for (int i = 0; i < kRuns; ++i) {
    old_runs[i] = g_walk.New(30, kLargeClass);
    old_guards[i] = g_walk.New(1, kLargeClass);
    ASSERT_TRUE(old_runs[i] && old_guards[i]);
  }
  for (int i = 0; i < kRuns; ++i) {
    new_runs[i] = g_walk.New(4, kLargeClass);
    new_guards[i] = g_walk.New(1, kLargeClass);
    ASSERT_TRUE(new_runs[i] && new_guards[i]);
  }
  uint64_t t0 = g_fake_now.load();
  for (Span* s : old_runs) g_walk.Delete(s);  // all at t0
  for (int i = 0; i < kRuns; ++i) {
    g_fake_now.store(t0 + kSecond + static_cast<uint64_t>(i) * kSecond / 100);
    g_walk.Delete(new_runs[i]);
  }
  ASSERT_TRUE(g_walk.AgeListConsistent());
  PageHeapStats before;
  g_walk.GetStats(&before);

  // Pieces of 20 pages can only come from the old 30-page runs (and their
  // 10-page rests are too short); then the pages between old runs.
  g_fake_now.store(t0 + 5 * kSecond);
  std::vector<Span*> cuts;
  for (int i = 0; i < kRuns / 2; ++i) {
    Span* s = g_walk.New(20, kLargeClass);
    ASSERT_NE(s, nullptr);
    cuts.push_back(s);
  }
  for (int i = kRuns / 2; i < kRuns - 1; ++i) g_walk.Delete(old_guards[i]);
  PageHeapStats after;
  g_walk.GetStats(&after);
  uint64_t steps = after.age_walk_steps - before.age_walk_steps;
  std::printf("age list: %lu steps for %d cuts and %d merges among %d free spans\n",
              static_cast<unsigned long>(steps), kRuns / 2, kRuns / 2 - 1, 2 * kRuns);
  EXPECT_LE(steps, uint64_t{kRuns} / 8);
  ASSERT_TRUE(g_walk.AgeListConsistent());

  for (Span* s : cuts) g_walk.Delete(s);
  for (int i = 0; i < kRuns; ++i) {
    if (i < kRuns / 2 || i == kRuns - 1) g_walk.Delete(old_guards[i]);
    g_walk.Delete(new_guards[i]);
  }
  ASSERT_TRUE(g_walk.AgeListConsistent());
  ExpectBalanced(&g_walk);
}

// Without a maintenance thread the frees sweep when due; with one they
// leave on-time sweeps to it and step in only when it is kLateReleaseNs late.
TEST(PageHeap, FreesSweepWhenDueOrWhenTheThreadIsLate) {
  g_late.SetClock(FakeNow);
  g_late.SetReleaseDelay(2 * kSecond);
  uint64_t t0 = g_fake_now.load();
  // In-use guards keep the freed spans from merging.
  Span* old_span = g_late.New(8, kLargeClass);
  Span* g1 = g_late.New(1, kLargeClass);
  Span* a = g_late.New(1, kLargeClass);
  Span* g2 = g_late.New(1, kLargeClass);
  Span* b = g_late.New(1, kLargeClass);
  Span* g3 = g_late.New(1, kLargeClass);
  Span* c = g_late.New(1, kLargeClass);
  Span* g4 = g_late.New(1, kLargeClass);
  ASSERT_TRUE(old_span && a && b && c && g1 && g2 && g3 && g4);
  g_late.Delete(old_span);
  PageHeapStats st;

  g_late.SetBackgroundSweeps(true);
  g_fake_now.store(t0 + 2 * kSecond + kLateReleaseNs / 2);
  g_late.Delete(a);  // due, but the thread is not late yet
  g_late.GetStats(&st);
  EXPECT_EQ(st.released_expired_bytes, 0u);
  g_fake_now.store(t0 + 2 * kSecond + kLateReleaseNs);
  g_late.Delete(b);  // the thread is late: this free sweeps
  g_late.GetStats(&st);
  EXPECT_EQ(st.released_expired_bytes, 8 * kPageSize);

  g_late.SetBackgroundSweeps(false);
  g_fake_now.store(t0 + 20 * kSecond);
  g_late.Delete(c);  // a and b are due: swept at once
  g_late.GetStats(&st);
  EXPECT_EQ(st.released_expired_bytes, 10 * kPageSize);
  EXPECT_EQ(st.free_backed_bytes, kPageSize);  // c itself waits
  for (Span* g : {g1, g2, g3, g4}) g_late.Delete(g);
  ExpectBalanced(&g_late);
}

// When no free span fits, the oldest backed spans go back before fresh
// pages are touched, as many pages as the request: resident memory stays at
// the peak in use. Younger backed spans stay.
TEST(PageHeap, GrowthReturnsOldestLongBackedRunsFirst) {
  g_growth.SetClock(FakeNow);
  g_growth.SetReleaseDelay(1000 * kSecond);
  uint64_t t0 = g_fake_now.load();
  // One growth unit holds three long runs, a short one and their guards;
  // the two pages left over fit nothing.
  constexpr size_t kRun = (kGrowPages - 3 - kMaxPages - 1 - 2) / 3;
  static_assert(kRun > kMaxPages, "the runs must be long");
  Span* spans[3];
  Span* guards[3];  // in use: the freed spans cannot merge
  for (int i = 0; i < 3; ++i) {
    spans[i] = g_growth.New(kRun, kLargeClass);
    guards[i] = g_growth.New(1, kLargeClass);
    ASSERT_TRUE(spans[i] && guards[i]);
    memset(spans[i]->start(), 1, spans[i]->bytes());
  }
  Span* short_span = g_growth.New(kMaxPages, kLargeClass);
  Span* short_guard = g_growth.New(1, kLargeClass);
  ASSERT_TRUE(short_span && short_guard);
  memset(short_span->start(), 2, short_span->bytes());
  PageHeapStats st;
  g_growth.GetStats(&st);
  ASSERT_EQ(st.total_bytes, kGrowPages * kPageSize);

  void* youngest = spans[2]->start();
  void* short_start = short_span->start();
  g_fake_now.store(t0);
  g_growth.Delete(short_span);  // the oldest of all, but short
  for (int i = 0; i < 3; ++i) {
    g_fake_now.store(t0 + static_cast<uint64_t>(i + 1) * kSecond);
    g_growth.Delete(spans[i]);
  }
  // Far more free resident pages than pages in use: growth gives back.
  Span* big = g_growth.New(kRun * 3 / 2, kLargeClass);  // fits no free span
  ASSERT_NE(big, nullptr);
  g_growth.GetStats(&st);
  EXPECT_EQ(st.released_growth_bytes, 2 * kRun * kPageSize);  // the two oldest long runs
  EXPECT_EQ(ResidentBytes(youngest, kRun * kPageSize), kRun * kPageSize);
  EXPECT_EQ(ResidentBytes(short_start, kMaxPages * kPageSize), kMaxPages * kPageSize);

  // With as many pages in use as free and resident, growth gives nothing
  // back: that pool is what the program reuses.
  Span* other = g_growth.New(kRun * 2, kLargeClass);  // fits nothing either
  ASSERT_NE(other, nullptr);
  g_growth.GetStats(&st);
  EXPECT_EQ(st.released_growth_bytes, 2 * kRun * kPageSize);
  EXPECT_EQ(ResidentBytes(youngest, kRun * kPageSize), kRun * kPageSize);

  g_growth.Delete(big);
  g_growth.Delete(other);
  g_growth.Delete(short_guard);
  for (Span* g : guards) g_growth.Delete(g);
  ExpectBalanced(&g_growth);
}

// Threads allocate, write, check and free spans while every free returns its
// pages at once (delay 0), so madvise runs unlocked all the time: a span in
// flight must never be handed out (its pattern would read as zeros) nor
// merged, and the books must balance.
TEST(PageHeap, ConcurrentReleasesNeverTouchLiveSpans) {
  g_racing.SetReleaseDelay(0);
  constexpr int kThreads = 6;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t, &failures] {
      std::mt19937 rng(t + 1);
      std::vector<Span*> mine;
      for (int step = 0; step < 3000; ++step) {
        if (mine.size() < 8 && (mine.empty() || rng() % 2 == 0)) {
          Span* s = g_racing.New(1 + rng() % 24, kLargeClass, rng() % 8 == 0 ? 4 : 1);
          if (s == nullptr) {
            failures.fetch_add(1);
            continue;
          }
          memset(s->start(), 0x40 + t, s->bytes());
          mine.push_back(s);
        } else {
          size_t i = rng() % mine.size();
          Span* s = mine[i];
          const unsigned char* p = static_cast<const unsigned char*>(s->start());
          for (size_t off = 0; off < s->bytes(); off += 512) {
            if (p[off] != 0x40 + t) {
              failures.fetch_add(1);
              break;
            }
          }
          g_racing.Delete(s);
          mine[i] = mine.back();
          mine.pop_back();
        }
      }
      for (Span* s : mine) g_racing.Delete(s);
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(failures.load(), 0);
  PageHeapStats st;
  g_racing.GetStats(&st);
  EXPECT_EQ(st.free_backed_bytes, 0u);
  EXPECT_GT(st.released_expired_bytes, 0u);
  ExpectBalanced(&g_racing);
}

}  // namespace
}  // namespace rseqmalloc::internal
