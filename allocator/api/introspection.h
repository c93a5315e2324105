// glibc's introspection calls, filled with rseqmalloc's own figures.
#ifndef RSEQMALLOC_ALLOCATOR_API_INTROSPECTION_H_
#define RSEQMALLOC_ALLOCATOR_API_INTROSPECTION_H_

#include <malloc.h>
#include <stdio.h>

namespace rseqmalloc::internal {

struct mallinfo2 MallInfo2();
struct mallinfo MallInfo();
int MallocTrim(size_t pad);
void MallocStats();
int MallocInfo(int options, FILE* out);
int Mallopt(int param, int value);

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_API_INTROSPECTION_H_
