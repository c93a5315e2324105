// The statistics layer's side of the front end's upcalls
// (allocator/frontend/upcalls.h).
#include <stdlib.h>

#include "allocator/frontend/reentry.h"
#include "allocator/frontend/upcalls.h"
#include "allocator/stats/stats_report.h"
#include "allocator/stats/stats_signal.h"

namespace rseqmalloc::internal {

void StatsAfterStart(const Options& options) {
  if (options.stats_at_exit) atexit(ReportStats);
  if (options.stats_signal != 0) InstallStatsSignal(options.stats_signal);
}

// A statistics signal landed inside the allocator and could not print.
void StatsOnRequest() {
  if (!InsideAllocator()) ReportStats();
}

}  // namespace rseqmalloc::internal
