// Every RSEQMALLOC_* environment variable, in one table, read once.
//
// The table is parsed straight from `environ` without allocating (getenv is
// not safe while the C runtime is still starting, and malloc is what we are).
// A bad value prints one line naming the variable and the accepted values,
// and the default is kept.
#ifndef RSEQMALLOC_ALLOCATOR_CONFIG_OPTIONS_H_
#define RSEQMALLOC_ALLOCATOR_CONFIG_OPTIONS_H_

#include <cstddef>
#include <cstdint>

namespace rseqmalloc::internal {

enum class CacheMode : uint8_t {
  kAuto,    // cid where the kernel updates mm_cid, else cpu; thread without rseq
  kCpu,     // per-CPU caches indexed by cpu_id
  kCid,     // per-CPU caches indexed by mm_cid
  kThread,  // per-thread caches (the fallback)
  kNone,    // no front-end cache: every call goes to the transfer cache
};

const char* CacheModeName(CacheMode mode);

struct Options {
  CacheMode cache = CacheMode::kAuto;
  size_t per_cpu_cache_bytes = 1536 * 1024;
  size_t per_cpu_cache_max_bytes = 6 * 1024 * 1024;
  size_t thread_cache_bytes = 2 * 1024 * 1024;
  size_t retained_free_bytes = size_t{1} << 30;
  uint64_t release_delay_ms = 5000;
  bool background_thread = true;
  bool huge_pages = false;  // docs/design.md, "Huge pages": why off
  bool stats_at_exit = false;
  bool verbose = false;
  bool abort_on_invalid_free = true;
  bool check_sized_free = false;
  int stats_signal = 0;  // 0: none
  // Where reports go instead of stderr ("%p" becomes the process id); empty:
  // stderr.
  char stats_file[256] = {};
};

// Parsed on first call (thread-safe, idempotent); never allocates.
const Options& GetOptions();

// For tests: parses an explicit environment (NULL-terminated), reporting bad
// values to `err_fd` (-1: silent). Returns the number of bad values.
int ParseOptions(const char* const* env, Options* out, int err_fd);

// Writes one line per option, "name=value", to `fd` (verbose start-up).
void PrintOptions(const Options& options, int fd);

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_CONFIG_OPTIONS_H_
