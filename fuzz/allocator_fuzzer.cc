// libFuzzer target: the input is a program over a table of live blocks, run
// against rseqmalloc linked into this binary (libFuzzer's own allocations go
// through it too).
//
// Every block gets a pattern over its whole usable size when it is
// allocated; the pattern is checked before every free and realloc, after
// malloc_trim (for every live block), and by an explicit check operation.
// Every call's result is checked against the semantics in docs/design.md:
// alignment, usable size, calloc zeroing, realloc keeping the contents, and
// the errno / return value of every failure (huge sizes, overflowing counts,
// invalid and impossible alignments). At the end of an input every block is
// released and the allocator's own count of bytes in use must be back where
// it was when the input started: nothing leaked, nothing freed twice.
//
// Operation = one byte (value % kNumOps), then its operands, in this order
// (size / count / alignment encodings: input.h):
//   malloc slot size           calloc slot count size
//   realloc slot size          reallocarray slot count size
//   memalign slot align size   aligned_alloc slot align size
//   posix_memalign slot align size
//   valloc slot size           pvalloc slot size
//   new slot form size         new_aligned slot form align size
//       form bit 0: new[], bit 1: nothrow
//   release slot method        (free, free_sized, free_aligned_sized or a
//                               delete form valid for how it was allocated)
//   usable_size slot           check slot
//   migrate cpu                (pins this thread to one allowed CPU)
//   trim                       stats
// An allocation into an occupied slot releases the old block first.
#include <errno.h>
#include <malloc.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <new>

#include "allocator/api/rseqmalloc.h"
#include "fuzz/input.h"
#include "fuzz/pattern.h"

// C23 functions glibc 2.36 does not declare yet; rseqmalloc exports them.
extern "C" void free_sized(void* p, size_t size) noexcept;
extern "C" void free_aligned_sized(void* p, size_t align, size_t size) noexcept;

namespace rseqmalloc_fuzz {
namespace {

// glibc declares memalign and aligned_alloc with alloc_align(1): the compiler
// may then assume the result is aligned to whatever was passed, which for the
// zero and non-power-of-two alignments fuzzed here is itself undefined (and
// UBSan says so). Calls through these pointers carry no such promise.
void* (*volatile const g_memalign)(size_t, size_t) = memalign;
void* (*volatile const g_aligned_alloc)(size_t, size_t) = aligned_alloc;

constexpr int kSlots = 32;
// Live bytes (usable sizes, plus alignment slack) one input may hold.
constexpr size_t kMaxLiveBytes = size_t{64} << 20;
constexpr size_t kMallocAlign = 16;
constexpr size_t kSystemPage = 4096;
constexpr size_t kNewAlign = __STDCPP_DEFAULT_NEW_ALIGNMENT__;

// How a block was allocated decides how it may be released and whether
// realloc may take it.
enum class Kind : uint8_t {
  kEmpty,
  kMalloc,        // malloc, calloc, realloc, reallocarray: free, free_sized
  kAlignedAlloc,  // aligned_alloc: free, free_aligned_sized
  kMemalign,      // memalign, posix_memalign, valloc, pvalloc: free
  kNew,
  kNewArray,
  kNewAligned,
  kNewArrayAligned,
};

struct Block {
  void* p = nullptr;
  size_t size = 0;    // what was asked for (sized frees pass it back)
  size_t align = 0;   // aligned_alloc / aligned new: what was asked for
  size_t usable = 0;  // malloc_usable_size at allocation: the pattern's extent
  uint64_t key = 0;
  Kind kind = Kind::kEmpty;
};

enum Op : uint8_t {
  kOpMalloc,
  kOpCalloc,
  kOpRealloc,
  kOpReallocArray,
  kOpMemalign,
  kOpAlignedAlloc,
  kOpPosixMemalign,
  kOpValloc,
  kOpPvalloc,
  kOpNew,
  kOpNewAligned,
  kOpRelease,
  kOpUsableSize,
  kOpCheck,
  kOpMigrate,
  kOpTrim,
  kOpStats,
  kNumOps,
};

struct State {
  Block blocks[kSlots];
  size_t live_bytes = 0;
  uint64_t next_key = 1;
};

State g_state;
cpu_set_t g_allowed_cpus;
int g_allowed_count = 0;

[[noreturn, gnu::format(printf, 1, 2)]] void Fail(const char* fmt, ...) {
  va_list args;
  va_start(args, fmt);
  fprintf(stderr, "rseqmalloc_fuzzer: FAILED: ");
  vfprintf(stderr, fmt, args);
  fprintf(stderr, "\n");
  va_end(args);
  abort();
}

bool IsPowerOfTwo(size_t x) { return x != 0 && (x & (x - 1)) == 0; }
bool Aligned(const void* p, size_t align) {
  return (reinterpret_cast<uintptr_t>(p) & (align - 1)) == 0;
}

// A request the decoders marked as impossible: it must fail.
bool Impossible(size_t size) { return size >= kImpossible; }

// Whether an allocation of `bytes` more fits this input's budget. Requests
// that do not are skipped, never expected to fail.
bool Affordable(size_t bytes) {
  return bytes <= kMaxSaneRequest && g_state.live_bytes + bytes <= kMaxLiveBytes;
}

void CheckPattern(const Block& b, const char* when) {
  size_t bad = FindMismatch(b.p, 0, b.usable, b.key);
  if (bad != b.usable) {
    Fail("%s: block %p (asked %zu, usable %zu) corrupted at offset %zu", when, b.p,
         b.size, b.usable, bad);
  }
  size_t usable = malloc_usable_size(b.p);
  if (usable != b.usable) {
    Fail("%s: usable size of %p changed from %zu to %zu", when, b.p, b.usable, usable);
  }
}

// Checks a fresh block and makes it slot `slot`'s. `zeroed`: the first `size`
// bytes must read zero (calloc).
void Adopt(int slot, void* p, size_t size, size_t need_align, Kind kind, size_t align,
           bool zeroed, const char* what) {
  if (p == nullptr) Fail("%s(size %zu, align %zu) returned NULL", what, size, align);
  if (!Aligned(p, need_align)) Fail("%s(size %zu) returned %p, not %zu-aligned", what, size, p, need_align);
  size_t usable = malloc_usable_size(p);
  if (usable < size) Fail("%s(size %zu): usable size %zu is smaller", what, size, usable);
  if (rseqmalloc_owns(p) != 1) Fail("%s(size %zu) returned %p, not rseqmalloc's", what, size, p);
  if (zeroed) {
    size_t bad = FindNonZero(p, size);
    if (bad != size) Fail("%s(size %zu) returned %p, non-zero at offset %zu", what, size, p, bad);
  }
  Block& b = g_state.blocks[slot];
  b = Block{p, size, align, usable, g_state.next_key++, kind};
  FillPattern(p, 0, usable, b.key);
  g_state.live_bytes += usable;
}

// Releases slot `slot` with one of the functions valid for its kind.
void Release(int slot, uint8_t method) {
  Block& b = g_state.blocks[slot];
  if (b.kind == Kind::kEmpty) return;
  CheckPattern(b, "before release");
  const std::align_val_t al{b.align};
  switch (b.kind) {
    case Kind::kMalloc:
      if (method % 2 == 0) {
        free(b.p);
      } else {
        free_sized(b.p, b.size);
      }
      break;
    case Kind::kAlignedAlloc:
      if (method % 2 == 0) {
        free(b.p);
      } else {
        free_aligned_sized(b.p, b.align, b.size);
      }
      break;
    case Kind::kMemalign:
      free(b.p);
      break;
    case Kind::kNew:
      if (method % 3 == 0) ::operator delete(b.p);
      if (method % 3 == 1) ::operator delete(b.p, b.size);
      if (method % 3 == 2) ::operator delete(b.p, std::nothrow);
      break;
    case Kind::kNewArray:
      if (method % 3 == 0) ::operator delete[](b.p);
      if (method % 3 == 1) ::operator delete[](b.p, b.size);
      if (method % 3 == 2) ::operator delete[](b.p, std::nothrow);
      break;
    case Kind::kNewAligned:
      if (method % 3 == 0) ::operator delete(b.p, al);
      if (method % 3 == 1) ::operator delete(b.p, b.size, al);
      if (method % 3 == 2) ::operator delete(b.p, al, std::nothrow);
      break;
    case Kind::kNewArrayAligned:
      if (method % 3 == 0) ::operator delete[](b.p, al);
      if (method % 3 == 1) ::operator delete[](b.p, b.size, al);
      if (method % 3 == 2) ::operator delete[](b.p, al, std::nothrow);
      break;
    case Kind::kEmpty:
      break;
  }
  g_state.live_bytes -= b.usable;
  b = Block{};
}

// A call that must fail returned `p` with `err`; `ok_a` / `ok_b` are the
// accepted errno values.
void ExpectFailure(const char* what, size_t a, size_t b, const void* p, int err, int ok_a,
                   int ok_b) {
  if (p != nullptr) Fail("%s(%zu, %zu) succeeded (%p), must fail", what, a, b, p);
  if (err != ok_a && err != ok_b) Fail("%s(%zu, %zu): errno %d, expected %d", what, a, b, err, ok_a);
}

int Slot(Input& in) { return in.Byte() % kSlots; }

void DoMalloc(Input& in) {
  int slot = Slot(in);
  size_t size = in.Size();
  Release(slot, 0);
  if (Impossible(size)) {
    errno = 0;
    void* p = malloc(size);
    return ExpectFailure("malloc", size, 0, p, errno, ENOMEM, ENOMEM);
  }
  if (!Affordable(size)) return;
  Adopt(slot, malloc(size), size, kMallocAlign, Kind::kMalloc, 0, false, "malloc");
}

void DoCalloc(Input& in) {
  int slot = Slot(in);
  size_t count = in.Count();
  size_t size = in.Size();
  Release(slot, 1);
  size_t bytes;
  if (__builtin_mul_overflow(count, size, &bytes) || Impossible(bytes)) {
    errno = 0;
    void* p = calloc(count, size);
    return ExpectFailure("calloc", count, size, p, errno, ENOMEM, ENOMEM);
  }
  if (!Affordable(bytes)) return;
  Adopt(slot, calloc(count, size), bytes, kMallocAlign, Kind::kMalloc, 0, true, "calloc");
}

// realloc / reallocarray of a slot; an empty slot reallocates NULL.
void DoRealloc(Input& in, bool array) {
  int slot = Slot(in);
  size_t count = array ? in.Count() : 1;
  size_t size = in.Size();
  Block& b = g_state.blocks[slot];
  if (b.kind >= Kind::kNew) return;  // not realloc's to take
  const char* what = array ? "reallocarray" : "realloc";
  auto call = [&]() { return array ? reallocarray(b.p, count, size) : realloc(b.p, size); };
  if (b.p != nullptr) CheckPattern(b, "before realloc");

  size_t bytes;
  if (__builtin_mul_overflow(count, size, &bytes) || Impossible(bytes)) {
    errno = 0;
    void* q = call();
    ExpectFailure(what, count, size, q, errno, ENOMEM, ENOMEM);
    if (b.p != nullptr) CheckPattern(b, "after a failed realloc");  // untouched
    return;
  }
  if (!Affordable(bytes)) return;
  if (b.p == nullptr) {
    return Adopt(slot, call(), bytes, kMallocAlign, Kind::kMalloc, 0, false, what);
  }
  if (bytes == 0) {  // glibc's rule, ours too: frees, returns NULL
    void* q = call();
    if (q != nullptr) Fail("%s(%p, 0) returned %p, expected NULL", what, b.p, q);
    g_state.live_bytes -= b.usable;
    b = Block{};
    return;
  }
  void* q = call();
  if (q == nullptr) Fail("%s(%p, %zu) returned NULL", what, b.p, bytes);
  if (!Aligned(q, kMallocAlign)) Fail("%s returned %p, not 16-aligned", what, q);
  // C promises min(old size, new size) bytes; glibc and rseqmalloc keep the
  // old usable size, which programs that use malloc_usable_size rely on.
  size_t kept = b.usable < bytes ? b.usable : bytes;
  size_t bad = FindMismatch(q, 0, kept, b.key);
  if (bad != kept) {
    Fail("%s(%p, %zu) -> %p: byte %zu of %zu kept bytes differs", what, b.p, bytes, q, bad, kept);
  }
  size_t usable = malloc_usable_size(q);
  if (usable < bytes) Fail("%s(%zu): usable size %zu is smaller", what, bytes, usable);
  FillPattern(q, kept, usable, b.key);
  g_state.live_bytes = g_state.live_bytes - b.usable + usable;
  b.p = q;
  b.size = bytes;
  b.usable = usable;
  b.align = 0;
  b.kind = Kind::kMalloc;
}

void DoMemalign(Input& in) {
  int slot = Slot(in);
  size_t align = in.Alignment();
  size_t size = in.Size();
  Release(slot, 0);
  errno = 0;
  if (align > SIZE_MAX / 2 + 1) {  // cannot be rounded to a power of two
    void* p = g_memalign(align, size);
    return ExpectFailure("memalign", align, size, p, errno, EINVAL, EINVAL);
  }
  size_t effective = align <= kMallocAlign ? kMallocAlign : align;
  if (!IsPowerOfTwo(effective)) effective = size_t{1} << (64 - __builtin_clzl(effective));
  if (Impossible(effective) || Impossible(size)) {
    void* p = g_memalign(align, size);
    // An impossible alignment may read as either error.
    return ExpectFailure("memalign", align, size, p, errno, ENOMEM,
                         Impossible(effective) ? EINVAL : ENOMEM);
  }
  if (!Affordable(size + effective)) return;
  Adopt(slot, g_memalign(align, size), size, effective, Kind::kMemalign, 0, false, "memalign");
}

void DoAlignedAlloc(Input& in) {
  int slot = Slot(in);
  size_t align = in.Alignment();
  size_t size = in.Size();
  Release(slot, 1);
  errno = 0;
  if (!IsPowerOfTwo(align)) {
    void* p = g_aligned_alloc(align, size);
    return ExpectFailure("aligned_alloc", align, size, p, errno, EINVAL, EINVAL);
  }
  if (Impossible(align) || Impossible(size)) {
    void* p = g_aligned_alloc(align, size);
    return ExpectFailure("aligned_alloc", align, size, p, errno, ENOMEM,
                         Impossible(align) ? EINVAL : ENOMEM);
  }
  if (!Affordable(size + align)) return;
  Adopt(slot, g_aligned_alloc(align, size), size, align, Kind::kAlignedAlloc, align, false,
        "aligned_alloc");
}

void DoPosixMemalign(Input& in) {
  int slot = Slot(in);
  size_t align = in.Alignment();
  size_t size = in.Size();
  Release(slot, 0);
  void* const kUntouched = reinterpret_cast<void*>(uintptr_t{0xdead0});
  constexpr int kSentinelErrno = 4242;  // POSIX: errno is left alone
  void* out = kUntouched;
  bool invalid = !IsPowerOfTwo(align) || align % sizeof(void*) != 0;
  bool impossible = Impossible(align) || Impossible(size);
  if (!invalid && !impossible && !Affordable(size + align)) return;
  errno = kSentinelErrno;
  int rc = posix_memalign(&out, align, size);
  int err = errno;
  if (err != kSentinelErrno) Fail("posix_memalign(%zu, %zu) changed errno to %d", align, size, err);
  if (invalid || impossible) {
    if (out != kUntouched) Fail("posix_memalign(%zu, %zu) failing wrote %p", align, size, out);
    if (invalid && rc != EINVAL) Fail("posix_memalign(%zu, %zu) = %d, expected EINVAL", align, size, rc);
    if (!invalid && rc != ENOMEM && !(Impossible(align) && rc == EINVAL)) {
      Fail("posix_memalign(%zu, %zu) = %d, expected ENOMEM", align, size, rc);
    }
    return;
  }
  if (rc != 0) Fail("posix_memalign(%zu, %zu) = %d, expected 0", align, size, rc);
  Adopt(slot, out, size, align, Kind::kMemalign, 0, false, "posix_memalign");
}

void DoPageAligned(Input& in, bool pvalloc_rounds) {
  int slot = Slot(in);
  size_t size = in.Size();
  Release(slot, 1);
  const char* what = pvalloc_rounds ? "pvalloc" : "valloc";
  errno = 0;
  if (Impossible(size)) {
    void* p = pvalloc_rounds ? pvalloc(size) : valloc(size);
    return ExpectFailure(what, size, 0, p, errno, ENOMEM, ENOMEM);
  }
  if (!Affordable(size + kSystemPage * 2)) return;
  void* p = pvalloc_rounds ? pvalloc(size) : valloc(size);
  // pvalloc rounds the size up to whole pages, and pvalloc(0) is one page.
  size_t need = pvalloc_rounds ? ((size + kSystemPage - 1) & ~(kSystemPage - 1)) : size;
  if (pvalloc_rounds && need == 0) need = kSystemPage;
  Adopt(slot, p, need, kSystemPage, Kind::kMemalign, 0, false, what);
}

void* CallNew(size_t size, bool array, bool nothrow, size_t align) {
  if (align == 0) {
    if (nothrow) return array ? ::operator new[](size, std::nothrow) : ::operator new(size, std::nothrow);
    return array ? ::operator new[](size) : ::operator new(size);
  }
  const std::align_val_t al{align};
  if (nothrow) {
    return array ? ::operator new[](size, al, std::nothrow) : ::operator new(size, al, std::nothrow);
  }
  return array ? ::operator new[](size, al) : ::operator new(size, al);
}

// operator new in every form; `aligned`: the align_val_t forms.
void DoNew(Input& in, bool aligned) {
  int slot = Slot(in);
  uint8_t form = in.Byte();
  size_t align = aligned ? in.Alignment() : 0;
  size_t size = in.Size();
  bool array = form & 1;
  bool nothrow = form & 2;
  if (aligned && !IsPowerOfTwo(align)) return;  // undefined behaviour, not a test
  Release(slot, 2);
  if (Impossible(size) || Impossible(align)) {
    void* p = nullptr;
    bool threw = false;
    try {
      p = CallNew(size, array, nothrow, align);
    } catch (const std::bad_alloc&) {
      threw = true;
    }
    if (p != nullptr) Fail("operator new(%zu, align %zu) succeeded, must fail", size, align);
    if (threw == nothrow) Fail("operator new(%zu, align %zu, nothrow %d): threw %d", size, align, nothrow, threw);
    return;
  }
  if (!Affordable(size + align)) return;
  Kind kind = aligned ? (array ? Kind::kNewArrayAligned : Kind::kNewAligned)
                      : (array ? Kind::kNewArray : Kind::kNew);
  size_t need = align > kNewAlign ? align : kNewAlign;
  Adopt(slot, CallNew(size, array, nothrow, align), size, need, kind, align, false, "operator new");
}

void DoUsableSize(Input& in) {
  const Block& b = g_state.blocks[Slot(in)];
  if (malloc_usable_size(nullptr) != 0) Fail("malloc_usable_size(NULL) != 0");
  if (b.kind == Kind::kEmpty) return;
  size_t usable = malloc_usable_size(b.p);
  if (usable != b.usable || usable < b.size) {
    Fail("malloc_usable_size(%p) = %zu, was %zu, asked %zu", b.p, usable, b.usable, b.size);
  }
  if (rseqmalloc_owns(b.p) != 1) Fail("rseqmalloc_owns(%p) != 1 for a live block", b.p);
}

void CheckAllLive(const char* when) {
  for (const Block& b : g_state.blocks) {
    if (b.kind != Kind::kEmpty) CheckPattern(b, when);
  }
}

void DoMigrate(Input& in) {
  uint8_t pick = in.Byte();
  if (g_allowed_count <= 1) return;
  int want = pick % g_allowed_count;
  for (int cpu = 0, seen = 0; cpu < CPU_SETSIZE; ++cpu) {
    if (!CPU_ISSET(cpu, &g_allowed_cpus)) continue;
    if (seen++ != want) continue;
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(cpu, &one);
    sched_setaffinity(0, sizeof(one), &one);  // best effort: a refusal is fine
    return;
  }
}

rseqmalloc_stats Stats() {
  rseqmalloc_stats s;
  if (rseqmalloc_get_stats(&s) != 0) Fail("rseqmalloc_get_stats failed");
  // Only this thread allocates while the fuzzer runs, so the layers must add
  // up exactly (rseqmalloc.h).
  uint64_t sum = s.in_use_bytes + s.front_end_cached_bytes + s.transfer_cache_bytes +
                 s.central_free_bytes + s.span_waste_bytes + s.page_heap_free_bytes +
                 s.returned_bytes + s.unused_reserved_bytes + s.metadata_bytes;
  if (sum != s.total_mapped_bytes) {
    Fail("stats: the layers add up to %llu, total_mapped_bytes is %llu",
         static_cast<unsigned long long>(sum), static_cast<unsigned long long>(s.total_mapped_bytes));
  }
  if (s.in_use_bytes < g_state.live_bytes) {
    Fail("stats: in_use_bytes %llu below the %zu bytes this input holds",
         static_cast<unsigned long long>(s.in_use_bytes), g_state.live_bytes);
  }
  return s;
}

void Step(Input& in) {
  switch (in.Byte() % kNumOps) {
    case kOpMalloc: return DoMalloc(in);
    case kOpCalloc: return DoCalloc(in);
    case kOpRealloc: return DoRealloc(in, false);
    case kOpReallocArray: return DoRealloc(in, true);
    case kOpMemalign: return DoMemalign(in);
    case kOpAlignedAlloc: return DoAlignedAlloc(in);
    case kOpPosixMemalign: return DoPosixMemalign(in);
    case kOpValloc: return DoPageAligned(in, false);
    case kOpPvalloc: return DoPageAligned(in, true);
    case kOpNew: return DoNew(in, false);
    case kOpNewAligned: return DoNew(in, true);
    case kOpRelease: {
      int slot = Slot(in);
      return Release(slot, in.Byte());
    }
    case kOpUsableSize: return DoUsableSize(in);
    case kOpCheck: {
      const Block& b = g_state.blocks[Slot(in)];
      if (b.kind != Kind::kEmpty) CheckPattern(b, "check");
      return;
    }
    case kOpMigrate: return DoMigrate(in);
    case kOpTrim:
      malloc_trim(0);
      return CheckAllLive("after malloc_trim");  // nothing live was returned
    case kOpStats:
      Stats();
      return;
  }
}

}  // namespace
}  // namespace rseqmalloc_fuzz

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  namespace rf = rseqmalloc_fuzz;
  if (sched_getaffinity(0, sizeof(rf::g_allowed_cpus), &rf::g_allowed_cpus) == 0) {
    rf::g_allowed_count = CPU_COUNT(&rf::g_allowed_cpus);
  }
  void* p = malloc(1);
  if (rseqmalloc_owns(p) != 1) rf::Fail("malloc is not rseqmalloc's: the link is wrong");
  free(p);
  // A replay "in thread mode" that silently ran in another mode would prove
  // nothing: the forced mode must be the one in use (cpu and cid may fall
  // back to thread where rseq is unavailable).
  const char* asked = getenv("RSEQMALLOC_CACHE");
  const char* mode = rseqmalloc_mode();
  if (asked != nullptr && strcmp(asked, "auto") != 0 && strcmp(asked, mode) != 0 &&
      !(strcmp(mode, "thread") == 0 && (strcmp(asked, "cpu") == 0 || strcmp(asked, "cid") == 0))) {
    rf::Fail("RSEQMALLOC_CACHE=%s but the allocator runs in mode %s", asked, mode);
  }
  fprintf(stderr, "rseqmalloc_fuzzer: mode=%s, %d CPUs allowed\n", mode, rf::g_allowed_count);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace rf = rseqmalloc_fuzz;
  const uint64_t in_use_before = rf::Stats().in_use_bytes;
  rf::Input in(data, size);
  while (!in.Empty()) rf::Step(in);
  for (int slot = 0; slot < rf::kSlots; ++slot) rf::Release(slot, static_cast<uint8_t>(slot));
  if (rf::g_allowed_count > 1) {
    sched_setaffinity(0, sizeof(rf::g_allowed_cpus), &rf::g_allowed_cpus);
  }
  const uint64_t in_use_after = rf::Stats().in_use_bytes;
  if (in_use_after != in_use_before) {
    rf::Fail("in_use_bytes %llu before the input, %llu after everything was freed",
             static_cast<unsigned long long>(in_use_before),
             static_cast<unsigned long long>(in_use_after));
  }
  return 0;
}
