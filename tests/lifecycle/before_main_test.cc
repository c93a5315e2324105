// before_main: the allocator must serve constructors that run before main
// (the loader and static initialisers call malloc first) and destructors
// that run after it (exit handlers free what globals own).
//
// Results from before main are recorded in globals and checked by the tests;
// failures after main cannot reach GoogleTest, so the destructor turns them
// into a non-zero exit status (_exit(3)), which fails the Bazel test.
#include <stdlib.h>
#include <unistd.h>

#include <cstring>
#include <new>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "tests/util/test_util.h"

namespace rseqmalloc_test {
namespace {

constexpr size_t kKeptSize = 5000;
constexpr uint64_t kSeed = 21;

// Written before main, read by the tests.
const char* early_error = nullptr;
bool early_ran = false;
void* early_kept = nullptr;  // allocated before main, freed by a test
uint64_t early_kept_key = 0;

void Fail(const char* what) {
  if (early_error == nullptr) early_error = what;
}

// Runs every allocation entry point; used before main and checked there.
void ExerciseAllEntryPoints() {
  for (size_t size : {size_t{1}, size_t{24}, size_t{1000}, size_t{70000},
                      size_t{3 << 20}}) {
    void* a = malloc(size);
    if (a == nullptr) return Fail("malloc failed before main");
    std::memset(a, 1, size);
    void* b = calloc(size, 1);
    if (b == nullptr) return Fail("calloc failed before main");
    for (size_t i = 0; i < size; ++i) {
      if (static_cast<char*>(b)[i] != 0) return Fail("calloc not zeroed");
    }
    a = realloc(a, size * 2);
    if (a == nullptr) return Fail("realloc failed before main");
    if (static_cast<unsigned char*>(a)[size - 1] != 1) {
      return Fail("realloc lost contents before main");
    }
    char* c = new char[size];
    std::memset(c, 2, size);
    auto* v = new std::vector<std::string>(10, std::string(size % 100, 'x'));
    void* d = aligned_alloc(4096, size);
    if (d == nullptr) return Fail("aligned_alloc failed before main");
    free(a);
    free(b);
    delete[] c;
    delete v;
    free(d);
  }
}

// The earliest constructor priority a program may use.
__attribute__((constructor(101))) void EarliestConstructor() {
  ExerciseAllEntryPoints();
  early_kept = malloc(kKeptSize);
  if (early_kept == nullptr) return Fail("malloc for the kept block failed");
  early_kept_key = PatternKey(early_kept, kKeptSize, kSeed);
  FillPattern(early_kept, kKeptSize, early_kept_key);
  early_ran = true;
}

// A global whose constructor allocates through a standard container and
// whose destructor frees after main returned.
class GlobalOwner {
 public:
  GlobalOwner() : strings_(200, std::string(300, 'g')) {
    block_ = malloc(123456);
    if (block_ == nullptr) {
      Fail("GlobalOwner's malloc failed");
      return;
    }
    key_ = PatternKey(block_, 123456, kSeed);
    FillPattern(block_, 123456, key_);
  }
  ~GlobalOwner() {
    // After main: the allocator must still work and the block be intact.
    if (block_ != nullptr && !PatternIntact(block_, 123456, key_)) {
      static const char kMsg[] = "before_main: block corrupted at exit\n";
      write(2, kMsg, sizeof(kMsg) - 1);
      _exit(3);
    }
    free(block_);
    void* late = malloc(777);
    if (late == nullptr) {
      static const char kMsg[] = "before_main: malloc failed at exit\n";
      write(2, kMsg, sizeof(kMsg) - 1);
      _exit(3);
    }
    free(late);
    strings_.clear();
    strings_.shrink_to_fit();
  }
  bool Intact() const {
    return block_ != nullptr && PatternIntact(block_, 123456, key_) &&
           strings_.size() == 200 && strings_[199] == std::string(300, 'g');
  }

 private:
  std::vector<std::string> strings_;
  void* block_ = nullptr;
  uint64_t key_ = 0;
};

GlobalOwner global_owner;

void* allocated_in_main = nullptr;
void FreeAtExit() {
  free(allocated_in_main);
  ExerciseAllEntryPoints();
  if (early_error != nullptr) {
    write(2, early_error, std::strlen(early_error));
    _exit(3);
  }
}

TEST(BeforeMain, ConstructorsCouldAllocate) {
  EXPECT_TRUE(early_ran);
  EXPECT_EQ(early_error, nullptr) << early_error;
  EXPECT_TRUE(global_owner.Intact());
}

TEST(BeforeMain, BlockFromBeforeMainIsIntactAndFreeable) {
  ASSERT_NE(early_kept, nullptr);
  EXPECT_TRUE(PatternIntact(early_kept, kKeptSize, early_kept_key));
  early_kept = realloc(early_kept, kKeptSize * 10);
  ASSERT_NE(early_kept, nullptr);
  EXPECT_TRUE(PatternIntact(early_kept, kKeptSize, early_kept_key));
  free(early_kept);
  early_kept = nullptr;
}

TEST(BeforeMain, AtExitHandlerFreesWhatMainAllocated) {
  allocated_in_main = malloc(9999);
  ASSERT_NE(allocated_in_main, nullptr);
  ASSERT_EQ(atexit(FreeAtExit), 0);
}

}  // namespace
}  // namespace rseqmalloc_test
