#include "allocator/frontend/new_delete.h"

#include <new>

namespace rseqmalloc::internal {
namespace {

constexpr size_t kDefaultNewAlign = __STDCPP_DEFAULT_NEW_ALIGNMENT__;

void* TryAllocate(size_t size, size_t align) {
  return align <= kDefaultNewAlign ? Allocate(size) : AllocateAligned(size, align);
}

}  // namespace

void* NewSlow(size_t size, size_t align) {
  for (;;) {
    if (void* p = TryAllocate(size, align)) return p;
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
}

void* NewSlowNothrow(size_t size, size_t align) noexcept {
  for (;;) {
    if (void* p = TryAllocate(size, align)) return p;
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) return nullptr;
    try {
      handler();
    } catch (...) {
      return nullptr;
    }
  }
}

}  // namespace rseqmalloc::internal
