// The very first allocation can come from a .preinit_array function, before
// libc has set `environ` (UBSan's runtime does this through dlsym/dlerror).
// The RSEQMALLOC_* settings must still apply: the mode in use is the one the
// environment asks for in every variant (found by the fuzzing work: options
// used to be fixed to the defaults then, silently).
#include <stdlib.h>

#include <string>

#include "allocator/api/rseqmalloc.h"
#include "gtest/gtest.h"
#include "tests/util/test_util.h"

namespace {

bool g_early_allocation_done = false;

void AllocateBeforeLibcIsReady(int, char**, char**) {
  void* p = malloc(1);
  g_early_allocation_done = p != nullptr;
  free(p);
}

__attribute__((section(".preinit_array"), used)) void (*g_preinit)(int, char**, char**) =
    AllocateBeforeLibcIsReady;

TEST(PreinitAllocation, SettingsStillApply) {
  ASSERT_TRUE(g_early_allocation_done);
  EXPECT_EQ(std::string(rseqmalloc_mode()), rseqmalloc_test::ExpectedCacheMode());
}

}  // namespace
