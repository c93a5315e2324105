// Test helpers: oversubscribed thread groups, a SIGUSR1 storm aimed at them,
// CPU pinning, and re-running one test of this binary in a child process
// (with glibc's rseq registration off, optionally under a seccomp filter).

#ifndef RSEQ_TEST_UTIL_H_
#define RSEQ_TEST_UTIL_H_

#include <cstdint>
#include <functional>
#include <string>

#include <sched.h>

#include "gtest/gtest.h"
#include "rseq/primitives.h"
#include "rseq/pseudocode.h"
#include "rseq/reference.h"
#include "rseq/registration.h"

namespace rseqmalloc::rseq {
namespace testing {

// One implementation of the primitives in one index mode; typed tests run
// the same bodies over several of these.
template <typename OpsT, IndexMode kModeV, bool kDelayedV = false>
struct Config {
  using Ops = OpsT;
  static constexpr IndexMode kMode = kModeV;
  // Sections spin between the id read and the commit: restarts must happen.
  static constexpr bool kDelayed = kDelayedV;
};

using RseqCpu = Config<RseqOps, IndexMode::kCpuId>;
using RseqMmCid = Config<RseqOps, IndexMode::kMmCid>;
using ReferenceCpu = Config<ReferenceOps, IndexMode::kCpuId>;
using ReferenceMmCid = Config<ReferenceOps, IndexMode::kMmCid>;
using DelayedCpu = Config<RseqOpsWithDelay, IndexMode::kCpuId, true>;
using DelayedMmCid = Config<RseqOpsWithDelay, IndexMode::kMmCid, true>;

struct ConfigNames {
  template <typename T>
  static std::string GetName(int) {
    std::string ops = T::kDelayed ? "RseqDelayed"
                      : T::Ops::kAsyncSignalSafe ? "Rseq"
                                                 : "Reference";
    return ops + (T::kMode == IndexMode::kCpuId ? "CpuId" : "MmCid");
  }
};

// Skips a kMmCid configuration on kernels without mm_cid.
#define RSEQMALLOC_SKIP_IF_UNSUPPORTED(ConfigT)                         \
  do {                                                                  \
    if (ConfigT::kMode == ::rseqmalloc::rseq::IndexMode::kMmCid &&                  \
        !::rseqmalloc::rseq::MmCidSupported()) {                                    \
      GTEST_SKIP() << "kernel without mm_cid";                          \
    }                                                                   \
  } while (0)

// Runs body(i) for i in [0, num_threads) on that many threads. When
// `storm_work` is non-null, another thread sends SIGUSR1 (tgkill) to the
// workers continuously while they run, and the handler calls storm_work().
// Returns the number of signals handled.
std::int64_t RunThreads(int num_threads, const std::function<void(int)>& body,
                        void (*storm_work)() = nullptr);

// Pins the calling thread to the CPU it runs on now; restores the previous
// affinity on destruction.
class ScopedPinToCurrentCpu {
 public:
  ScopedPinToCurrentCpu();
  ~ScopedPinToCurrentCpu();
  int cpu() const { return cpu_; }

 private:
  cpu_set_t saved_;
  int cpu_;
};

// Re-executes this binary running only `test_name` (a full gtest name), with
// RSEQ_TEST_CHILD=scenario and GLIBC_TUNABLES=glibc.pthread.rseq=0 in its
// environment. With block_rseq, the child first installs a seccomp filter
// under which rseq(2) fails with ENOSYS. Returns the child's exit code, or
// 128 + signal number.
int RunTestInChild(const char* test_name, const char* scenario,
                   bool block_rseq);

// The scenario this process was re-executed for, or nullptr.
const char* ChildScenario();

// A child test ends with FinishChild(): exit code kChildPassed when it had
// no failure. The parent requires that code, so a child that ran no test
// (a mistyped filter exits 0) cannot pass.
inline constexpr int kChildPassed = 42;
[[noreturn]] void FinishChild();

}  // namespace testing
}  // namespace rseqmalloc::rseq

#endif  // RSEQ_TEST_UTIL_H_
