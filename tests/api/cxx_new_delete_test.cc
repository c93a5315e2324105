// Every replaceable operator new / delete form, over-aligned new, failure
// (bad_alloc, nullptr), and the new-handler protocol.
#include <sys/resource.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/api/api_declarations.h"
#include "tests/util/test_util.h"

namespace rseqmalloc_test {
namespace {

using std::align_val_t;
constexpr size_t kMiB = size_t{1} << 20;

struct NewForm {
  const char* name;
  bool array;
  bool aligned;
  bool nothrow;
  void* (*allocate)(size_t size, align_val_t align);
};

struct DeleteForm {
  const char* name;
  bool array;
  bool aligned;
  void (*release)(void* p, size_t size, align_val_t align);
};

const NewForm kNewForms[] = {
    {"new", false, false, false,
     [](size_t n, align_val_t) { return ::operator new(n); }},
    {"new nothrow", false, false, true,
     [](size_t n, align_val_t) { return ::operator new(n, std::nothrow); }},
    {"new[]", true, false, false,
     [](size_t n, align_val_t) { return ::operator new[](n); }},
    {"new[] nothrow", true, false, true,
     [](size_t n, align_val_t) { return ::operator new[](n, std::nothrow); }},
    {"new aligned", false, true, false,
     [](size_t n, align_val_t a) { return ::operator new(n, a); }},
    {"new aligned nothrow", false, true, true,
     [](size_t n, align_val_t a) {
       return ::operator new(n, a, std::nothrow);
     }},
    {"new[] aligned", true, true, false,
     [](size_t n, align_val_t a) { return ::operator new[](n, a); }},
    {"new[] aligned nothrow", true, true, true,
     [](size_t n, align_val_t a) {
       return ::operator new[](n, a, std::nothrow);
     }},
};

const DeleteForm kDeleteForms[] = {
    {"delete", false, false,
     [](void* p, size_t, align_val_t) { ::operator delete(p); }},
    {"delete sized", false, false,
     [](void* p, size_t n, align_val_t) { ::operator delete(p, n); }},
    {"delete nothrow", false, false,
     [](void* p, size_t, align_val_t) { ::operator delete(p, std::nothrow); }},
    {"delete[]", true, false,
     [](void* p, size_t, align_val_t) { ::operator delete[](p); }},
    {"delete[] sized", true, false,
     [](void* p, size_t n, align_val_t) { ::operator delete[](p, n); }},
    {"delete[] nothrow", true, false,
     [](void* p, size_t, align_val_t) {
       ::operator delete[](p, std::nothrow);
     }},
    {"delete aligned", false, true,
     [](void* p, size_t, align_val_t a) { ::operator delete(p, a); }},
    {"delete sized aligned", false, true,
     [](void* p, size_t n, align_val_t a) { ::operator delete(p, n, a); }},
    {"delete aligned nothrow", false, true,
     [](void* p, size_t, align_val_t a) {
       ::operator delete(p, a, std::nothrow);
     }},
    {"delete[] aligned", true, true,
     [](void* p, size_t, align_val_t a) { ::operator delete[](p, a); }},
    {"delete[] sized aligned", true, true,
     [](void* p, size_t n, align_val_t a) { ::operator delete[](p, n, a); }},
    {"delete[] aligned nothrow", true, true,
     [](void* p, size_t, align_val_t a) {
       ::operator delete[](p, a, std::nothrow);
     }},
};

TEST(OperatorNew, EveryFormPairsWithEveryMatchingDelete) {
  std::vector<size_t> sizes = SizeSpread(2 * kMiB);
  sizes.push_back(0);
  for (const NewForm& nf : kNewForms) {
    for (const DeleteForm& df : kDeleteForms) {
      if (nf.array != df.array || nf.aligned != df.aligned) continue;
      for (size_t size : sizes) {
        size_t align = nf.aligned ? 64 : alignof(std::max_align_t);
        void* p = nf.allocate(size, align_val_t{align});
        ASSERT_NE(p, nullptr) << nf.name << " " << size;
        RSEQMALLOC_EXPECT_OURS(p);
        EXPECT_TRUE(IsAligned(p, align)) << nf.name << " " << size;
        uint64_t key = PatternKey(p, size, 9);
        FillPattern(p, size, key);
        ASSERT_TRUE(PatternIntact(p, size, key));
        df.release(p, size, align_val_t{align});
      }
    }
  }
}

TEST(OperatorNew, AlignedFormsHonourAlignmentUpTo64KiB) {
  for (const NewForm& nf : kNewForms) {
    if (!nf.aligned) continue;
    for (size_t align = 16; align <= 64 * 1024; align *= 2) {
      for (size_t size : {size_t{1}, align - 1, align, align + 1, 5 * align}) {
        void* p = nf.allocate(size, align_val_t{align});
        ASSERT_NE(p, nullptr);
        EXPECT_TRUE(IsAligned(p, align))
            << nf.name << " align " << align << " size " << size;
        std::memset(p, 0x77, size);
        if (nf.array) {
          ::operator delete[](p, size, align_val_t{align});
        } else {
          ::operator delete(p, size, align_val_t{align});
        }
      }
    }
  }
}

struct alignas(4096) PageAligned {
  char bytes[100];
};
struct alignas(128) LineAligned {
  int value = 7;
};

TEST(OperatorNew, NewExpressionsOfOverAlignedTypes) {
  for (int i = 0; i < 100; ++i) {
    auto* page = new PageAligned;
    auto* lines = new LineAligned[i + 1];
    EXPECT_TRUE(IsAligned(page, 4096));
    EXPECT_TRUE(IsAligned(lines, 128));
    EXPECT_EQ(lines[i].value, 7);
    Escape(page);
    delete page;
    delete[] lines;
  }
}

// libstdc++ 12's aligned operator new rounds the size up to a multiple of
// the alignment before calling aligned_alloc, and SIZE_MAX wraps to 0: it
// "succeeds". That is a libstdc++ bug, not a semantic to copy, so only the
// glibc variant (which runs libstdc++'s operator new) skips that case.
bool LibstdcxxWrapsAlignedSize(const NewForm& nf, size_t size) {
  return kGlibcVariant && nf.aligned && size > SIZE_MAX - 63;
}

TEST(OperatorNew, HugeSizeThrowsBadAlloc) {
  for (size_t size : {SIZE_MAX, static_cast<size_t>(PTRDIFF_MAX) + 1}) {
    for (const NewForm& nf : kNewForms) {
      if (LibstdcxxWrapsAlignedSize(nf, size)) continue;
      if (nf.nothrow) {
        EXPECT_EQ(nf.allocate(Opaque(size), align_val_t{64}), nullptr)
            << nf.name;
      } else {
        EXPECT_THROW(nf.allocate(Opaque(size), align_val_t{64}),
                     std::bad_alloc)
            << nf.name;
      }
    }
  }
  EXPECT_THROW(Escape(new char[Opaque(SIZE_MAX / 2)]), std::bad_alloc);
}

// The new-handler loop: operator new calls the handler while allocation
// fails; once no handler is installed it throws (or nothrow returns null).
int handler_calls = 0;
void UninstallOnThirdCall() {
  if (++handler_calls == 3) std::set_new_handler(nullptr);
}

TEST(NewHandler, CalledUntilItUninstallsItself) {
  const size_t huge = static_cast<size_t>(PTRDIFF_MAX) + 1;
  for (const NewForm& nf : kNewForms) {
    handler_calls = 0;
    std::set_new_handler(UninstallOnThirdCall);
    if (nf.nothrow) {
      EXPECT_EQ(nf.allocate(Opaque(huge), align_val_t{64}), nullptr);
    } else {
      EXPECT_THROW(nf.allocate(Opaque(huge), align_val_t{64}),
                   std::bad_alloc);
    }
    EXPECT_EQ(handler_calls, 3) << nf.name;
    std::set_new_handler(nullptr);
  }
}

TEST(NewHandler, NotCalledWhenAllocationSucceeds) {
  handler_calls = 0;
  std::set_new_handler(UninstallOnThirdCall);
  for (const NewForm& nf : kNewForms) {
    void* p = nf.allocate(100, align_val_t{64});
    ASSERT_NE(p, nullptr);
    for (const DeleteForm& df : kDeleteForms) {
      if (nf.array == df.array && nf.aligned == df.aligned) {
        df.release(p, 100, align_val_t{64});
        break;
      }
    }
  }
  EXPECT_EQ(handler_calls, 0);
  std::set_new_handler(nullptr);
}

// A handler that frees a reserve lets a failing allocation succeed. Failure
// is made real with RLIMIT_AS in a child process: reserve blocks are taken
// until the address-space limit stops the allocator, then one more block is
// asked for through operator new with a handler that frees reserves.
constexpr size_t kReserveBlock = 64 * kMiB;
constexpr int kMaxReserves = 64;
void* reserves[kMaxReserves];
int reserve_count = 0;
int reserve_handler_calls = 0;

void FreeOneReserve() {
  ++reserve_handler_calls;
  if (reserve_count == 0) {
    std::set_new_handler(nullptr);
    return;
  }
  std::free(reserves[--reserve_count]);
}

size_t VirtualSizeBytes() {
  FILE* f = fopen("/proc/self/statm", "r");
  unsigned long pages = 0;
  if (f != nullptr) {
    if (fscanf(f, "%lu", &pages) != 1) pages = 0;
    fclose(f);
  }
  return pages * static_cast<size_t>(sysconf(_SC_PAGESIZE));
}

[[noreturn]] void ReserveHandlerChild() {
  rlimit limit;
  getrlimit(RLIMIT_AS, &limit);
  limit.rlim_cur = VirtualSizeBytes() + 512 * kMiB;
  if (setrlimit(RLIMIT_AS, &limit) != 0) _exit(10);
  while (reserve_count < kMaxReserves) {
    void* p = std::malloc(kReserveBlock);
    if (p == nullptr) break;
    reserves[reserve_count++] = p;
  }
  if (reserve_count == kMaxReserves) _exit(11);  // the limit never bit
  if (reserve_count == 0) _exit(12);
  int reserves_taken = reserve_count;
  std::set_new_handler(FreeOneReserve);
  void* p = nullptr;
  try {
    p = ::operator new(kReserveBlock);
  } catch (const std::bad_alloc&) {
    _exit(13);
  }
  if (reserve_handler_calls < 1) _exit(14);
  if (reserve_handler_calls > reserves_taken) _exit(15);
  std::memset(p, 1, 4096);
  ::operator delete(p);
  _exit(0);
}

TEST(NewHandler, HandlerFreeingAReserveLetsAllocationSucceed) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  // Exit codes: 11 limit never reached, 12 nothing could be reserved,
  // 13 bad_alloc despite freed reserves, 14 handler never called,
  // 15 more handler calls than reserves.
  EXPECT_EXIT(ReserveHandlerChild(), testing::ExitedWithCode(0), "");
}

}  // namespace
}  // namespace rseqmalloc_test
