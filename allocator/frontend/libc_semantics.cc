#include "allocator/frontend/libc_semantics.h"

#include <cerrno>
#include <cstdint>
#include <cstring>

#include "allocator/frontend/frontend.h"
#include "allocator/frontend/reentrant_blocks.h"

namespace rseqmalloc::internal {
namespace {

// valloc and pvalloc align to the system page, not to our (larger) page.
constexpr size_t kSystemPageSize = 4096;

bool IsPowerOfTwo(size_t x) { return x != 0 && (x & (x - 1)) == 0; }

void* Fail(int error) {
  errno = error;
  return nullptr;
}

// Moves the block at p (usable bytes) into a new one of `size` bytes
// (allocated with `room` >= size bytes when that fits: near a memory limit
// the room must not make a realloc fail that the exact size serves).
void* MoveBlock(void* p, size_t usable, size_t size, size_t room = 0) {
  void* q = nullptr;
  if (room > size) {
    int saved_errno = errno;
    // A block given room grows: a large one goes where it can keep growing
    // in place (PageHeap's Placement::kRoomToGrow).
    q = room > kMaxSmallSize ? AllocateLargeSlow(room, kPageSize, nullptr, /*grows=*/true)
                             : Allocate(room);
    if (q == nullptr) errno = saved_errno;
  }
  if (q == nullptr) q = Allocate(size);
  if (q == nullptr) return nullptr;  // errno set; p untouched, as C requires
  memcpy(q, p, usable < size ? usable : size);
  Free(p);
  return q;
}

// A block that grows moves with a quarter more room than asked for: one
// that keeps growing then moves O(log n) times, and the copies add up to a
// constant times its final size, not to its square. A small block's room
// stays small, so that it does not jump to the page heap for a few bytes.
size_t GrowthRoom(size_t usable, size_t size) {
  if (size <= usable || size - usable >= usable / 4) return size;
  size_t room = usable + usable / 4;
  return size <= kMaxSmallSize && room > kMaxSmallSize ? kMaxSmallSize : room;
}

// A large block grows in place with an eighth more room than asked for
// (up to a MiB: growths of a big block reach the page heap every MiB), so
// that a buffer grown a page at a time takes the page heap's lock a few
// dozen times, not on every call (two threads growing 16 MiB buffers spent
// 70 % of their time on that lock).
constexpr size_t kMaxInPlaceRoom = size_t{1} << 20;
size_t InPlaceRoom(size_t bytes) { return bytes / 8 < kMaxInPlaceRoom ? bytes / 8 : kMaxInPlaceRoom; }

// A large block keeps its pages for a size that leaves at most a quarter
// of it, and at most 2 MiB, unused: the room a growth in place gave it
// must survive the next growth step. (It did not: the step after a move
// gave the room back, and the step after that took the page heap's lock
// to grow again.) jemalloc's large size classes leave as much unused; the
// cap bounds what a shrink of a big block keeps (a move's room, a quarter,
// goes back at the next step; the growth after it takes those pages again
// in place).
constexpr size_t kMaxKeptUnused = 2 * kMaxInPlaceRoom;
bool KeepsLargeBlock(size_t usable, size_t size) {
  if (size > usable) return false;
  size_t unused = usable - size;
  return unused <= size / 4 && unused <= kMaxKeptUnused;
}

}  // namespace

void* Calloc(size_t count, size_t size) {
  size_t bytes;
  if (__builtin_mul_overflow(count, size, &bytes)) return Fail(ENOMEM);
  if (bytes <= kMaxSmallSize) {
    void* p = Allocate(bytes);
    if (p != nullptr) memset(p, 0, bytes);
    return p;
  }
  // Pages fresh from the OS (or returned to it) read as zero already:
  // writing them would make a sparse calloc resident for nothing.
  bool zeroed = false;
  void* p = AllocateLargeSlow(bytes, kPageSize, &zeroed);
  if (p != nullptr && !zeroed) memset(p, 0, bytes);
  return p;
}

void* Realloc(void* p, size_t size) {
  if (p == nullptr) return Allocate(size);
  if (size == 0) {  // glibc frees and returns NULL
    Free(p);
    return nullptr;
  }
  uint32_t cls = ClassifyPointer(p);
  if (cls == kNotOurs) {
    // A block a signal handler got (reentrant_blocks.h) always moves.
    if (size_t mapped = ReentrantUsableSize(p)) return MoveBlock(p, mapped, size);
    // Reported like an invalid free; when told to carry on, fail the call
    // and touch nothing.
    ReportInvalidPointer("realloc(): invalid pointer", p);
    return Fail(EINVAL);
  }
  if (cls != kLargeClass) {
    // A size that fits stays (most calls of a buffer grown a few bytes at a
    // time end here: the class alone answers, no second look at the pagemap).
    if (FitsInPlace(size, cls)) return p;
    size_t usable = ClassToSize(cls);
    return MoveBlock(p, usable, size, GrowthRoom(usable, size));
  }
  size_t usable = UsableSize(p);
  if (size <= kMaxSmallSize) return MoveBlock(p, usable, size);
  // A large block shrinks in place and grows into the free pages after it.
  if (KeepsLargeBlock(usable, size)) return p;
  if (ResizeLargeBlock(p, size, size + InPlaceRoom(size))) return p;
  return MoveBlock(p, usable, size, GrowthRoom(usable, size));
}

void* ReallocArray(void* p, size_t count, size_t size) {
  size_t bytes;
  if (__builtin_mul_overflow(count, size, &bytes)) return Fail(ENOMEM);
  return Realloc(p, bytes);
}

// glibc's memalign: small alignments are malloc, a non-power of two is
// rounded up to the next power of two, and only an alignment that cannot be
// rounded is EINVAL.
void* Memalign(size_t align, size_t size) {
  if (align <= 16) return Allocate(size);
  if (align > SIZE_MAX / 2 + 1) return Fail(EINVAL);
  if (!IsPowerOfTwo(align)) align = size_t{1} << (64 - __builtin_clzl(align));
  return AllocateAligned(size, align);
}

// C17 (DR 460) and glibc >= 2.38: an alignment that is not a power of two is
// EINVAL. glibc 2.36 still rounds it up like memalign; we take the stricter,
// newer answer so bad input is reported, and say so in docs/api.md.
void* AlignedAlloc(size_t align, size_t size) {
  if (!IsPowerOfTwo(align)) return Fail(EINVAL);
  return AllocateAligned(size, align);
}

int PosixMemalign(void** out, size_t align, size_t size) {
  if (!IsPowerOfTwo(align) || align % sizeof(void*) != 0) return EINVAL;
  int saved_errno = errno;  // POSIX: the result is the error, errno untouched
  void* p = AllocateAligned(size, align);
  if (p == nullptr) {
    errno = saved_errno;
    return ENOMEM;
  }
  *out = p;
  return 0;
}

void* Valloc(size_t size) { return AllocateAligned(size, kSystemPageSize); }

void* Pvalloc(size_t size) {
  size_t rounded;
  if (__builtin_add_overflow(size, kSystemPageSize - 1, &rounded)) return Fail(ENOMEM);
  rounded &= ~(kSystemPageSize - 1);
  return AllocateAligned(rounded == 0 ? kSystemPageSize : rounded, kSystemPageSize);
}

}  // namespace rseqmalloc::internal
