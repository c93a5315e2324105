#include "rseq/cpus.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>

namespace rseqmalloc::rseq {
namespace internal {

int ParseCpuListEnd(const char* text, int length) {
  int end = -1;
  int value = -1;  // number being parsed, -1 when none yet
  for (int i = 0; i <= length; ++i) {
    char c = i < length ? text[i] : '\n';
    if (c >= '0' && c <= '9') {
      value = (value < 0 ? 0 : value) * 10 + (c - '0');
      if (value > (1 << 20)) return -1;
    } else if (c == '-' || c == ',' || c == '\n' || c == '\0') {
      if (value < 0) {
        // A separator with no number before it is only fine at the very end.
        if (c == '\n' || c == '\0') break;
        return -1;
      }
      if (value + 1 > end) end = value + 1;
      value = -1;
      if (c == '\n' || c == '\0') break;
    } else {
      return -1;
    }
  }
  return end;
}

}  // namespace internal

int NumPossibleCpus() {
  static std::atomic<int> cached{0};
  int n = cached.load(std::memory_order_relaxed);
  if (n > 0) return n;

  n = kMaxPossibleCpusFallback;
  int saved_errno = errno;
  // open, read and close are cancellation points: a deferred cancellation
  // must not act inside an allocator's first call (they are noexcept).
  int cancel_state;
  pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
  int fd = open("/sys/devices/system/cpu/possible", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    char buf[256];
    ssize_t len = read(fd, buf, sizeof(buf));
    close(fd);
    if (len > 0 && len < static_cast<ssize_t>(sizeof(buf))) {
      int parsed = internal::ParseCpuListEnd(buf, static_cast<int>(len));
      if (parsed > 0) n = parsed;
    }
  }
  pthread_setcancelstate(cancel_state, nullptr);
  errno = saved_errno;
  cached.store(n, std::memory_order_relaxed);
  return n;
}

int AllowedCpuCount() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) return NumPossibleCpus();
  return CPU_COUNT(&set);
}

}  // namespace rseqmalloc::rseq
