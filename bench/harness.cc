#include "bench/harness.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <latch>
#include <thread>

namespace rseqmalloc::bench {
namespace {

// Parses "64", "8K", "1M" (binary multiples). Returns 0 on anything else.
size_t ParseBytes(const std::string& text) {
  if (text.empty()) return 0;
  char* end = nullptr;
  errno = 0;
  unsigned long long value = strtoull(text.c_str(), &end, 10);
  if (errno != 0 || end == text.c_str()) return 0;
  std::string suffix(end);
  if (suffix == "K" || suffix == "k") {
    value <<= 10;
  } else if (suffix == "M" || suffix == "m") {
    value <<= 20;
  } else if (!suffix.empty()) {
    return 0;
  }
  return static_cast<size_t>(value);
}

}  // namespace

uint64_t Rng::LogUniform(uint64_t lo, uint64_t hi) {
  // Pick a uniform point on the log scale, then map back.
  double u = static_cast<double>(Next() >> 11) * 0x1.0p-53;
  double v = std::exp(std::log(static_cast<double>(lo)) +
                      u * (std::log(static_cast<double>(hi)) - std::log(static_cast<double>(lo))));
  uint64_t r = static_cast<uint64_t>(v);
  return r < lo ? lo : (r > hi ? hi : r);
}

bool SizeDist::Parse(const std::string& spec, SizeDist* out) {
  SizeDist d;
  d.spec_ = spec;
  if (spec == "mix") {
    d.kind_ = Kind::kMix;
    d.lo_ = 8;
    d.hi_ = 1 << 20;
  } else if (spec == "bimodal") {
    d.kind_ = Kind::kBimodal;
    d.lo_ = 16;
    d.hi_ = 4096;
  } else if (spec == "small") {
    d.kind_ = Kind::kUniform;
    d.lo_ = 16;
    d.hi_ = 1024;
  } else if (size_t sep = spec.find_first_of("-~"); sep != std::string::npos) {
    d.kind_ = spec[sep] == '-' ? Kind::kUniform : Kind::kLogUniform;
    d.lo_ = ParseBytes(spec.substr(0, sep));
    d.hi_ = ParseBytes(spec.substr(sep + 1));
    if (d.lo_ == 0 || d.hi_ < d.lo_) return false;
  } else {
    d.kind_ = Kind::kFixed;
    d.lo_ = d.hi_ = ParseBytes(spec);
    if (d.lo_ == 0) return false;
  }
  *out = d;
  return true;
}

size_t SizeDist::Next(Rng& rng) const {
  switch (kind_) {
    case Kind::kFixed:
      return lo_;
    case Kind::kUniform:
      return rng.Uniform(lo_, hi_);
    case Kind::kLogUniform:
      return rng.LogUniform(lo_, hi_);
    case Kind::kMix: {
      uint64_t tier = rng.Next() % 100;
      if (tier < 80) return rng.Uniform(8, 256);
      if (tier < 99) return rng.Uniform(257, 8 << 10);
      return rng.LogUniform((8 << 10) + 1, 1 << 20);
    }
    case Kind::kBimodal:
      return rng.Percent(80) ? rng.Uniform(16, 64) : rng.Uniform(2048, 4096);
  }
  return lo_;
}

Options::Options(int argc, char** argv, const char* usage) : usage_(usage) {
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      fprintf(stdout, "%s", usage_);
      exit(0);
    }
    if (arg.rfind("--", 0) != 0) Fail("unexpected argument '" + arg + "'");
    arg = arg.substr(2);
    size_t eq = arg.find('=');
    if (eq != std::string::npos) {
      given_.emplace_back(arg.substr(0, eq), arg.substr(eq + 1));
    } else if (i + 1 < argc) {
      given_.emplace_back(arg, argv[++i]);
    } else {
      Fail("option --" + arg + " needs a value");
    }
  }
  read_.assign(given_.size(), false);
}

void Options::Fail(const std::string& message) const {
  fprintf(stderr, "error: %s\n%s", message.c_str(), usage_);
  exit(2);
}

const char* Options::Find(const char* name) {
  const char* found = nullptr;
  for (size_t i = 0; i < given_.size(); ++i) {
    if (given_[i].first == name) {
      read_[i] = true;
      found = given_[i].second.c_str();  // the last one given wins
    }
  }
  return found;
}

int64_t Options::Int(const char* name, int64_t def) {
  const char* text = Find(name);
  int64_t value = def;
  if (text != nullptr) {
    char* end = nullptr;
    errno = 0;
    value = strtoll(text, &end, 10);
    if (errno != 0 || end == text || *end != '\0' || value < 0) {
      Fail(std::string("--") + name + " wants a non-negative integer, got '" + text + "'");
    }
  }
  used_.emplace_back(name, std::to_string(value));
  return value;
}

std::string Options::Str(const char* name, const std::string& def) {
  const char* text = Find(name);
  std::string value = text != nullptr ? text : def;
  used_.emplace_back(name, value);
  return value;
}

SizeDist Options::Size(const char* name, const std::string& def) {
  std::string text = Str(name, def);
  SizeDist dist;
  if (!SizeDist::Parse(text, &dist)) {
    Fail(std::string("--") + name + ": '" + text +
         "' is not a size (64, 8K, 16-1024, 256K~64M, small, mix, bimodal)");
  }
  return dist;
}

void Options::Finish() {
  for (size_t i = 0; i < given_.size(); ++i) {
    if (!read_[i]) Fail("unknown option --" + given_[i].first);
  }
}

int64_t PeakRssKib() {
  // Not getrusage's ru_maxrss: exec keeps the high-water mark of the image it
  // replaced, so a program started by a big parent (the Python runner) would
  // report the parent's RSS. VmHWM belongs to this address space only.
  int64_t hwm = -1;
  if (FILE* f = fopen("/proc/self/status", "r")) {
    char row[256];
    while (fgets(row, sizeof(row), f) != nullptr) {
      if (strncmp(row, "VmHWM:", 6) == 0) hwm = strtoll(row + 6, nullptr, 10);
    }
    fclose(f);
  }
  // The kernel batches RSS counters per CPU, so the mark can trail statm's
  // current figure slightly; a peak is never reported below "now".
  int64_t now = CurrentRssKib();
  return hwm > now ? hwm : now;
}

// open/read, not stdio: idle_release reads it while the program must make
// no allocator call.
int64_t CurrentRssKib() {
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char buf[128];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return -1;
  buf[n] = '\0';
  const char* resident = strchr(buf, ' ');  // the second field
  if (resident == nullptr) return -1;
  return strtoll(resident + 1, nullptr, 10) * (sysconf(_SC_PAGESIZE) / 1024);
}

double NowSeconds() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

void SleepSeconds(double seconds) {
  struct timespec nap;
  nap.tv_sec = static_cast<time_t>(seconds);
  nap.tv_nsec = static_cast<long>((seconds - static_cast<double>(nap.tv_sec)) * 1e9);
  while (nanosleep(&nap, &nap) != 0 && errno == EINTR) {
  }
}

double RunTimed(int threads, double seconds,
                const std::function<uint64_t(int, const std::atomic<bool>&)>& body,
                uint64_t* total_ops) {
  std::atomic<bool> stop{false};
  std::latch ready(threads);
  std::atomic<bool> go{false};
  std::vector<uint64_t> ops(threads, 0);
  std::vector<std::thread> pool;
  pool.reserve(threads);
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      ready.count_down();
      go.wait(false, std::memory_order_acquire);  // blocks; spinning would starve main
      ops[t] = body(t, stop);
    });
  }
  // Start the clock only once every thread exists, so thread creation (which
  // allocates stacks and TLS) stays out of the measurement.
  ready.wait();
  double start = NowSeconds();
  go.store(true, std::memory_order_release);
  go.notify_all();
  SleepSeconds(seconds);
  stop.store(true, std::memory_order_relaxed);
  for (auto& th : pool) th.join();
  double elapsed = NowSeconds() - start;
  *total_ops = 0;
  for (uint64_t n : ops) *total_ops += n;
  return elapsed;
}

ResultLine::ResultLine(const char* workload, const Options& options) {
  line_ = std::string("result workload=") + workload;
  for (const auto& [key, value] : options.used()) line_ += " " + key + "=" + value;
}

void ResultLine::Add(const char* key, double value) {
  char buf[64];
  snprintf(buf, sizeof(buf), "%.6g", value);
  Add(key, std::string(buf));
}

void ResultLine::Add(const char* key, int64_t value) { Add(key, std::to_string(value)); }

void ResultLine::Add(const char* key, const std::string& value) {
  line_ += std::string(" ") + key + "=" + value;
}

void ResultLine::AddThroughput(double seconds, uint64_t ops) {
  Add("seconds", seconds);
  Add("ops", static_cast<int64_t>(ops));
  Add("ops_per_sec", static_cast<double>(ops) / seconds);
}

void ResultLine::Print() {
  Add("peak_rss_kib", PeakRssKib());
  Add("final_rss_kib", CurrentRssKib());
  // Every shared object whose file name contains "malloc" or is one that
  // LD_PRELOAD names, comma-separated ("none" for glibc's own): the runner
  // compares it with what it preloaded (a library of any name may be
  // compared, e.g. a previous build kept as prev.so).
  std::string preloaded = " ";
  if (const char* env = getenv("LD_PRELOAD")) {
    for (const char* c = env; *c != '\0'; ++c) preloaded += (*c == ':' ? ' ' : *c);
  }
  preloaded += " ";
  auto was_preloaded = [&](const std::string& file) {
    // A word of LD_PRELOAD that is the file or ends in "/file".
    for (size_t at = preloaded.find(file); at != std::string::npos;
         at = preloaded.find(file, at + 1)) {
      char before = preloaded[at - 1];
      char after = preloaded[at + file.size()];
      if ((before == ' ' || before == '/') && after == ' ') return true;
    }
    return false;
  };
  std::string libs;
  if (FILE* maps = fopen("/proc/self/maps", "r")) {
    char row[4096];
    while (fgets(row, sizeof(row), maps) != nullptr) {
      const char* path = strchr(row, '/');
      if (path == nullptr) continue;
      std::string file(path);
      while (!file.empty() && (file.back() == '\n' || file.back() == ' ')) file.pop_back();
      file = file.substr(file.rfind('/') + 1);
      bool malloc_named =
          file.find("malloc") != std::string::npos && file.find(".so") != std::string::npos;
      if (file.empty() || (!malloc_named && !was_preloaded(file))) continue;
      if (("," + libs + ",").find("," + file + ",") != std::string::npos) continue;
      libs += (libs.empty() ? "" : ",") + file;
    }
    fclose(maps);
  }
  Add("malloc_libs", libs.empty() ? std::string("none") : libs);
  fprintf(stdout, "%s\n", line_.c_str());
  fflush(stdout);
}

}  // namespace rseqmalloc::bench
