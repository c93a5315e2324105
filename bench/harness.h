// Shared plumbing for the workload programs in bench/: command-line options,
// size distributions, a cheap PRNG, timed multi-threaded runs, RSS readings
// and the one machine-readable `result` line that tools/compare parses.
//
// The workloads are plain programs that link no allocator of their own, so
// the allocator under test is whatever LD_PRELOAD puts first (or glibc's).
// They may allocate freely outside the timed regions; inside them, every
// allocation is one the workload means to measure.
#ifndef RSEQMALLOC_BENCH_HARNESS_H_
#define RSEQMALLOC_BENCH_HARNESS_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

namespace rseqmalloc::bench {

// Keeps the compiler from proving an allocation unused (GCC and Clang may
// delete a malloc/free pair whose pointer never escapes).
inline void DoNotOptimize(const void* p) { asm volatile("" : : "r"(p) : "memory"); }

// splitmix64: fast, statistically decent, and each thread seeds its own.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t Next() {
    uint64_t z = (state_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [lo, hi]; the modulo bias is irrelevant at these ranges.
  uint64_t Uniform(uint64_t lo, uint64_t hi) { return lo + Next() % (hi - lo + 1); }
  // Roughly log-uniform in [lo, hi]: as many 1-2 KiB objects as 512-1024 KiB.
  uint64_t LogUniform(uint64_t lo, uint64_t hi);
  // True with probability percent / 100.
  bool Percent(unsigned percent) { return Next() % 100 < percent; }

 private:
  uint64_t state_;
};

// A size distribution named on the command line:
//   "64"        every object is 64 bytes;
//   "16-1024"   uniform between the bounds (K and M suffixes allowed);
//   "256K~64M"  log-uniform between the bounds;
//   "small"     uniform 16-1024 bytes (typical small-object churn);
//   "mix"       the long-tailed server mix: 80 % 8-256 B, 19 % 257 B-8 KiB,
//               1 % 8 KiB-1 MiB (log-uniform in that last tier);
//   "bimodal"   80 % uniform 16-64 B, 20 % uniform 2-4 KiB (small records
//               and the buffers that carry them).
class SizeDist {
 public:
  // Returns false (and leaves *out untouched) when `spec` is not one of the
  // forms above or names a zero size.
  static bool Parse(const std::string& spec, SizeDist* out);
  size_t Next(Rng& rng) const;
  size_t max_size() const { return hi_; }
  const std::string& spec() const { return spec_; }

 private:
  enum class Kind { kFixed, kUniform, kLogUniform, kMix, kBimodal };
  Kind kind_ = Kind::kFixed;
  size_t lo_ = 64;
  size_t hi_ = 64;
  std::string spec_ = "64";
};

// `--name=value` or `--name value` options. Each workload reads the ones it
// knows, then calls Finish(), which rejects anything left unread so a typo
// never silently runs the default.
class Options {
 public:
  Options(int argc, char** argv, const char* usage);
  int64_t Int(const char* name, int64_t def);
  std::string Str(const char* name, const std::string& def);
  SizeDist Size(const char* name, const std::string& def);
  void Finish();
  // Prints the message and the usage, exits with status 2.
  [[noreturn]] void Fail(const std::string& message) const;
  // Name=value pairs actually used, echoed on the result line.
  const std::vector<std::pair<std::string, std::string>>& used() const { return used_; }

 private:
  const char* Find(const char* name);
  std::vector<std::pair<std::string, std::string>> given_;
  std::vector<bool> read_;
  std::vector<std::pair<std::string, std::string>> used_;
  const char* usage_;
};

// Writes one byte in every 4 KiB page of [p, p + size) and the last byte, so
// the pages become resident (RSS means something) without a full memset
// drowning the allocator's cost.
inline void TouchPages(void* p, size_t size) {
  char* c = static_cast<char*>(p);
  for (size_t off = 0; off < size; off += 4096) c[off] = static_cast<char>(off);
  c[size - 1] = 1;
  DoNotOptimize(p);
}

// Resident set size of this process, in KiB.
int64_t PeakRssKib();     // high-water mark, /proc/self/status VmHWM
int64_t CurrentRssKib();  // now, /proc/self/statm; never calls malloc

double NowSeconds();  // monotonic clock
void SleepSeconds(double seconds);

// Runs body(thread_index, stop) on `threads` threads. All threads start
// together; `stop` turns true after `seconds`. Each body returns the number of
// operations it completed. Returns the wall time from the common start until
// the last thread returned, and adds up the operations into *total_ops.
double RunTimed(int threads, double seconds,
                const std::function<uint64_t(int, const std::atomic<bool>&)>& body,
                uint64_t* total_ops);

// The machine-readable line:
//   result workload=pair threads=2 size=64 ... ops_per_sec=... peak_rss_kib=...
// Also names the malloc libraries mapped into the process, so the runner can
// check that LD_PRELOAD really took effect.
class ResultLine {
 public:
  ResultLine(const char* workload, const Options& options);
  void Add(const char* key, double value);
  void Add(const char* key, int64_t value);
  void Add(const char* key, const std::string& value);
  // seconds, ops and ops_per_sec: every workload's throughput fields.
  void AddThroughput(double seconds, uint64_t ops);
  // Appends peak_rss_kib, final_rss_kib and malloc_libs, then prints.
  void Print();

 private:
  std::string line_;
};

}  // namespace rseqmalloc::bench

#endif  // RSEQMALLOC_BENCH_HARNESS_H_
