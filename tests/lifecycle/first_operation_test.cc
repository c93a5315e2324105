// first_operation: a brand-new thread's very first allocator call, for every
// entry point and every size-class boundary. A thread starts with no cache
// (or an empty one), so its first call runs the lazy-initialisation path;
// each (operation, size) pair gets its own fresh thread.
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>

#include <cstdint>
#include <cstring>
#include <new>
#include <vector>

#include "gtest/gtest.h"
#include "tests/util/test_util.h"

namespace rseqmalloc_test {
namespace {

constexpr size_t kMiB = size_t{1} << 20;

enum class Op {
  kMalloc,
  kCalloc,
  kReallocNull,
  kReallocForeign,  // realloc of a block the main thread allocated
  kFreeForeign,     // free of a block the main thread allocated
  kAlignedAlloc,
  kPosixMemalign,
  kOperatorNew,
  kUsableSizeForeign,
};
constexpr Op kOps[] = {Op::kMalloc,          Op::kCalloc,
                       Op::kReallocNull,     Op::kReallocForeign,
                       Op::kFreeForeign,     Op::kAlignedAlloc,
                       Op::kPosixMemalign,   Op::kOperatorNew,
                       Op::kUsableSizeForeign};

struct Job {
  Op op;
  size_t size;
  void* foreign;      // allocated by the main thread, size bytes of pattern
  uint64_t key;       // pattern key of `foreign`
  const char* error;  // set by the thread on failure
};

// The first statement of each case is the thread's first allocator call;
// nothing before it may allocate.
void* RunFirstOperation(void* arg) {
  Job* job = static_cast<Job*>(arg);
  const size_t n = job->size;
  void* p = nullptr;
  switch (job->op) {
    case Op::kMalloc:
      p = malloc(n);
      break;
    case Op::kCalloc:
      p = calloc(n, 1);
      if (p != nullptr) {
        for (size_t i = 0; i < n; ++i) {
          if (static_cast<unsigned char*>(p)[i] != 0) {
            job->error = "calloc not zeroed";
            break;
          }
        }
      }
      break;
    case Op::kReallocNull:
      p = realloc(nullptr, n);
      break;
    case Op::kReallocForeign:
      p = realloc(job->foreign, n + n / 2 + 1);
      if (p != nullptr && !PatternIntact(p, n, job->key)) {
        job->error = "realloc lost the contents";
      }
      job->foreign = nullptr;
      break;
    case Op::kFreeForeign:
      if (!PatternIntact(job->foreign, n, job->key)) {
        job->error = "foreign block corrupted";
      }
      free(job->foreign);
      job->foreign = nullptr;
      p = malloc(n);  // and the second call allocates
      break;
    case Op::kAlignedAlloc:
      p = aligned_alloc(64, n);
      if (p != nullptr && !IsAligned(p, 64)) job->error = "misaligned";
      break;
    case Op::kPosixMemalign:
      if (posix_memalign(&p, 4096, n) != 0) p = nullptr;
      if (p != nullptr && !IsAligned(p, 4096)) job->error = "misaligned";
      break;
    case Op::kOperatorNew:
      p = ::operator new(n, std::nothrow);
      break;
    case Op::kUsableSizeForeign:
      if (malloc_usable_size(job->foreign) < n) {
        job->error = "usable size below the request";
      }
      p = malloc(n);
      break;
  }
  if (p == nullptr) {
    if (job->error == nullptr) job->error = "allocation returned NULL";
    return nullptr;
  }
  size_t usable = malloc_usable_size(p);
  if (usable < n) job->error = "usable size below the request";
  uint64_t key = PatternKey(p, usable, n);
  FillPattern(p, usable, key);
  if (!PatternIntact(p, usable, key)) job->error = "pattern lost";
  if (job->op == Op::kOperatorNew) {
    ::operator delete(p);
  } else {
    free(p);
  }
  return nullptr;
}

TEST(FirstOperation, EverySizeClassBoundaryAsANewThreadsFirstCall) {
  std::vector<size_t> sizes = SizeSpread(2 * kMiB);
  sizes.push_back(0);
  int threads = 0;
  for (Op op : kOps) {
    for (size_t size : sizes) {
      Job job{op, size, nullptr, 0, nullptr};
      job.foreign = malloc(size);
      ASSERT_NE(job.foreign, nullptr);
      job.key = PatternKey(job.foreign, size, 11);
      FillPattern(job.foreign, size, job.key);
      pthread_t t;
      ASSERT_EQ(pthread_create(&t, nullptr, RunFirstOperation, &job), 0);
      ASSERT_EQ(pthread_join(t, nullptr), 0);
      ++threads;
      EXPECT_EQ(job.error, nullptr)
          << "op " << static_cast<int>(op) << " size " << size << ": "
          << job.error;
      free(job.foreign);  // NULL when the thread consumed it
    }
  }
  EXPECT_GT(threads, 1000);
}

// The same, with many fresh threads making their first call at once.
TEST(FirstOperation, ManyThreadsStartingTogether) {
  constexpr int kThreads = 64;
  std::vector<size_t> sizes = SizeSpread(kMiB);
  for (int round = 0; round < 4; ++round) {
    std::vector<Job> jobs(kThreads);
    std::vector<pthread_t> tids(kThreads);
    for (int i = 0; i < kThreads; ++i) {
      size_t size = sizes[(round * kThreads + i) % sizes.size()];
      jobs[i] = Job{kOps[i % 9], size, malloc(size), 0, nullptr};
      jobs[i].key = PatternKey(jobs[i].foreign, size, 12);
      FillPattern(jobs[i].foreign, size, jobs[i].key);
    }
    for (int i = 0; i < kThreads; ++i) {
      ASSERT_EQ(pthread_create(&tids[i], nullptr, RunFirstOperation, &jobs[i]),
                0);
    }
    for (int i = 0; i < kThreads; ++i) {
      pthread_join(tids[i], nullptr);
      EXPECT_EQ(jobs[i].error, nullptr)
          << "op " << static_cast<int>(jobs[i].op) << " size "
          << jobs[i].size << ": " << jobs[i].error;
      free(jobs[i].foreign);
    }
  }
}

}  // namespace
}  // namespace rseqmalloc_test
