// The kernel's restartable-sequences ABI (include/uapi/linux/rseq.h), restated
// with fixed offsets so that the assembly in x86_64.h can hard-code them.
//
// Rule we keep (see docs/rseq.md): user space reads cpu_id / node_id / mm_cid
// and writes only rseq_cs. cpu_id_start belongs to the kernel; storing our own
// data there is what breaks tcmalloc under glibc 2.35+ and Linux 6.19+.

#ifndef RSEQ_ABI_H_
#define RSEQ_ABI_H_

#include <cstddef>
#include <cstdint>

namespace rseqmalloc::rseq {

// Value the kernel checks in the 4 bytes just before every abort handler.
inline constexpr std::uint32_t kSignature = 0x53053053;

// cpu_id values that are not CPU numbers. The kernel never stores a negative
// id, so "negative" means "this area is not registered for this thread".
inline constexpr std::int32_t kCpuIdUninitialized = -1;
inline constexpr std::int32_t kCpuIdRegistrationFailed = -2;

// sys_rseq flags.
inline constexpr int kRseqFlagUnregister = 1;

// struct rseq_cs: one per critical section, read by the kernel when it
// preempts, migrates or signals a thread whose rseq_cs field points here.
struct alignas(32) RseqCs {
  std::uint32_t version;             // always 0
  std::uint32_t flags;               // 0: restart on preempt, signal, migrate
  std::uint64_t start_ip;            // first instruction of the section
  std::uint64_t post_commit_offset;  // length: [start_ip, start_ip + this)
  std::uint64_t abort_ip;            // where the kernel sends us on restart
};

// struct rseq: the per-thread area registered with the kernel. glibc 2.35+
// embeds one in every thread's TCB; otherwise we register our own.
struct alignas(32) Rseq {
  std::uint32_t cpu_id_start;  // kernel-owned; do not write
  std::int32_t cpu_id;         // current CPU, or < 0 when unregistered
  std::uint64_t rseq_cs;       // address of the active RseqCs, or 0
  std::uint32_t flags;         // deprecated per-thread flags; keep 0
  std::uint32_t node_id;       // NUMA node (feature size >= 24)
  std::uint32_t mm_cid;        // concurrency id (feature size >= 28)
};

// The original ABI size; the kernel accepts it with 32-byte alignment and
// still updates node_id / mm_cid inside it on kernels that know them.
inline constexpr std::uint32_t kRseqAreaSize = 32;

// Feature sizes reported through getauxval(AT_RSEQ_FEATURE_SIZE).
inline constexpr unsigned long kFeatureSizeNodeId = 24;  // end of node_id
inline constexpr unsigned long kFeatureSizeMmCid = 28;   // end of mm_cid

// Offsets the assembly uses; a change here must fail the build.
inline constexpr int kCpuIdOffset = 4;
inline constexpr int kRseqCsOffset = 8;
inline constexpr int kNodeIdOffset = 20;
inline constexpr int kMmCidOffset = 24;

static_assert(offsetof(Rseq, cpu_id_start) == 0);
static_assert(offsetof(Rseq, cpu_id) == kCpuIdOffset);
static_assert(offsetof(Rseq, rseq_cs) == kRseqCsOffset);
static_assert(offsetof(Rseq, flags) == 16);
static_assert(offsetof(Rseq, node_id) == kNodeIdOffset);
static_assert(offsetof(Rseq, mm_cid) == kMmCidOffset);
static_assert(offsetof(Rseq, mm_cid) + sizeof(std::uint32_t) ==
              kFeatureSizeMmCid);
static_assert(sizeof(Rseq) == kRseqAreaSize && alignof(Rseq) == 32);

static_assert(offsetof(RseqCs, version) == 0);
static_assert(offsetof(RseqCs, flags) == 4);
static_assert(offsetof(RseqCs, start_ip) == 8);
static_assert(offsetof(RseqCs, post_commit_offset) == 16);
static_assert(offsetof(RseqCs, abort_ip) == 24);
static_assert(sizeof(RseqCs) == 32 && alignof(RseqCs) == 32);

// One entry of the __rseq_exit_point_array section: a branch that leaves the
// critical section starting at start_ip early. Debuggers put breakpoints at
// every exit_ip (and at start_ip + post_commit_offset) to step over a section.
struct RseqExitPoint {
  std::uint64_t start_ip;
  std::uint64_t exit_ip;
};
static_assert(sizeof(RseqExitPoint) == 16);

}  // namespace rseqmalloc::rseq

#endif  // RSEQ_ABI_H_
