// The introspection calls, glibc's and rseqmalloc's own (rseqmalloc.h),
// filled with the figures of every layer.
#ifndef RSEQMALLOC_ALLOCATOR_STATS_INTROSPECTION_H_
#define RSEQMALLOC_ALLOCATOR_STATS_INTROSPECTION_H_

#include <malloc.h>
#include <stdio.h>

#include "allocator/api/rseqmalloc.h"

namespace rseqmalloc::internal {

struct mallinfo2 MallInfo2();
struct mallinfo MallInfo();
int MallocTrim(size_t pad);
void MallocStats();
int MallocInfo(int options, FILE* out);
int Mallopt(int param, int value);

// rseqmalloc_stats_print, rseqmalloc_get_stats, rseqmalloc_get_release_stats.
void StatsPrint(int fd);
int GetPublicStats(rseqmalloc_stats* out);
int GetPublicReleaseStats(rseqmalloc_release_stats* out);

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_STATS_INTROSPECTION_H_
