// Checks the tables every critical section leaves in the binary: the
// descriptors the kernel reads, the signature before each abort handler,
// and the exit points debuggers use. The linker defines __start_/__stop_
// symbols for these sections.

#include <cstdint>
#include <cstring>
#include <map>

#include "gtest/gtest.h"
#include "rseq/abi.h"
#include "rseq/primitives.h"
#include "rseq/slab.h"

extern "C" {
extern const std::uint64_t __start___rseq_cs_ptr_array[] __attribute__((weak));
extern const std::uint64_t __stop___rseq_cs_ptr_array[] __attribute__((weak));
extern const rseqmalloc::rseq::RseqExitPoint __start___rseq_exit_point_array[]
    __attribute__((weak));
extern const rseqmalloc::rseq::RseqExitPoint __stop___rseq_exit_point_array[]
    __attribute__((weak));
}

namespace rseqmalloc::rseq {
namespace {

// Instantiates every section in this binary (never run with real data).
__attribute__((used, noinline)) void InstantiateAll(bool run) {
  if (!run) return;
  PerCpuSlot slot;
  int id;
  char region[64];
  RseqOps::AddToSlot<IndexMode::kCpuId>(&slot, 1, 1);
  RseqOps::AddToSlot<IndexMode::kMmCid>(&slot, 1, 1);
  RseqOps::CompareAndStore<IndexMode::kCpuId, std::uint32_t>(0, region, 0, 0,
                                                             0, 0);
  RseqOps::CompareAndStore<IndexMode::kMmCid, std::uint64_t>(0, region, 0, 0,
                                                             0, 0);
  static PercpuSlab slab;
  slab.Pop(0, [] { return static_cast<void*>(nullptr); });
  slab.Push(0, region, [] {});
  slab.PopBatch(0, reinterpret_cast<void**>(region), 1, &id);
  slab.PushBatch(0, reinterpret_cast<void* const*>(region), 1, &id);
}

TEST(SectionsTest, DescriptorsAreWellFormed) {
  InstantiateAll(false);
  ASSERT_NE(__start___rseq_cs_ptr_array, nullptr);
  const std::size_t count =
      __stop___rseq_cs_ptr_array - __start___rseq_cs_ptr_array;
  EXPECT_GE(count, 8u);  // the eight sections instantiated above, at least
  for (std::size_t i = 0; i < count; ++i) {
    const auto* cs = reinterpret_cast<const RseqCs*>(
        static_cast<std::uintptr_t>(__start___rseq_cs_ptr_array[i]));
    SCOPED_TRACE(i);
    ASSERT_NE(cs, nullptr);
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(cs) % 32, 0u);
    EXPECT_EQ(cs->version, 0u);
    EXPECT_EQ(cs->flags, 0u);
    EXPECT_NE(cs->start_ip, 0u);
    EXPECT_GT(cs->post_commit_offset, 0u);
    EXPECT_LT(cs->post_commit_offset, 256u);  // a handful of instructions
    // The kernel refuses an abort handler inside the section.
    EXPECT_FALSE(cs->abort_ip >= cs->start_ip &&
                 cs->abort_ip < cs->start_ip + cs->post_commit_offset);
    // ud1 opcode bytes, then the signature the kernel compares.
    const auto* sig = reinterpret_cast<const unsigned char*>(cs->abort_ip) - 7;
    EXPECT_EQ(sig[0], 0x0f);
    EXPECT_EQ(sig[1], 0xb9);
    EXPECT_EQ(sig[2], 0x3d);
    std::uint32_t signature;
    std::memcpy(&signature, sig + 3, sizeof(signature));
    EXPECT_EQ(signature, kSignature);
  }
}

TEST(SectionsTest, ExitPointsBelongToSections) {
  ASSERT_NE(__start___rseq_cs_ptr_array, nullptr);
  ASSERT_NE(__start___rseq_exit_point_array, nullptr);
  std::map<std::uint64_t, std::uint64_t> length_by_start;
  for (const std::uint64_t* p = __start___rseq_cs_ptr_array;
       p != __stop___rseq_cs_ptr_array; ++p) {
    const auto* cs =
        reinterpret_cast<const RseqCs*>(static_cast<std::uintptr_t>(*p));
    length_by_start[cs->start_ip] = cs->post_commit_offset;
  }
  const std::size_t count =
      __stop___rseq_exit_point_array - __start___rseq_exit_point_array;
  EXPECT_GE(count, 8u);
  for (std::size_t i = 0; i < count; ++i) {
    const RseqExitPoint& exit = __start___rseq_exit_point_array[i];
    SCOPED_TRACE(i);
    auto it = length_by_start.find(exit.start_ip);
    ASSERT_NE(it, length_by_start.end()) << "exit of an unknown section";
    // An exit leaves its section: at its end, or out of line.
    EXPECT_FALSE(exit.exit_ip >= exit.start_ip &&
                 exit.exit_ip < exit.start_ip + it->second);
  }
}

}  // namespace
}  // namespace rseqmalloc::rseq
