#include "allocator/config/options.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include <atomic>
#include <cstring>

#include "allocator/base/log.h"
#include "allocator/base/no_cancel.h"

extern char** environ;

namespace rseqmalloc::internal {
namespace {

enum class Kind { kCacheMode, kBytes, kBool, kSignal, kPath, kMillis };

struct OptionSpec {
  const char* name;
  Kind kind;
  const char* accepted;  // shown in the error line
  const char* meaning;   // shown by PrintOptions and in docs/configuration.md
  size_t offset;         // into Options
};

// The one table. docs/configuration.md mirrors it; tests check both agree.
constexpr OptionSpec kSpecs[] = {
    {"RSEQMALLOC_CACHE", Kind::kCacheMode, "auto, cpu, cid, thread, none",
     "front-end cache", offsetof(Options, cache)},
    {"RSEQMALLOC_PER_CPU_CACHE_BYTES", Kind::kBytes, "a size such as 1536K or 2M (64K..64M)",
     "byte budget of each per-CPU cache", offsetof(Options, per_cpu_cache_bytes)},
    {"RSEQMALLOC_PER_CPU_CACHE_MAX_BYTES", Kind::kBytes, "a size such as 6M (64K..64M)",
     "how far the budget of a per-CPU cache that keeps missing may grow",
     offsetof(Options, per_cpu_cache_max_bytes)},
    {"RSEQMALLOC_THREAD_CACHE_BYTES", Kind::kBytes, "a size such as 2M (64K..64M)",
     "byte budget of each per-thread cache", offsetof(Options, thread_cache_bytes)},
    {"RSEQMALLOC_RETAINED_FREE_BYTES", Kind::kBytes, "a size such as 256M (0..1T)",
     "cap on free pages kept resident, whatever their age", offsetof(Options, retained_free_bytes)},
    {"RSEQMALLOC_RELEASE_DELAY_MS", Kind::kMillis, "milliseconds, 0..3600000",
     "free pages unused this long go back to the OS (0: at once)",
     offsetof(Options, release_delay_ms)},
    {"RSEQMALLOC_BACKGROUND_THREAD", Kind::kBool, "0 or 1",
     "start a maintenance thread for timed release and cache housekeeping",
     offsetof(Options, background_thread)},
    {"RSEQMALLOC_HUGE_PAGES", Kind::kBool, "0 or 1",
     "ask for transparent huge pages (MADV_HUGEPAGE) on heap memory",
     offsetof(Options, huge_pages)},
    {"RSEQMALLOC_STATS", Kind::kBool, "0 or 1", "print the statistics report at exit",
     offsetof(Options, stats_at_exit)},
    {"RSEQMALLOC_VERBOSE", Kind::kBool, "0 or 1", "print a start-up line with the mode in use",
     offsetof(Options, verbose)},
    {"RSEQMALLOC_ABORT_ON_INVALID_FREE", Kind::kBool, "0 or 1",
     "abort (1) or ignore with a message (0) on a detected invalid free",
     offsetof(Options, abort_on_invalid_free)},
    {"RSEQMALLOC_CHECK_SIZED_FREE", Kind::kBool, "0 or 1",
     "check sized frees against the pagemap (1) or trust the size (0)",
     offsetof(Options, check_sized_free)},
    {"RSEQMALLOC_STATS_SIGNAL", Kind::kSignal, "0 (none) or a signal number 1..64 but 9, 19",
     "signal that prints the statistics report", offsetof(Options, stats_signal)},
    {"RSEQMALLOC_STATS_FILE", Kind::kPath, "a file path, at most 255 bytes (%p: the process id)",
     "file the statistics reports are appended to instead of stderr",
     offsetof(Options, stats_file)},
};

struct ModeName {
  const char* name;
  CacheMode mode;
};
constexpr ModeName kModeNames[] = {{"auto", CacheMode::kAuto},
                                   {"cpu", CacheMode::kCpu},
                                   {"cid", CacheMode::kCid},
                                   {"thread", CacheMode::kThread},
                                   {"none", CacheMode::kNone}};

// Accepts digits with an optional K/M/G/T suffix (powers of 1024).
bool ParseBytes(const char* s, size_t* out) {
  if (*s == '\0') return false;
  uint64_t v = 0;
  for (; *s >= '0' && *s <= '9'; ++s) {
    if (v > (UINT64_MAX - 9) / 10) return false;
    v = v * 10 + static_cast<uint64_t>(*s - '0');
  }
  int shift = 0;
  switch (*s) {
    case '\0': break;
    case 'k': case 'K': shift = 10; ++s; break;
    case 'm': case 'M': shift = 20; ++s; break;
    case 'g': case 'G': shift = 30; ++s; break;
    case 't': case 'T': shift = 40; ++s; break;
    default: return false;
  }
  if (*s != '\0') return false;
  if (shift != 0 && v > (UINT64_MAX >> shift)) return false;
  *out = static_cast<size_t>(v << shift);
  return true;
}

bool InRange(const char* name, size_t v) {
  constexpr size_t kK = 1024, kM = kK * 1024, kT = kM * 1024 * 1024;
  if (strcmp(name, "RSEQMALLOC_RETAINED_FREE_BYTES") == 0) return v <= kT;
  return v >= 64 * kK && v <= 64 * kM;
}

bool ParseOne(const OptionSpec& spec, const char* value, Options* out) {
  char* field = reinterpret_cast<char*>(out) + spec.offset;
  switch (spec.kind) {
    case Kind::kCacheMode:
      for (const ModeName& m : kModeNames) {
        if (strcmp(value, m.name) == 0) {
          *reinterpret_cast<CacheMode*>(field) = m.mode;
          return true;
        }
      }
      return false;
    case Kind::kBytes: {
      size_t v;
      if (!ParseBytes(value, &v) || !InRange(spec.name, v)) return false;
      *reinterpret_cast<size_t*>(field) = v;
      return true;
    }
    case Kind::kBool:
      if (strcmp(value, "0") != 0 && strcmp(value, "1") != 0) return false;
      *reinterpret_cast<bool*>(field) = value[0] == '1';
      return true;
    case Kind::kSignal: {
      size_t v;
      bool digits_only = value[0] != '\0' && strspn(value, "0123456789") == strlen(value);
      // SIGKILL and SIGSTOP cannot be caught.
      if (!digits_only || !ParseBytes(value, &v) || v > 64 || v == 9 || v == 19) return false;
      *reinterpret_cast<int*>(field) = static_cast<int>(v);
      return true;
    }
    case Kind::kMillis: {
      size_t v;
      bool digits_only = value[0] != '\0' && strspn(value, "0123456789") == strlen(value);
      if (!digits_only || !ParseBytes(value, &v) || v > 3'600'000) return false;
      *reinterpret_cast<uint64_t*>(field) = v;
      return true;
    }
    case Kind::kPath: {
      size_t n = strlen(value);
      if (n == 0 || n >= sizeof(Options::stats_file)) return false;
      memcpy(field, value, n + 1);
      return true;
    }
  }
  return false;
}

}  // namespace

const char* CacheModeName(CacheMode mode) {
  for (const ModeName& m : kModeNames) {
    if (m.mode == mode) return m.name;
  }
  return "?";
}

int ParseOptions(const char* const* env, Options* out, int err_fd) {
  int bad = 0;
  for (; env != nullptr && *env != nullptr; ++env) {
    const char* entry = *env;
    if (strncmp(entry, "RSEQMALLOC_", 11) != 0) continue;
    const char* eq = strchr(entry, '=');
    if (eq == nullptr) continue;
    size_t name_len = static_cast<size_t>(eq - entry);
    const OptionSpec* spec = nullptr;
    for (const OptionSpec& s : kSpecs) {
      if (strlen(s.name) == name_len && strncmp(s.name, entry, name_len) == 0) spec = &s;
    }
    LogLine line;
    if (spec == nullptr) {
      ++bad;
      if (err_fd >= 0) {
        line.Str("rseqmalloc: unknown variable ").Str(entry, name_len)
            .Str(" ignored (see docs/configuration.md)\n").Flush(err_fd);
      }
      continue;
    }
    if (!ParseOne(*spec, eq + 1, out)) {
      ++bad;
      if (err_fd >= 0) {
        line.Str("rseqmalloc: invalid ").Str(spec->name).Str("=").Str(eq + 1)
            .Str(" (accepted: ").Str(spec->accepted).Str("); keeping the default\n")
            .Flush(err_fd);
      }
    }
  }
  return bad;
}

namespace {

// Before libc sets `environ` (a .preinit_array function that allocates, as
// UBSan's runtime does), the environment is only in /proc/self/environ:
// read it there, keeping the RSEQMALLOC_* entries, without allocating.
const char* const* EarlyEnvironment() {
  static char text[4096];
  static const char* entries[33];
  NoCancel no_cancel;  // open, read and close are cancellation points
  int fd = open("/proc/self/environ", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return nullptr;
  char chunk[4096];
  char entry[512];
  size_t entry_len = 0, text_used = 0;
  int count = 0;
  for (;;) {
    ssize_t n = read(fd, chunk, sizeof chunk);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (ssize_t i = 0; i < n; ++i) {
      if (chunk[i] != '\0') {
        if (entry_len < sizeof entry - 1) entry[entry_len++] = chunk[i];
        continue;
      }
      entry[entry_len] = '\0';
      if (strncmp(entry, "RSEQMALLOC_", 11) == 0 && count < 32 &&
          text_used + entry_len + 1 <= sizeof text) {
        memcpy(text + text_used, entry, entry_len + 1);
        entries[count++] = text + text_used;
        text_used += entry_len + 1;
      }
      entry_len = 0;
    }
  }
  close(fd);
  entries[count] = nullptr;
  return entries;
}

}  // namespace

const Options& GetOptions() {
  // 0: not parsed, 1: parsing, 2: ready. Parsing does not allocate, so a
  // thread that finds it in progress can simply spin.
  static std::atomic<int> state{0};
  static Options options;
  if (state.load(std::memory_order_acquire) == 2) return options;
  int expected = 0;
  if (state.compare_exchange_strong(expected, 1, std::memory_order_acq_rel)) {
    ParseOptions(environ != nullptr ? environ : EarlyEnvironment(), &options, STDERR_FILENO);
    state.store(2, std::memory_order_release);
  } else {
    while (state.load(std::memory_order_acquire) != 2) {
    }
  }
  return options;
}

void PrintOptions(const Options& options, int fd) {
  for (const OptionSpec& spec : kSpecs) {
    const char* field = reinterpret_cast<const char*>(&options) + spec.offset;
    LogLine line;
    line.Str("rseqmalloc: ").Str(spec.name).Str("=");
    switch (spec.kind) {
      case Kind::kCacheMode:
        line.Str(CacheModeName(*reinterpret_cast<const CacheMode*>(field)));
        break;
      case Kind::kBytes:
        line.Dec(*reinterpret_cast<const size_t*>(field));
        break;
      case Kind::kBool:
        line.Dec(*reinterpret_cast<const bool*>(field) ? 1 : 0);
        break;
      case Kind::kSignal:
        line.Dec(static_cast<uint64_t>(*reinterpret_cast<const int*>(field)));
        break;
      case Kind::kPath:
        line.Str(field);
        break;
      case Kind::kMillis:
        line.Dec(*reinterpret_cast<const uint64_t*>(field));
        break;
    }
    line.Str("  # ").Str(spec.meaning).Str("\n").Flush(fd);
  }
}

}  // namespace rseqmalloc::internal
