#include "allocator/base/log.h"

#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "allocator/base/no_cancel.h"

namespace rseqmalloc::internal {

LogLine& LogLine::Str(const char* s) { return Str(s, strlen(s)); }

LogLine& LogLine::Str(const char* s, size_t n) {
  if (n > kCapacity - len_) n = kCapacity - len_;  // truncate, never overflow
  memcpy(buf_ + len_, s, n);
  len_ += n;
  return *this;
}

LogLine& LogLine::Dec(uint64_t v) {
  char digits[20];
  int n = 0;
  do {
    digits[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  char out[20];
  for (int i = 0; i < n; ++i) out[i] = digits[n - 1 - i];
  return Str(out, n);
}

LogLine& LogLine::PaddedDec(uint64_t v, size_t width) {
  size_t digits = 1;
  for (uint64_t rest = v / 10; rest != 0; rest /= 10) ++digits;
  for (; digits < width; ++digits) Str(" ");
  return Dec(v);
}

LogLine& LogLine::SignedDec(int64_t v) {
  if (v < 0) {
    Str("-");
    return Dec(0 - static_cast<uint64_t>(v));
  }
  return Dec(static_cast<uint64_t>(v));
}

LogLine& LogLine::Hex(uintptr_t v) {
  char out[2 + 16];
  out[0] = '0';
  out[1] = 'x';
  int n = 0;
  char digits[16];
  do {
    digits[n++] = "0123456789abcdef"[v & 15];
    v >>= 4;
  } while (v != 0);
  for (int i = 0; i < n; ++i) out[2 + i] = digits[n - 1 - i];
  return Str(out, 2 + n);
}

LogLine& LogLine::Fixed(uint64_t scaled, int decimals) {
  uint64_t div = 1;
  for (int i = 0; i < decimals; ++i) div *= 10;
  Dec(scaled / div);
  if (decimals == 0) return *this;
  Str(".");
  uint64_t frac = scaled % div;
  for (uint64_t d = div / 10; d > 0; d /= 10) {
    char c = static_cast<char>('0' + (frac / d) % 10);
    Str(&c, 1);
  }
  return *this;
}

void LogLine::Flush(int fd) {
  int saved_errno = errno;  // logging must not change what the caller sees
  NoCancel no_cancel;       // write is a cancellation point
  size_t done = 0;
  while (done < len_) {
    ssize_t n = write(fd, buf_ + done, len_ - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  len_ = 0;
  errno = saved_errno;
}

void CrashWithPointer(const char* what, const void* p) {
  LogLine line;
  line.Str("rseqmalloc: ").Str(what).Str(" ").Ptr(p).Str("\n").Flush(STDERR_FILENO);
  abort();
}

void Crash(const char* message) {
  LogLine line;
  line.Str("rseqmalloc: ").Str(message).Str("\n").Flush(STDERR_FILENO);
  abort();
}

}  // namespace rseqmalloc::internal
