// For the front end's own unit tests, which link the front end without the
// statistics layer above it: the upcalls (upcalls.h) do nothing.
#include "allocator/frontend/upcalls.h"

namespace rseqmalloc::internal {

void StatsAfterStart(const Options&) {}
void StatsOnRequest() {}

}  // namespace rseqmalloc::internal
