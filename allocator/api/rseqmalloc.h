/* rseqmalloc's own C API: statistics and introspection. */
#ifndef RSEQMALLOC_H_
#define RSEQMALLOC_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The cache mode serving the calling thread: "cpu", "cid", "thread" or
   "none". */
const char* rseqmalloc_mode(void);

/* 1 if p is the start of a block of ours (for a large block: a live one;
   a small object may be in a cache, free), else 0. Never aborts. */
int rseqmalloc_owns(const void* p);

/* Writes the human-readable statistics report to file descriptor fd. */
void rseqmalloc_stats_print(int fd);

#ifdef __cplusplus
}
#endif

#endif /* RSEQMALLOC_H_ */
