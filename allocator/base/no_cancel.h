// Thread cancellation off for the life of the object.
//
// open, read, write, close and stdio's writes are cancellation points. The
// allocator's exported functions are noexcept, so a deferred cancellation
// acted on inside one (mallinfo reading /proc/self/statm, malloc_stats
// writing its report) unwinds into std::terminate and kills the process,
// with our locks held. With cancellation off around those calls the request
// stays pending and acts at the program's next cancellation point, as
// glibc's own malloc functions behave (they use non-cancelling I/O).
#ifndef RSEQMALLOC_ALLOCATOR_BASE_NO_CANCEL_H_
#define RSEQMALLOC_ALLOCATOR_BASE_NO_CANCEL_H_

#include <pthread.h>

namespace rseqmalloc::internal {

class NoCancel {
 public:
  NoCancel() { pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &old_); }
  ~NoCancel() { pthread_setcancelstate(old_, nullptr); }
  NoCancel(const NoCancel&) = delete;
  NoCancel& operator=(const NoCancel&) = delete;

 private:
  int old_ = PTHREAD_CANCEL_ENABLE;
};

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_BASE_NO_CANCEL_H_
