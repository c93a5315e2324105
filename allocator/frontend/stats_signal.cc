#include "allocator/frontend/stats_signal.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include "allocator/base/log.h"
#include "allocator/frontend/stats_report.h"
#include "allocator/reentry.h"

namespace rseqmalloc::internal {
namespace {

void OnStatsSignal(int) {
  int saved_errno = errno;
  if (InsideAllocator()) {
    g_stats_report_pending.store(true, std::memory_order_relaxed);
  } else {
    ReportStats();
  }
  errno = saved_errno;
}

}  // namespace

std::atomic<bool> g_stats_report_pending{false};

void PrintPendingStatsReport() {
  if (InsideAllocator() || !g_stats_report_pending.exchange(false)) return;
  ReportStats();
}

bool InstallStatsSignal(int signal_number) {
  struct sigaction action = {};
  action.sa_handler = OnStatsSignal;
  action.sa_flags = SA_RESTART;
  sigemptyset(&action.sa_mask);
  if (sigaction(signal_number, &action, nullptr) == 0) return true;
  LogLine line;
  line.Str("rseqmalloc: RSEQMALLOC_STATS_SIGNAL: sigaction failed; no on-demand report\n")
      .Flush(STDERR_FILENO);
  return false;
}

}  // namespace rseqmalloc::internal
