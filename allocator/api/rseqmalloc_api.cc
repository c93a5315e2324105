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

// Small objects: the pointer must be a multiple of the class size from the
// start of its slab (whether that object is free right now is unknowable
// without a walk of the free lists). Large: ClassifyPointer already checks.
__attribute__((visibility("default"))) int rseqmalloc_owns(const void* p) {
  uint32_t cls = in::ClassifyPointer(p);
  if (cls == in::kLargeClass) return 1;
  if (cls == in::kNotOurs || p == nullptr) return 0;
  uintptr_t a = reinterpret_cast<uintptr_t>(p);
  const in::Span* span = in::g_pagemap.GetSpan(a >> in::kPageShift);
  return span != nullptr && (a - span->start_address()) % in::ClassToSize(cls) == 0 ? 1 : 0;
}

__attribute__((visibility("default"))) void rseqmalloc_stats_print(int fd) {
  in::EnsureInitialized();
  in::PrintStatsReport(fd);
}

}  // extern "C"
