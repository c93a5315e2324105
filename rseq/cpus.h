// CPU counts, read without allocating (no sysconf(_SC_NPROCESSORS_CONF),
// which opens a directory stream and mallocs).

#ifndef RSEQ_CPUS_H_
#define RSEQ_CPUS_H_

namespace rseqmalloc::rseq {

// One more than the highest possible CPU number (cpu_id < this), from
// /sys/devices/system/cpu/possible; cached after the first call. Falls back
// to kMaxPossibleCpusFallback when the file cannot be read.
int NumPossibleCpus();

inline constexpr int kMaxPossibleCpusFallback = 4096;

// Number of CPUs the calling thread may run on (sched_getaffinity). mm_cid
// values stay below the process-wide count of allowed CPUs.
int AllowedCpuCount();

namespace internal {

// Parses a kernel CPU list such as "0-3,8,10-11" and returns the highest
// number plus one, or -1 when the text is malformed. Exposed for tests.
int ParseCpuListEnd(const char* text, int length);

}  // namespace internal
}  // namespace rseqmalloc::rseq

#endif  // RSEQ_CPUS_H_
