#include "tests/util/test_util.h"

#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/sysinfo.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>

namespace rseqmalloc_test {
namespace {

// AT_RSEQ_FEATURE_SIZE from <linux/auxvec.h>; older headers lack it.
constexpr unsigned long kAtRseqFeatureSize = 27;
// The rseq area's size up to and including mm_cid (kernel >= 6.3).
constexpr unsigned long kRseqSizeWithMmCid = 28;

uint64_t Mix(uint64_t x) {
  x ^= x >> 31;
  x *= 0x7FB5D329728EA185ull;
  x ^= x >> 27;
  x *= 0x81DADEF4BC2DD44Dull;
  x ^= x >> 33;
  return x;
}

// The 8 bytes expected at word index i; one multiply keeps filling 1 MiB
// blocks cheap while still making every word depend on key and position.
inline uint64_t Word(uint64_t key, size_t i) {
  return (key + i) * 0x9E3779B97F4A7C15ull;
}

double MonotonicSeconds() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

}  // namespace

size_t Opaque(size_t n) {
  volatile size_t v = n;
  return v;
}

uint64_t PatternKey(const void* p, size_t size, uint64_t seed) {
  return Mix(reinterpret_cast<uintptr_t>(p) ^ Mix(size ^ Mix(seed)));
}

void FillPattern(void* p, size_t size, uint64_t key) {
  auto* bytes = static_cast<unsigned char*>(p);
  size_t words = size / 8;
  for (size_t i = 0; i < words; ++i) {
    uint64_t w = Word(key, i);
    std::memcpy(bytes + i * 8, &w, 8);
  }
  uint64_t tail = Word(key, words);
  for (size_t j = words * 8; j < size; ++j) {
    bytes[j] = static_cast<unsigned char>(tail >> (8 * (j % 8)));
  }
}

size_t FindPatternMismatch(const void* p, size_t size, uint64_t key) {
  const auto* bytes = static_cast<const unsigned char*>(p);
  size_t words = size / 8;
  for (size_t i = 0; i < words; ++i) {
    uint64_t got;
    std::memcpy(&got, bytes + i * 8, 8);
    if (got != Word(key, i)) {
      uint64_t want = Word(key, i);
      for (size_t j = 0; j < 8; ++j) {
        if (((got ^ want) >> (8 * j)) & 0xFF) return i * 8 + j;
      }
    }
  }
  uint64_t tail = Word(key, words);
  for (size_t j = words * 8; j < size; ++j) {
    if (bytes[j] != static_cast<unsigned char>(tail >> (8 * (j % 8)))) {
      return j;
    }
  }
  return size;
}

std::vector<size_t> SizeSpread(size_t max) {
  std::vector<size_t> sizes;
  for (size_t s = 1; s <= 64 && s <= max; ++s) sizes.push_back(s);
  for (size_t p = 64; p <= max; p *= 2) {
    for (size_t s : {p - 1, p, p + 1, p + p / 4, p + p / 2, p + 3 * p / 4}) {
      if (s > 64 && s <= max) sizes.push_back(s);
    }
  }
  return sizes;
}

uint64_t Rng::Next() {
  // xorshift64*: fast, and good enough to pick sizes and victims.
  state_ ^= state_ >> 12;
  state_ ^= state_ << 25;
  state_ ^= state_ >> 27;
  return state_ * 0x2545F4914F6CDD1Dull;
}

size_t Rng::LogUniform(size_t lo, size_t hi) {
  double u = static_cast<double>(Next() >> 11) / 9007199254740992.0;
  double v = std::exp(std::log(static_cast<double>(lo)) +
                      u * (std::log(static_cast<double>(hi) + 1) -
                           std::log(static_cast<double>(lo))));
  size_t s = static_cast<size_t>(v);
  if (s < lo) s = lo;
  if (s > hi) s = hi;
  return s;
}

int OvercommitMode() {
  int fd = open("/proc/sys/vm/overcommit_memory", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  char c = 0;
  ssize_t n = read(fd, &c, 1);
  close(fd);
  return n == 1 && c >= '0' && c <= '2' ? c - '0' : -1;
}

size_t RamPlusSwapBytes() {
  struct sysinfo info;
  if (sysinfo(&info) != 0) return 0;
  return (static_cast<size_t>(info.totalram) + info.totalswap) * info.mem_unit;
}

size_t CurrentRssBytes() {
  int fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return 0;
  char buf[128];
  ssize_t n = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (n <= 0) return 0;
  buf[n] = '\0';
  // statm: size resident shared ... (in pages).
  char* end = nullptr;
  std::strtoull(buf, &end, 10);
  unsigned long long resident = std::strtoull(end, nullptr, 10);
  return static_cast<size_t>(resident) *
         static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

int AllowedCpus(int* out, int max) {
  cpu_set_t allowed;
  if (sched_getaffinity(0, sizeof allowed, &allowed) != 0) return 0;
  int n = 0;
  for (int cpu = 0; cpu < CPU_SETSIZE && n < max; ++cpu) {
    if (CPU_ISSET(cpu, &allowed)) out[n++] = cpu;
  }
  return n;
}

bool PinCallingThreadTo(int cpu) {
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu, &one);
  return sched_setaffinity(0, sizeof one, &one) == 0;
}

namespace {

// Runs body(0) and body(1) on two threads and waits for both; false when
// either could not start or returned false.
template <typename Body>
bool OnTwoThreads(Body& body) {
  struct Arg {
    Body* body;
    int me;
    bool ok;
  };
  Arg args[2] = {{&body, 0, false}, {&body, 1, false}};
  auto run = [](void* p) -> void* {
    Arg* arg = static_cast<Arg*>(p);
    arg->ok = (*arg->body)(arg->me);
    return nullptr;
  };
  pthread_t threads[2];
  int started = 0;
  for (; started < 2; ++started) {
    if (pthread_create(&threads[started], nullptr, run, &args[started]) != 0) break;
  }
  for (int i = 0; i < started; ++i) pthread_join(threads[i], nullptr);
  return started == 2 && args[0].ok && args[1].ok;
}

}  // namespace

bool AllocateInTurnOnTwoCpus(const int cpus[2], size_t size, int n,
                             std::vector<void*> blocks[2]) {
  std::atomic<int> turn{0};  // whose allocation is next: turn % 2
  auto body = [&](int me) {
    // A thread that cannot be pinned still takes its turns, or the other
    // would wait for ever.
    bool pinned = PinCallingThreadTo(cpus[me]);
    for (int i = 0; i < n; ++i) {
      while (turn.load(std::memory_order_acquire) % 2 != me) sched_yield();
      void* p = malloc(size);
      if (p != nullptr) Escape(p);
      blocks[me].push_back(p);
      turn.fetch_add(1, std::memory_order_release);
    }
    return pinned;
  };
  return OnTwoThreads(body);
}

bool FreeEachOnItsCpu(const int cpus[2], const std::vector<void*> blocks[2]) {
  auto body = [&](int me) {
    bool pinned = PinCallingThreadTo(cpus[me]);
    for (void* p : blocks[me]) free(p);
    return pinned;
  };
  return OnTwoThreads(body);
}

void* MapSharedBytes(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  return p == MAP_FAILED ? nullptr : p;
}

void UnmapSharedBytes(void* p, size_t bytes) { munmap(p, bytes); }

bool WaitWithDeadline(pid_t pid, double seconds, int* status) {
  double deadline = MonotonicSeconds() + seconds;
  for (;;) {
    pid_t r = waitpid(pid, status, WNOHANG);
    if (r == pid) return true;
    if (r < 0) return false;
    if (MonotonicSeconds() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, status, 0);
      return false;
    }
    usleep(1000);
  }
}

bool RunningOnValgrind() {
  const char* preload = std::getenv("LD_PRELOAD");
  return preload != nullptr && std::strstr(preload, "vgpreload") != nullptr;
}

const char* ExpectedCacheMode() {
  const char* forced = std::getenv("RSEQMALLOC_CACHE");
  if (forced != nullptr && *forced != '\0') return forced;
  if (RunningOnValgrind()) return "thread";
  return getauxval(kAtRseqFeatureSize) >= kRseqSizeWithMmCid ? "cid" : "cpu";
}

bool MaintenanceThreadAllowed() {
  const char* off = std::getenv("RSEQMALLOC_BACKGROUND_THREAD");
  if (off != nullptr && std::strcmp(off, "0") == 0) return false;
  return std::strcmp(ExpectedCacheMode(), "none") != 0;
}

}  // namespace rseqmalloc_test
