// rseqmalloc's own C API (rseqmalloc.h).
#include "allocator/api/rseqmalloc.h"

#include "allocator/central_heap.h"
#include "allocator/frontend/frontend.h"
#include "allocator/frontend/stats_report.h"

namespace in = rseqmalloc::internal;

extern "C" {

__attribute__((visibility("default"))) const char* rseqmalloc_mode(void) {
  return in::ActiveModeName();
}

__attribute__((visibility("default"))) int rseqmalloc_owns(const void* p) {
  return p != nullptr && in::ClassifyPointer(p) != in::kNotOurs ? 1 : 0;
}

__attribute__((visibility("default"))) void rseqmalloc_stats_print(int fd) {
  in::EnsureInitialized();
  in::PrintStatsReport(fd);
}

}  // extern "C"
