// x86-64 rseq critical sections for the contracts in pseudocode.h: per-CPU
// add and compare-and-store. Users call RseqOps (primitives.h); these raw
// forms return kAbortedCode on a restart. The slab's pop and push are in
// slab_sections.h.
//
// Every section has the same skeleton (labels are GNU as local labels):
//   3:  RseqCs descriptor in section __rseq_cs (32-byte aligned), plus an
//       entry in __rseq_cs_ptr_array and one in __rseq_exit_point_array per
//       early exit, so debuggers and tools can find every section;
//       area->rseq_cs = &3b       (arm; the last instruction before start)
//   1:  start: read the id from the area, bail out if unregistered, compute,
//       then ONE store that publishes the result (the commit);
//   2:  post_commit: first instruction outside the section;
//   4:  abort handler in section __rseq_failure, preceded by the 4-byte
//       signature (as the tail of a ud1 instruction, so that a stray jump
//       into it traps), sets the id register to kAbortedCode, jumps to 2;
//   5/6: early exits, also in __rseq_failure, jump back to 2.
// Inside [1, 2) there are no calls, no stack writes and no stores other
// than the commit (the slab push's slot store lands above the stack top,
// where nobody looks until the commit). The kernel restarts the section at
// label 4 when the thread is preempted, migrated or signalled inside it;
// it clears rseq_cs lazily, so nothing needs to disarm it.
//
// Every pushed section carries the "?" flag: it joins the COMDAT group of
// the function being emitted. The primitives are inline templates; without
// it, a copy discarded by the linker would leave its descriptor behind,
// pointing into a discarded section (a link error at -O0).
//
// Each body is a macro over the id loader (cpu_id or mm_cid) and the delay
// injection (tests only); RSEQMALLOC_RSEQ_DISPATCH instantiates the four
// combinations. Comments give each line's C meaning.

#ifndef RSEQ_X86_64_H_
#define RSEQ_X86_64_H_

#include <cstddef>
#include <cstdint>

#include "rseq/abi.h"
#include "rseq/ids.h"
#include "rseq/pseudocode.h"
#include "rseq/restarts.h"

// Descriptor, pointer-array entry and exit-point entries (EXITS: ".quad" pairs
// of start and exit label).
#define RSEQMALLOC_RSEQ_TABLES(EXITS)                                        \
  ".pushsection __rseq_cs, \"aw?\"\n\t"     /* static RseqCs cs = {       */ \
  ".balign 32\n\t"                         /*   (ABI: 32-byte aligned)   */ \
  "3:\n\t"                                                                  \
  ".long 0, 0\n\t"                         /*   .version = 0, .flags = 0 */ \
  ".quad 1f, (2f - 1f), 4f\n\t"            /*   start, length, abort };  */ \
  ".popsection\n\t"                                                         \
  ".pushsection __rseq_cs_ptr_array, \"aw?\"\n\t"                            \
  ".quad 3b\n\t"                           /* cs_ptr_array += &cs        */ \
  ".popsection\n\t"                                                         \
  ".pushsection __rseq_exit_point_array, \"aw?\"\n\t"                        \
  EXITS                                    /* exit_points += {start, exit} */ \
  ".popsection\n\t"

// area->rseq_cs = &cs; start:  (SCRATCH is clobbered)
#define RSEQMALLOC_RSEQ_ARM(SCRATCH)                                         \
  "leaq 3b(%%rip), %q[" SCRATCH "]\n\t"       /* scratch = &cs           */ \
  "movq %q[" SCRATCH "], %%fs:8(%[area])\n\t" /* area->rseq_cs = scratch */ \
  "1:\n\t"                                    /* start:                  */

// abort: (signature first) ID = kAbortedCode; goto post_commit;
#define RSEQMALLOC_RSEQ_ABORT(ID)                                            \
  ".pushsection __rseq_failure, \"ax?\"\n\t"                                 \
  ".byte 0x0f, 0xb9, 0x3d\n\t"         /* ud1 opcode: traps if executed  */ \
  ".long 0x53053053\n\t"               /* kSignature, at abort_ip - 4    */ \
  "4:\n\t"                             /* abort:                         */ \
  "movl %[aborted], %k[" ID "]\n\t"    /* id = kAbortedCode              */ \
  "jmp 2b\n\t"                         /* goto post_commit               */ \
  ".popsection\n\t"

// ID = area->cpu_id; if (ID < 0) goto EXIT;
#define RSEQMALLOC_RSEQ_LOAD_CPU_ID(ID, EXIT)                                \
  "movl %%fs:4(%[area]), %k[" ID "]\n\t"  /* id = area->cpu_id           */ \
  "testl %k[" ID "], %k[" ID "]\n\t"      /* if (id < 0)                 */ \
  "js " EXIT "\n\t"                       /*   goto exit (unregistered)  */

// Same registration test on cpu_id, then ID = area->mm_cid. mm_cid of an
// unregistered glibc area is stale, hence the cpu_id test.
#define RSEQMALLOC_RSEQ_LOAD_MM_CID(ID, EXIT)                                \
  RSEQMALLOC_RSEQ_LOAD_CPU_ID(ID, EXIT)   /* registered?                 */ \
  "movl %%fs:24(%[area]), %k[" ID "]\n\t" /* id = area->mm_cid           */

#define RSEQMALLOC_RSEQ_NO_DELAY(SCRATCH) ""

// for (n = delay_spins; n > 0; --n) pause;  (forces restarts in tests)
#define RSEQMALLOC_RSEQ_DELAY(SCRATCH)                                       \
  "movl %[spins], %k[" SCRATCH "]\n\t"  /* n = delay_spins               */ \
  "7:\n\t"                                                                  \
  "pause\n\t"                           /* cpu_relax()                   */ \
  "subl $1, %k[" SCRATCH "]\n\t"        /* --n                           */ \
  "jg 7b\n\t"                           /* while (n > 0)                 */

// Instantiates BODY for kMode / kDelay (template parameters in scope).
#define RSEQMALLOC_RSEQ_DISPATCH(BODY, OPERANDS)                             \
  if constexpr (kMode == ::rseqmalloc::rseq::IndexMode::kCpuId && !kDelay) {             \
    asm volatile(BODY(RSEQMALLOC_RSEQ_LOAD_CPU_ID, RSEQMALLOC_RSEQ_NO_DELAY) \
                     OPERANDS);                                              \
  } else if constexpr (kMode == ::rseqmalloc::rseq::IndexMode::kCpuId) {                 \
    asm volatile(BODY(RSEQMALLOC_RSEQ_LOAD_CPU_ID, RSEQMALLOC_RSEQ_DELAY)    \
                     OPERANDS);                                              \
  } else if constexpr (!kDelay) {                                            \
    asm volatile(BODY(RSEQMALLOC_RSEQ_LOAD_MM_CID, RSEQMALLOC_RSEQ_NO_DELAY) \
                     OPERANDS);                                              \
  } else {                                                                   \
    asm volatile(BODY(RSEQMALLOC_RSEQ_LOAD_MM_CID, RSEQMALLOC_RSEQ_DELAY)    \
                     OPERANDS);                                              \
  }

// Operands every section uses.
#define RSEQMALLOC_RSEQ_COMMON_INPUTS                                        \
  [area] "r"(::rseqmalloc::rseq::internal::AreaOffset()),                                \
      [aborted] "i"(::rseqmalloc::rseq::internal::kAbortedCode),                         \
      [spins] "m"(rseqmalloc_rseq_delay_spins)

namespace rseqmalloc::rseq {
namespace internal {
namespace x86 {

// ---------------------------------------------------------------------------
// Per-CPU add.
//   arm;
// start:
//   id = area->cpu_id (or mm_cid);
//   if (id < 0 || (unsigned)id >= num_slots) goto post_commit;
//   slots[id].value += delta;              // commit: one RMW instruction
// post_commit:
//   return id;                             // caller range-checks it
#define RSEQMALLOC_RSEQ_ADD_BODY(LOAD_ID, DELAY)                             \
  RSEQMALLOC_RSEQ_TABLES(".quad 1f, 2f\n\t")                                \
  RSEQMALLOC_RSEQ_ARM("tmp")                                                \
  LOAD_ID("id", "2f")                                                       \
  "cmpl %[limit], %k[id]\n\t"             /* if ((unsigned)id >= limit)  */ \
  "jae 2f\n\t"                            /*   goto post_commit          */ \
  DELAY("tmp")                                                              \
  "movl %k[id], %k[tmp]\n\t"              /* tmp = (uint64_t)id          */ \
  "shlq $6, %q[tmp]\n\t"                  /* tmp *= sizeof(PerCpuSlot)   */ \
  "addq %[delta], (%[slots], %q[tmp])\n\t" /* slots[id].value += delta   */ \
  "2:\n\t"                                /* post_commit:                */ \
  RSEQMALLOC_RSEQ_ABORT("id")

template <IndexMode kMode, bool kDelay>
__attribute__((always_inline)) inline int AddToSlot(PerCpuSlot* slots,
                                                    int num_slots,
                                                    std::int64_t delta) {
  int id;
  std::uint64_t tmp;
#define RSEQMALLOC_RSEQ_ADD_OPERANDS                                         \
  : [id] "=&r"(id), [tmp] "=&r"(tmp)                                         \
  : RSEQMALLOC_RSEQ_COMMON_INPUTS, [slots] "r"(slots), [delta] "er"(delta),  \
    [limit] "ir"(num_slots)                                                  \
  : "cc", "memory"
  RSEQMALLOC_RSEQ_DISPATCH(RSEQMALLOC_RSEQ_ADD_BODY,
                           RSEQMALLOC_RSEQ_ADD_OPERANDS)
#undef RSEQMALLOC_RSEQ_ADD_OPERANDS
  return id;
}

// ---------------------------------------------------------------------------
// Per-CPU compare-and-store (32- or 64-bit word; the register operands'
// width picks cmpl/movl or cmpq/movq). `word` is computed by the caller from
// expected_id, which is why the id is compared rather than used to index.
//   status = kStored; arm;
// start:
//   id = area->cpu_id (or mm_cid);
//   if (id < 0) goto wrong_id;
//   if (id != expected_id) goto wrong_id;
//   if (*word != expected) goto mismatch;
//   *word = desired;                       // commit
// post_commit:
//   return status;
// wrong_id: status = kWrongId;  goto post_commit;
// mismatch: status = kMismatch; goto post_commit;
#define RSEQMALLOC_RSEQ_CAS_BODY(LOAD_ID, DELAY)                             \
  RSEQMALLOC_RSEQ_TABLES(".quad 1f, 5f\n\t.quad 1f, 6f\n\t")                \
  "movl %[stored], %k[status]\n\t"        /* status = kStored            */ \
  RSEQMALLOC_RSEQ_ARM("tmp")                                                \
  LOAD_ID("tmp", "5f")                                                      \
  "cmpl %[expected_id], %k[tmp]\n\t"      /* if (id != expected_id)      */ \
  "jne 5f\n\t"                            /*   goto wrong_id             */ \
  DELAY("tmp")                                                              \
  "cmp %[expected], (%[word])\n\t"        /* if (*word != expected)      */ \
  "jne 6f\n\t"                            /*   goto mismatch             */ \
  "mov %[desired], (%[word])\n\t"         /* *word = desired: commit     */ \
  "2:\n\t"                                /* post_commit:                */ \
  ".pushsection __rseq_failure, \"ax?\"\n\t"                                 \
  "5:\n\t"                                /* wrong_id:                   */ \
  "movl %[wrong_id], %k[status]\n\t"      /* status = kWrongId           */ \
  "jmp 2b\n\t"                            /* goto post_commit            */ \
  "6:\n\t"                                /* mismatch:                   */ \
  "movl %[mismatch], %k[status]\n\t"      /* status = kMismatch          */ \
  "jmp 2b\n\t"                            /* goto post_commit            */ \
  ".popsection\n\t"                                                         \
  RSEQMALLOC_RSEQ_ABORT("status")

template <IndexMode kMode, bool kDelay, typename T>
__attribute__((always_inline)) inline int CompareAndStore(int expected_id,
                                                          T* word, T expected,
                                                          T desired) {
  static_assert(sizeof(T) == 4 || sizeof(T) == 8);
  int status;
  std::uint64_t tmp;
#define RSEQMALLOC_RSEQ_CAS_OPERANDS                                         \
  : [status] "=&r"(status), [tmp] "=&r"(tmp)                                 \
  : RSEQMALLOC_RSEQ_COMMON_INPUTS, [word] "r"(word),                         \
    [expected_id] "r"(expected_id), [expected] "r"(expected),                \
    [desired] "r"(desired),                                                  \
    [stored] "i"(static_cast<int>(CasResult::kStored)),                      \
    [wrong_id] "i"(static_cast<int>(CasResult::kWrongId)),                   \
    [mismatch] "i"(static_cast<int>(CasResult::kMismatch))                   \
  : "cc", "memory"
  RSEQMALLOC_RSEQ_DISPATCH(RSEQMALLOC_RSEQ_CAS_BODY,
                           RSEQMALLOC_RSEQ_CAS_OPERANDS)
#undef RSEQMALLOC_RSEQ_CAS_OPERANDS
  return status;
}

}  // namespace x86
}  // namespace internal
}  // namespace rseqmalloc::rseq

#endif  // RSEQ_X86_64_H_
