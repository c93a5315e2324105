// Every C++ operator new / operator delete form. new retries through the
// new-handler loop and throws std::bad_alloc (nothrow forms return nullptr);
// sized deletes hand the size down so it is checked against the block.
#include <cstddef>
#include <new>

#include "allocator/frontend/frontend.h"

namespace in = rseqmalloc::internal;

namespace {

constexpr size_t kDefaultNewAlign = __STDCPP_DEFAULT_NEW_ALIGNMENT__;

void* TryAllocate(size_t size, size_t align) {
  return align <= kDefaultNewAlign ? in::Allocate(size) : in::AllocateAligned(size, align);
}

// [new.delete.single]: call the new-handler until it succeeds, or there is
// no handler (then bad_alloc), or the handler throws.
template <bool kNothrow>
[[gnu::noinline]] void* NewSlow(size_t size, size_t align) {
  for (;;) {
    void* p = TryAllocate(size, align);
    if (p != nullptr) return p;
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) {
      if (kNothrow) return nullptr;
      throw std::bad_alloc();
    }
    if (kNothrow) {
      try {
        handler();
      } catch (...) {
        return nullptr;
      }
    } else {
      handler();
    }
  }
}

template <bool kNothrow>
inline void* New(size_t size, size_t align) {
  void* p = TryAllocate(size, align);
  if (__builtin_expect(p != nullptr, 1)) return p;
  return NewSlow<kNothrow>(size, align);
}

inline size_t Align(std::align_val_t a) { return static_cast<size_t>(a); }

}  // namespace

#define RSEQMALLOC_EXPORT __attribute__((visibility("default")))

RSEQMALLOC_EXPORT void* operator new(size_t n) { return New<false>(n, 0); }
RSEQMALLOC_EXPORT void* operator new[](size_t n) { return New<false>(n, 0); }
RSEQMALLOC_EXPORT void* operator new(size_t n, const std::nothrow_t&) noexcept {
  return New<true>(n, 0);
}
RSEQMALLOC_EXPORT void* operator new[](size_t n, const std::nothrow_t&) noexcept {
  return New<true>(n, 0);
}
RSEQMALLOC_EXPORT void* operator new(size_t n, std::align_val_t a) { return New<false>(n, Align(a)); }
RSEQMALLOC_EXPORT void* operator new[](size_t n, std::align_val_t a) {
  return New<false>(n, Align(a));
}
RSEQMALLOC_EXPORT void* operator new(size_t n, std::align_val_t a, const std::nothrow_t&) noexcept {
  return New<true>(n, Align(a));
}
RSEQMALLOC_EXPORT void* operator new[](size_t n, std::align_val_t a,
                                       const std::nothrow_t&) noexcept {
  return New<true>(n, Align(a));
}

RSEQMALLOC_EXPORT void operator delete(void* p) noexcept { in::Free(p); }
RSEQMALLOC_EXPORT void operator delete[](void* p) noexcept { in::Free(p); }
RSEQMALLOC_EXPORT void operator delete(void* p, const std::nothrow_t&) noexcept { in::Free(p); }
RSEQMALLOC_EXPORT void operator delete[](void* p, const std::nothrow_t&) noexcept { in::Free(p); }
RSEQMALLOC_EXPORT void operator delete(void* p, std::align_val_t) noexcept { in::Free(p); }
RSEQMALLOC_EXPORT void operator delete[](void* p, std::align_val_t) noexcept { in::Free(p); }
RSEQMALLOC_EXPORT void operator delete(void* p, std::align_val_t, const std::nothrow_t&) noexcept {
  in::Free(p);
}
RSEQMALLOC_EXPORT void operator delete[](void* p, std::align_val_t,
                                         const std::nothrow_t&) noexcept {
  in::Free(p);
}
RSEQMALLOC_EXPORT void operator delete(void* p, size_t n) noexcept { in::FreeSized(p, n, 0); }
RSEQMALLOC_EXPORT void operator delete[](void* p, size_t n) noexcept { in::FreeSized(p, n, 0); }
RSEQMALLOC_EXPORT void operator delete(void* p, size_t n, std::align_val_t a) noexcept {
  in::FreeSized(p, n, Align(a));
}
RSEQMALLOC_EXPORT void operator delete[](void* p, size_t n, std::align_val_t a) noexcept {
  in::FreeSized(p, n, Align(a));
}
