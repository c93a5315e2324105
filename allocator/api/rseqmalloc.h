/* rseqmalloc's own C API: statistics and introspection. */
#ifndef RSEQMALLOC_H_
#define RSEQMALLOC_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library's version, "MAJOR.MINOR.PATCH" (CHANGELOG.md). */
#define RSEQMALLOC_VERSION "0.2.0"
const char* rseqmalloc_version(void);

/* The cache mode serving the calling thread: "cpu", "cid", "thread" or
   "none". */
const char* rseqmalloc_mode(void);

/* 1 if p is the start of a block of ours (for a large block: a live one;
   a small object may be in a cache, free), else 0. Never aborts. */
int rseqmalloc_owns(const void* p);

/* Writes the human-readable statistics report to file descriptor fd. */
void rseqmalloc_stats_print(int fd);

/* Every figure of the report. The byte counts from in_use_bytes down to
   metadata_bytes add up to total_mapped_bytes (exactly when no other thread
   is allocating while the snapshot is taken). */
struct rseqmalloc_stats {
  const char* mode;                /* "cpu", "cid", "thread" or "none" */
  uint64_t in_use_bytes;           /* held by the program */
  uint64_t small_in_use_bytes;     /*   of which small objects */
  uint64_t large_in_use_bytes;     /*   of which large blocks */
  uint64_t front_end_cached_bytes; /* per-CPU or per-thread caches */
  uint64_t transfer_cache_bytes;
  uint64_t central_free_bytes;
  uint64_t span_waste_bytes;       /* slab tails no object fits in */
  uint64_t page_heap_free_bytes;   /* free pages still resident */
  uint64_t returned_bytes;         /* free pages returned to the OS */
  uint64_t unused_reserved_bytes;  /* reserved, never used yet */
  uint64_t metadata_bytes;
  uint64_t total_mapped_bytes;
  uint64_t front_end_hits;
  uint64_t front_end_misses;
  uint64_t rseq_restarts;          /* aborted critical sections, process-wide */
  uint64_t released_bytes_total;   /* cumulative bytes returned with madvise */
  /* Calls from signal handlers that interrupted their own thread inside the
     allocator, served without locks (docs/reliability.md); both cumulative. */
  uint64_t reentrant_blocks_mapped; /* blocks mapped directly for them */
  uint64_t reentrant_frees_deferred;/* frees handed back later */
  /* The whole process's resident set size, read from the kernel: what
     total_mapped_bytes costs in memory, plus the program's own stacks,
     code and libraries. */
  uint64_t resident_bytes;
};

/* Fills *out. Returns 0, or -1 when out is NULL. */
int rseqmalloc_get_stats(struct rseqmalloc_stats* out);

/* How free pages go back to the OS (docs/design.md, "Returning memory"):
   the policy in force, what waits, what went back and why, and the
   maintenance thread's work. A struct of its own so that rseqmalloc_stats
   keeps its 0.1 layout. */
struct rseqmalloc_release_stats {
  uint64_t release_delay_ms;       /* RSEQMALLOC_RELEASE_DELAY_MS in force */
  uint64_t retained_cap_bytes;     /* RSEQMALLOC_RETAINED_FREE_BYTES in force */
  uint64_t waiting_bytes;          /* free pages still resident, waiting */
  uint64_t next_release_in_ms;     /* until the oldest is due; UINT64_MAX: none */
  uint64_t released_expired_bytes; /* cumulative: unused for the delay */
  uint64_t released_growth_bytes;  /*   to make room for fresh pages */
  uint64_t released_cap_bytes;     /*   over the cap */
  uint64_t released_trim_bytes;    /*   malloc_trim */
  uint64_t background_running;     /* 1 while the maintenance thread runs */
  uint64_t background_wakeups;
  uint64_t background_passes;      /* cache housekeeping passes */
  uint64_t background_released_bytes; /* of the released bytes, by the thread */
};

/* Fills *out. Returns 0, or -1 when out is NULL. */
int rseqmalloc_get_release_stats(struct rseqmalloc_release_stats* out);

#ifdef __cplusplus
}
#endif

#endif /* RSEQMALLOC_H_ */
