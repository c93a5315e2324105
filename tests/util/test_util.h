// Helpers for the whole-allocator tests. They never depend on which malloc is
// linked, so the rseqmalloc variants and the glibc variant share them.
#ifndef RSEQMALLOC_TESTS_UTIL_TEST_UTIL_H_
#define RSEQMALLOC_TESTS_UTIL_TEST_UTIL_H_

#include <sys/types.h>

#include <cstddef>
#include <cstdint>
#include <new>
#include <vector>

namespace rseqmalloc_test {

// True in the NAME_glibc variant (tests/defs.bzl defines the macro there).
#ifdef RSEQMALLOC_TEST_GLIBC
inline constexpr bool kGlibcVariant = true;
#else
inline constexpr bool kGlibcVariant = false;
#endif

// Makes the compiler believe `p` is read and the memory behind it escapes,
// so allocation/free pairs and stores into blocks are not optimised away.
inline void Escape(const void* p) { asm volatile("" : : "r"(p) : "memory"); }

// Returns p unchanged, but hides where it came from: a failed realloc(p, n)
// leaves p valid, which GCC's -Wuse-after-free cannot know.
template <typename T>
T* Launder(T* p) {
  asm volatile("" : "+r"(p));
  return p;
}

// Returns n through a volatile, so huge constant sizes reach the allocator
// instead of being folded (or warned about) at compile time.
size_t Opaque(size_t n);

// --- Payload patterns -------------------------------------------------------
// Every byte of a block gets a value that depends on a key and on its offset,
// so a block overwritten by another block's pattern, or shifted, or zeroed,
// is caught. The key mixes the block's address, size and a seed.
uint64_t PatternKey(const void* p, size_t size, uint64_t seed);
void FillPattern(void* p, size_t size, uint64_t key);
// Offset of the first byte that does not match, or `size` if all match.
size_t FindPatternMismatch(const void* p, size_t size, uint64_t key);
inline bool PatternIntact(const void* p, size_t size, uint64_t key) {
  return FindPatternMismatch(p, size, key) == size;
}

inline bool IsAligned(const void* p, size_t alignment) {
  return (reinterpret_cast<uintptr_t>(p) & (alignment - 1)) == 0;
}

// Sizes that exercise every range: 1..64 one by one, then around every power
// of two up to `max` (2^k - 1, 2^k, 2^k + 1, 1.25, 1.5 and 1.75 times 2^k),
// so every size-class boundary of any sane class table is crossed.
std::vector<size_t> SizeSpread(size_t max);

// --- Randomness ---------------------------------------------------------------
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t Next();
  // Uniform in [0, n), n > 0.
  uint64_t Below(uint64_t n) { return Next() % n; }
  // Log-uniform in [lo, hi]: as many sizes in 1..2 as in 512K..1M.
  size_t LogUniform(size_t lo, size_t hi);

 private:
  uint64_t state_;
};

// --- Process state ----------------------------------------------------------
// Resident set size of this process, from /proc/self/statm.
size_t CurrentRssBytes();

// vm.overcommit_memory: 0 (the heuristic), 1 (always) or 2 (strict); -1
// when it cannot be read.
int OvercommitMode();
// The machine's RAM plus swap, in bytes (sysinfo); 0 when unknown. Under the
// heuristic the kernel refuses one mapping larger than this; under the
// strict policy its commit limit is at most this unless the administrator
// raised vm.overcommit_ratio past 100.
size_t RamPlusSwapBytes();

// The CPUs the calling thread may run on, lowest first: stores at most
// `max` of them in out[] and returns how many (0 when the kernel would not
// say). Never allocates.
int AllowedCpus(int* out, int max);
// Restricts the calling thread to `cpu` (the kernel moves it there before
// returning); false when refused.
bool PinCallingThreadTo(int cpu);

// Two threads, pinned to cpus[0] and cpus[1], allocate n blocks of `size`
// each in strict alternation (thread 0 first) onto blocks[0] and blocks[1],
// which must have room for them (reserve first: the threads must allocate
// nothing else). pthreads,
// not std::thread: std::thread allocates its state on this thread and the
// new thread frees it, a cross-thread hand-off of the very kind the callers
// keep out of their classes. False when a thread could not start or be
// pinned.
bool AllocateInTurnOnTwoCpus(const int cpus[2], size_t size, int n, std::vector<void*> blocks[2]);
// Each of two threads pinned as above frees its own blocks on its CPU.
bool FreeEachOnItsCpu(const int cpus[2], const std::vector<void*> blocks[2]);

// A T in a MAP_SHARED anonymous mapping, value-initialised: the scenario
// process a test forks writes it, the test reads it after the fork (a
// fork's copy-on-write memory would not show the child's writes). nullptr
// when the mapping fails; DeleteShared unmaps it.
void* MapSharedBytes(size_t bytes);
void UnmapSharedBytes(void* p, size_t bytes);
template <typename T>
T* NewShared() {
  void* p = MapSharedBytes(sizeof(T));
  return p == nullptr ? nullptr : new (p) T{};
}
template <typename T>
void DeleteShared(T* p) {
  if (p != nullptr) UnmapSharedBytes(p, sizeof(T));
}

// Waits for `pid` for at most `seconds`. On timeout kills it (SIGKILL),
// reaps it and returns false; otherwise stores the wait status and returns
// true. A deadlocked child thus fails a test instead of hanging it.
bool WaitWithDeadline(pid_t pid, double seconds, int* status);

// True when running under valgrind (rseq registration fails there).
bool RunningOnValgrind();

// The cache mode the allocator should report in this environment:
// RSEQMALLOC_CACHE when set, else "cid" where the kernel updates mm_cid
// (AT_RSEQ_FEATURE_SIZE >= 28), else "cpu". Under valgrind, "thread".
const char* ExpectedCacheMode();

// Whether this environment lets the maintenance thread run: not with
// RSEQMALLOC_BACKGROUND_THREAD=0, not in the "none" cache mode.
bool MaintenanceThreadAllowed();

}  // namespace rseqmalloc_test

#endif  // RSEQMALLOC_TESTS_UTIL_TEST_UTIL_H_
