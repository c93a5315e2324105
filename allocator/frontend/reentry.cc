#include "allocator/frontend/reentry.h"

namespace rseqmalloc::internal {

__thread uint32_t tls_allocator_depth __attribute__((tls_model("initial-exec"))) = 0;

}  // namespace rseqmalloc::internal
