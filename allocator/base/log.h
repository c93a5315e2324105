// One line of text built in a fixed buffer and written with write(2).
//
// The allocator cannot use stdio (it allocates and takes locks that a
// half-initialised process or a fork child may not have), so every message,
// report and abort goes through this.
#ifndef RSEQMALLOC_ALLOCATOR_BASE_LOG_H_
#define RSEQMALLOC_ALLOCATOR_BASE_LOG_H_

#include <cstddef>
#include <cstdint>

namespace rseqmalloc::internal {

class LogLine {
 public:
  LogLine& Str(const char* s);
  LogLine& Str(const char* s, size_t n);
  LogLine& Dec(uint64_t v);
  // Right-aligned in `width` columns (wider numbers are not cut).
  LogLine& PaddedDec(uint64_t v, size_t width);
  LogLine& SignedDec(int64_t v);
  LogLine& Hex(uintptr_t v);  // 0x-prefixed
  LogLine& Ptr(const void* p) { return Hex(reinterpret_cast<uintptr_t>(p)); }
  // Fixed point with `decimals` digits after the point: Fixed(12345, 2) = "123.45".
  LogLine& Fixed(uint64_t scaled, int decimals);

  const char* data() const { return buf_; }
  size_t size() const { return len_; }
  void Clear() { len_ = 0; }
  // Writes the text (retrying short writes) and clears the buffer.
  void Flush(int fd);

 private:
  static constexpr size_t kCapacity = 512;
  char buf_[kCapacity];
  size_t len_ = 0;
};

// Prints "rseqmalloc: <what> <pointer>\n" to stderr and aborts.
[[noreturn]] void CrashWithPointer(const char* what, const void* p);
// Prints "rseqmalloc: <message>\n" to stderr and aborts.
[[noreturn]] void Crash(const char* message);

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_BASE_LOG_H_
