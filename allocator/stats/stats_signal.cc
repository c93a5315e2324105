#include "allocator/stats/stats_signal.h"

#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include "allocator/base/log.h"
#include "allocator/stats/stats_report.h"
#include "allocator/frontend/reentry.h"
#include "allocator/frontend/upcalls.h"

namespace rseqmalloc::internal {
namespace {

void OnStatsSignal(int) {
  int saved_errno = errno;
  if (InsideAllocator()) {
    RequestStatsWork();
  } else {
    ReportStats();
  }
  errno = saved_errno;
}

}  // namespace

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
