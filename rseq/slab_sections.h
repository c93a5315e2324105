// The two critical sections of a per-CPU slab (slab.h), as x86-64 `asm goto`:
// a hit falls through with nothing left to test, a miss jumps straight to the
// caller's label. Each has a portable reference with the same contract
// (SlabReference, below), which tests run as the oracle.
//
// Contract (both implementations). `where` says which rseq area to read and
// where the regions are (SlabWhere, relative to the area nobody registers,
// whose thread-pointer offset is `never`: one GOT load, or a constant); `cls`
// selects an 8-byte header {uint32 current, uint32 end} at region + 8 * cls;
// slot s is the void* at region + 8 * s. The slot just below each class's first slot always holds
// 0 (the begin marker), and so do the 8 bytes below every region, so a pop
// needs no `begin`: it stops at the 0.
//
//   void* Pop(where, cls) -> item, or goto miss:
//     if (area->cpu_id < 0) goto miss;        // unregistered / not started
//     id = *id_field;                          // cpu_id or mm_cid
//     region = base + (id << kSlabShift);
//     current = header(region, cls).current;
//     item = slot(region, current - 1);        // 0 below begin
//     if (item == 0) goto miss;                // empty, or header 0
//     header(region, cls).current = current - 1;   // commit: 32-bit store
//     return item;
//
//   void Push(where, cls, item) -> done, or goto full:
//     if (area->cpu_id < 0) goto full;
//     id = *id_field;  region = base + (id << kSlabShift);
//     {current, end} = header(region, cls);
//     if (current >= end) goto full;           // at capacity, or header 0
//     slot(region, current) = item;            // above the top: invisible
//     header(region, cls).current = current + 1;   // commit: 32-bit store
//
// An abort (the kernel preempted, migrated or signalled the thread inside
// the section) is counted (restarts.h) by the abort handler itself and then
// takes the miss path, which retries with a full retry loop. A section
// never commits after an abort, so an aborted pop is never a hit and an
// aborted push never loses its item.
//
// Header 0 means "no capacity on this id" (never used, drained, or stopped
// by a capacity change): both sections fail without writing. Only the commit
// writes `current`; capacity (`end`) is changed by slab.cc alone.
#ifndef RSEQ_SLAB_SECTIONS_H_
#define RSEQ_SLAB_SECTIONS_H_

#include <cstddef>
#include <cstdint>

#include "rseq/abi.h"
#include "rseq/ids.h"
#include "rseq/pseudocode.h"
#include "rseq/reference.h"
#include "rseq/restarts.h"

namespace rseqmalloc::rseq {

// 4 MiB per id: 524,288 slots (the last one is the region's closing 0),
// room for the small classes' long ranges (docs/design.md, "Tiny classes
// keep a whole batch"); address space only, touched where used. The
// sections' asm spells the shift through the macro, so the two cannot part.
#define RSEQMALLOC_SLAB_SHIFT 22
#define RSEQMALLOC_SLAB_STR2(x) #x
#define RSEQMALLOC_SLAB_STR(x) RSEQMALLOC_SLAB_STR2(x)
inline constexpr unsigned kSlabShift = RSEQMALLOC_SLAB_SHIFT;
// The asm below addresses a header as (region, cls, 8), `end` at +4, and
// loads and commits `current` as 32 bits: the layout of pseudocode.h.
static_assert(internal::kHeaderBytes == 8, "the sections' asm spells the header as 8 bytes");

// Where one slab's sections look: the rseq area they arm and check and the
// id field they index with (cpu_id or mm_cid), as offsets from the
// never-registered area (ids.h), and the regions.
struct SlabWhere {
  std::ptrdiff_t area_delta;
  std::ptrdiff_t id_delta;
  char* base;
};

// Descriptor, pointer-array entry and exit points of one slab section. The
// "?" flag puts each in the COMDAT group of the inline function being
// emitted (see x86_64.h).
#define RSEQMALLOC_SLAB_TABLES                                               \
  ".pushsection __rseq_cs, \"aw?\"\n\t"                                      \
  ".balign 32\n\t"                                                          \
  "3:\n\t"                                                                  \
  ".long 0, 0\n\t"                               /* version, flags      */ \
  ".quad 1f, (2f - 1f), 4f\n\t"                  /* start, length, abort */ \
  ".popsection\n\t"                                                         \
  ".pushsection __rseq_cs_ptr_array, \"aw?\"\n\t"                            \
  ".quad 3b\n\t"                                                            \
  ".popsection\n\t"                                                         \
  ".pushsection __rseq_exit_point_array, \"aw?\"\n\t"                        \
  ".quad 1f, %l[miss]\n\t"                       /* early exit: miss     */ \
  ".popsection\n\t"

// area->rseq_cs = &cs; start:   (area = never + area_delta: both registers
// of the address, so no instruction adds them)
#define RSEQMALLOC_SLAB_ARM                                                  \
  "leaq 3b(%%rip), %q[current]\n\t"              /* current = &cs        */ \
  "movq %q[current], %%fs:8(%[never], %[area_delta])\n\t" /* rseq_cs = &cs */ \
  "1:\n\t"

// if (area->cpu_id < 0) goto miss; region = base + (*id_field << shift);
#define RSEQMALLOC_SLAB_REGION                                               \
  "cmpl $0, %%fs:4(%[never], %[area_delta])\n\t" /* if (cpu_id < 0)      */ \
  "js %l[miss]\n\t"                              /*   goto miss          */ \
  "movl %%fs:(%[never], %[id_delta]), %k[region]\n\t" /* region = id     */ \
  "shlq $" RSEQMALLOC_SLAB_STR(RSEQMALLOC_SLAB_SHIFT) ", %q[region]\n\t"  /* region <<= shift */ \
  "addq %[base], %q[region]\n\t"                 /* region += base       */

// abort: (signature first) count it; goto miss;   (no call: the fast path
// keeps no register alive for one)
#define RSEQMALLOC_SLAB_ABORT                                                \
  ".pushsection __rseq_failure, \"ax?\"\n\t"                                 \
  ".byte 0x0f, 0xb9, 0x3d\n\t"                   /* ud1: traps if run    */ \
  ".long 0x53053053\n\t"                         /* kSignature           */ \
  "4:\n\t"                                                                  \
  "movq rseqmalloc_rseq_thread_restarts@gottpoff(%%rip), %q[region]\n\t"    \
  "incq %%fs:(%q[region])\n\t"                   /* ++thread restarts    */ \
  "lock incq rseqmalloc_rseq_restarts(%%rip)\n\t" /* ++restarts          */ \
  "jmp %l[miss]\n\t"                                                        \
  ".popsection\n\t"

// for (n = delay_spins; n > 0; --n) pause;   (tests: forces aborts)
#define RSEQMALLOC_SLAB_DELAY(REG)                                           \
  "movl %[spins], %k[" REG "]\n\t"                                          \
  "8:\n\t"                                                                  \
  "pause\n\t"                                                               \
  "subl $1, %k[" REG "]\n\t"                                                \
  "jg 8b\n\t"

// The batch sections: plain `asm` (their result is a count), one exit
// label 5 that returns 0, and an abort handler that returns kAbortedCode.
#define RSEQMALLOC_SLAB_BATCH_TABLES                                         \
  ".pushsection __rseq_cs, \"aw?\"\n\t"                                      \
  ".balign 32\n\t"                                                          \
  "3:\n\t"                                                                  \
  ".long 0, 0\n\t"                                                          \
  ".quad 1f, (2f - 1f), 4f\n\t"                                             \
  ".popsection\n\t"                                                         \
  ".pushsection __rseq_cs_ptr_array, \"aw?\"\n\t"                            \
  ".quad 3b\n\t"                                                            \
  ".popsection\n\t"                                                         \
  ".pushsection __rseq_exit_point_array, \"aw?\"\n\t"                        \
  ".quad 1f, 5f\n\t"                                                        \
  ".popsection\n\t"

#define RSEQMALLOC_SLAB_ARM_BATCH                                            \
  "leaq 3b(%%rip), %q[tmp]\n\t"                  /* tmp = &cs            */ \
  "movq %q[tmp], %%fs:8(%[never], %[area_delta])\n\t" /* rseq_cs = &cs   */ \
  "1:\n\t"

#define RSEQMALLOC_SLAB_REGION_BATCH                                         \
  "cmpl $0, %%fs:4(%[never], %[area_delta])\n\t" /* if (cpu_id < 0)      */ \
  "js 5f\n\t"                                    /*   return 0           */ \
  "movl %%fs:(%[never], %[id_delta]), %k[region]\n\t" /* region = id     */ \
  "shlq $" RSEQMALLOC_SLAB_STR(RSEQMALLOC_SLAB_SHIFT) ", %q[region]\n\t"                       \
  "addq %[base], %q[region]\n\t"

#define RSEQMALLOC_SLAB_POP_BATCH_BODY(DELAY)                                \
  "movl (%q[region], %[cls], 8), %k[current]\n\t" /* current          */ \
  "movl %k[current], %k[k]\n\t"                                             \
  "subl %[begin], %k[k]\n\t"                     /* k = current - begin  */ \
  "jle 5f\n\t"                                   /* empty (or header 0)  */ \
  "cmpl %[n], %k[k]\n\t"                                                    \
  "cmova %[n], %k[k]\n\t"                        /* k = min(k, n)        */ \
  "testl %k[k], %k[k]\n\t"                       /* if (k == 0)          */ \
  "jz 5f\n\t"                                    /*   return 0 (n was 0) */ \
  "xorl %k[i], %k[i]\n\t"                        /* i = 0                */ \
  "7:\n\t"                                                                  \
  "subl $1, %k[current]\n\t"                     /* --current            */ \
  "movq (%q[region], %q[current], 8), %q[tmp]\n\t"                          \
  "movq %q[tmp], (%[buffer], %q[i], 8)\n\t"      /* out[i] = slot[current] */ \
  "addl $1, %k[i]\n\t"                                                      \
  "cmpl %k[k], %k[i]\n\t"                                                   \
  "jb 7b\n\t"                                    /* while (i < k)        */ \
  DELAY                                                                     \
  "movl %k[current], (%q[region], %[cls], 8)\n\t" /* commit              */ \
  "2:\n\t"                                                                  \
  RSEQMALLOC_SLAB_BATCH_EXITS

#define RSEQMALLOC_SLAB_PUSH_BATCH_BODY(DELAY)                               \
  "movl (%q[region], %[cls], 8), %k[current]\n\t" /* current          */ \
  "movl 4(%q[region], %[cls], 8), %k[k]\n\t"   /* k = end              */ \
  "subl %k[current], %k[k]\n\t"                  /* k = end - current    */ \
  "jle 5f\n\t"                                   /* full (or header 0)   */ \
  "cmpl %[n], %k[k]\n\t"                                                    \
  "cmova %[n], %k[k]\n\t"                        /* k = min(k, n)        */ \
  "testl %k[k], %k[k]\n\t"                       /* if (k == 0)          */ \
  "jz 5f\n\t"                                    /*   return 0 (n was 0) */ \
  "xorl %k[i], %k[i]\n\t"                                                   \
  "7:\n\t"                                                                  \
  "movq (%[buffer], %q[i], 8), %q[tmp]\n\t"                                 \
  "movq %q[tmp], (%q[region], %q[current], 8)\n\t" /* slot[current] = items[i] */ \
  "addl $1, %k[current]\n\t"                                                \
  "addl $1, %k[i]\n\t"                                                      \
  "cmpl %k[k], %k[i]\n\t"                                                   \
  "jb 7b\n\t"                                                               \
  DELAY                                                                     \
  "movl %k[current], (%q[region], %[cls], 8)\n\t" /* commit              */ \
  "2:\n\t"                                                                  \
  RSEQMALLOC_SLAB_BATCH_EXITS

// 5: nothing done (k = 0); 4: abort (k = kAbortedCode).
#define RSEQMALLOC_SLAB_BATCH_EXITS                                          \
  ".pushsection __rseq_failure, \"ax?\"\n\t"                                 \
  "5:\n\t"                                                                  \
  "xorl %k[k], %k[k]\n\t"                                                   \
  "jmp 2b\n\t"                                                              \
  ".byte 0x0f, 0xb9, 0x3d\n\t"                                              \
  ".long 0x53053053\n\t"                                                    \
  "4:\n\t"                                                                  \
  "movl %[aborted], %k[k]\n\t"                                              \
  "jmp 2b\n\t"                                                              \
  ".popsection\n\t"

#define RSEQMALLOC_SLAB_BATCH_OUTPUTS                                        \
  [region] "=&r"(region), [current] "=&r"(current), [k] "+&r"(k), [i] "=&r"(i), \
      [tmp] "=&r"(tmp)

#define RSEQMALLOC_SLAB_BATCH_INPUTS(BUFFER)                                 \
  [never] "r"(never), [area_delta] "r"(where.area_delta),                    \
      [id_delta] "r"(where.id_delta), [base] "m"(where.base), [cls] "r"(cls), \
      [begin] "r"(begin), [n] "r"(n), [buffer] "r"(BUFFER),                  \
      [aborted] "i"(internal::kAbortedCode)

struct SlabSections {
  static constexpr bool kIsReference = false;

  // Pop: the item, or `miss()`.
  template <bool kDelay = false, typename Miss>
  [[gnu::always_inline]] static inline void* Pop(const SlabWhere& where, std::size_t cls,
                                                 Miss miss) {
    std::uint64_t region, current, scratch;
    void* item;
    std::ptrdiff_t never = internal::NeverRegisteredAreaOffset();
    if constexpr (kDelay) {
      asm volatile goto(RSEQMALLOC_SLAB_TABLES RSEQMALLOC_SLAB_ARM RSEQMALLOC_SLAB_REGION
               "movl (%q[region], %[cls], 8), %k[current]\n\t"  // current = header.current
               "movq -8(%q[region], %q[current], 8), %[item]\n\t"  // item = slot[current - 1]
               "testq %[item], %[item]\n\t"                        // if (item == 0)
               "jz %l[miss]\n\t"                                   //   goto miss
               RSEQMALLOC_SLAB_DELAY("scratch")
               "subl $1, %k[current]\n\t"                          // --current
               "movl %k[current], (%q[region], %[cls], 8)\n\t"     // commit
               "2:\n\t" RSEQMALLOC_SLAB_ABORT
               : [region] "=&r"(region), [current] "=&r"(current), [item] "=&a"(item),
                 [scratch] "=&r"(scratch)
               : [never] "r"(never), [area_delta] "r"(where.area_delta),
                 [id_delta] "r"(where.id_delta),
                 [base] "m"(where.base),
                 [cls] "r"(cls), [spins] "m"(internal::rseqmalloc_rseq_delay_spins)
               : "cc", "memory"
               : miss);
    } else {
      asm volatile goto(RSEQMALLOC_SLAB_TABLES RSEQMALLOC_SLAB_ARM RSEQMALLOC_SLAB_REGION
               "movl (%q[region], %[cls], 8), %k[current]\n\t"  // current = header.current
               "movq -8(%q[region], %q[current], 8), %[item]\n\t"  // item = slot[current - 1]
               "testq %[item], %[item]\n\t"                        // if (item == 0)
               "jz %l[miss]\n\t"                                   //   goto miss
               "subl $1, %k[current]\n\t"                          // --current
               "movl %k[current], (%q[region], %[cls], 8)\n\t"     // commit
               "2:\n\t" RSEQMALLOC_SLAB_ABORT
               : [region] "=&r"(region), [current] "=&r"(current), [item] "=&a"(item)
               : [never] "r"(never), [area_delta] "r"(where.area_delta),
                 [id_delta] "r"(where.id_delta),
                 [base] "m"(where.base),
                 [cls] "r"(cls)
               : "cc", "memory"
               : miss);
    }
    return item;
  miss:
    // GCC 12 (-O2) may return `item` here, the asm's output, instead of what
    // miss() gives, when miss() needs no call (e.g. returns nullptr): an
    // abort or an unregistered thread then returned a stale register. This
    // empty asm keeps the miss path's own value (slab_test checks it:
    // AMissReturnsWhatTheMissGives).
    asm volatile("" ::: "memory");
    return miss();
  }

  // Push: returns when the item is in; otherwise calls `full()`, which must
  // take care of the item.
  template <bool kDelay = false, typename Full>
  [[gnu::always_inline]] static inline void Push(const SlabWhere& where, std::size_t cls,
                                                 void* item, Full full) {
    std::uint64_t region, current, scratch;
    std::ptrdiff_t never = internal::NeverRegisteredAreaOffset();
    if constexpr (kDelay) {
      asm volatile goto(RSEQMALLOC_SLAB_TABLES RSEQMALLOC_SLAB_ARM RSEQMALLOC_SLAB_REGION
               "movl (%q[region], %[cls], 8), %k[current]\n\t"  // current = header.current
               "cmpl 4(%q[region], %[cls], 8), %k[current]\n\t"    // if (current >= end)
               "jae %l[miss]\n\t"                                  //   goto full
               RSEQMALLOC_SLAB_DELAY("scratch")
               "movq %[item], (%q[region], %q[current], 8)\n\t"    // slot[current] = item
               "addl $1, %k[current]\n\t"                          // ++current
               "movl %k[current], (%q[region], %[cls], 8)\n\t"     // commit
               "2:\n\t" RSEQMALLOC_SLAB_ABORT
               : [region] "=&r"(region), [current] "=&r"(current), [scratch] "=&r"(scratch)
               : [never] "r"(never), [area_delta] "r"(where.area_delta),
                 [id_delta] "r"(where.id_delta),
                 [base] "m"(where.base),
                 [cls] "r"(cls), [item] "r"(item),
                 [spins] "m"(internal::rseqmalloc_rseq_delay_spins)
               : "cc", "memory"
               : miss);
    } else {
      asm volatile goto(RSEQMALLOC_SLAB_TABLES RSEQMALLOC_SLAB_ARM RSEQMALLOC_SLAB_REGION
               "movl (%q[region], %[cls], 8), %k[current]\n\t"  // current = header.current
               "cmpl 4(%q[region], %[cls], 8), %k[current]\n\t"    // if (current >= end)
               "jae %l[miss]\n\t"                                  //   goto full
               "movq %[item], (%q[region], %q[current], 8)\n\t"    // slot[current] = item
               "addl $1, %k[current]\n\t"                          // ++current
               "movl %k[current], (%q[region], %[cls], 8)\n\t"     // commit
               "2:\n\t" RSEQMALLOC_SLAB_ABORT
               : [region] "=&r"(region), [current] "=&r"(current)
               : [never] "r"(never), [area_delta] "r"(where.area_delta),
                 [id_delta] "r"(where.id_delta),
                 [base] "m"(where.base),
                 [cls] "r"(cls), [item] "r"(item)
               : "cc", "memory"
               : miss);
    }
    return;
  miss:
    full();
  }

  // --- Batches, for slow paths ------------------------------------------------
  // PopBatch: up to n items of class cls (first slot `begin`) into out[],
  // top first; returns how many (0: unregistered, or empty) or
  // internal::kAbortedCode. PushBatch: up to n items of items[] onto the
  // class, as many as fit; the same returns. One commit per batch.
  //   PopBatch:  k = min(current - begin, n); out[i] = slot[current-1-i];
  //              header.current = current - k;            (commit)
  //   PushBatch: k = min(end - current, n); slot[current+i] = items[i];
  //              header.current = current + k;            (commit)
  template <bool kDelay = false>
  static int PopBatch(const SlabWhere& where, std::size_t cls, unsigned begin, void** out,
                      unsigned n) {
    std::uint64_t region, current, i, tmp;
    std::uint64_t k = 0;
    std::ptrdiff_t never = internal::NeverRegisteredAreaOffset();
    if constexpr (kDelay) {
      asm volatile(RSEQMALLOC_SLAB_BATCH_TABLES RSEQMALLOC_SLAB_ARM_BATCH
                   RSEQMALLOC_SLAB_REGION_BATCH RSEQMALLOC_SLAB_POP_BATCH_BODY(
                       RSEQMALLOC_SLAB_DELAY("tmp"))
                   : RSEQMALLOC_SLAB_BATCH_OUTPUTS
                   : RSEQMALLOC_SLAB_BATCH_INPUTS(out),
                     [spins] "m"(internal::rseqmalloc_rseq_delay_spins)
                   : "cc", "memory");
    } else {
      asm volatile(RSEQMALLOC_SLAB_BATCH_TABLES RSEQMALLOC_SLAB_ARM_BATCH
                   RSEQMALLOC_SLAB_REGION_BATCH RSEQMALLOC_SLAB_POP_BATCH_BODY("")
                   : RSEQMALLOC_SLAB_BATCH_OUTPUTS
                   : RSEQMALLOC_SLAB_BATCH_INPUTS(out)
                   : "cc", "memory");
    }
    return static_cast<int>(k);
  }

  template <bool kDelay = false>
  static int PushBatch(const SlabWhere& where, std::size_t cls, unsigned begin, void* const* items,
                       unsigned n) {
    (void)begin;
    std::uint64_t region, current, i, tmp;
    std::uint64_t k = 0;
    std::ptrdiff_t never = internal::NeverRegisteredAreaOffset();
    if constexpr (kDelay) {
      asm volatile(RSEQMALLOC_SLAB_BATCH_TABLES RSEQMALLOC_SLAB_ARM_BATCH
                   RSEQMALLOC_SLAB_REGION_BATCH RSEQMALLOC_SLAB_PUSH_BATCH_BODY(
                       RSEQMALLOC_SLAB_DELAY("tmp"))
                   : RSEQMALLOC_SLAB_BATCH_OUTPUTS
                   : RSEQMALLOC_SLAB_BATCH_INPUTS(items),
                     [spins] "m"(internal::rseqmalloc_rseq_delay_spins)
                   : "cc", "memory");
    } else {
      asm volatile(RSEQMALLOC_SLAB_BATCH_TABLES RSEQMALLOC_SLAB_ARM_BATCH
                   RSEQMALLOC_SLAB_REGION_BATCH RSEQMALLOC_SLAB_PUSH_BATCH_BODY("")
                   : RSEQMALLOC_SLAB_BATCH_OUTPUTS
                   : RSEQMALLOC_SLAB_BATCH_INPUTS(items)
                   : "cc", "memory");
    }
    return static_cast<int>(k);
  }
};

#undef RSEQMALLOC_SLAB_TABLES
#undef RSEQMALLOC_SLAB_ARM
#undef RSEQMALLOC_SLAB_REGION
#undef RSEQMALLOC_SLAB_ABORT
#undef RSEQMALLOC_SLAB_DELAY
#undef RSEQMALLOC_SLAB_BATCH_TABLES
#undef RSEQMALLOC_SLAB_ARM_BATCH
#undef RSEQMALLOC_SLAB_REGION_BATCH
#undef RSEQMALLOC_SLAB_POP_BATCH_BODY
#undef RSEQMALLOC_SLAB_PUSH_BATCH_BODY
#undef RSEQMALLOC_SLAB_BATCH_EXITS
#undef RSEQMALLOC_SLAB_BATCH_OUTPUTS
#undef RSEQMALLOC_SLAB_BATCH_INPUTS

// The same contract in portable C++, under a lock per id (reference.h): the
// oracle for tests. Its id is what the rseq area says (it needs a
// registered thread, like the sections). The lock is released before
// `miss` / `full` run, since they may come back to the slab.
struct SlabReference {
  static constexpr bool kIsReference = true;

  template <bool kDelay = false, typename Miss>
  static void* Pop(const SlabWhere& where, std::size_t cls, Miss miss) {
    void* item = TryPop(where, cls);
    return item != nullptr ? item : miss();
  }

  template <bool kDelay = false, typename Full>
  static void Push(const SlabWhere& where, std::size_t cls, void* item, Full full) {
    if (!TryPush(where, cls, item)) full();
  }

  template <bool kDelay = false>
  static int PopBatch(const SlabWhere& where, std::size_t cls, unsigned begin, void** out,
                      unsigned n) {
    char* region = nullptr;
    int id = Locate(where, &region);
    if (id < 0) return 0;
    internal::IdLock lock(id);
    auto* current = reinterpret_cast<std::uint32_t*>(region + internal::kHeaderBytes * cls);
    int have = static_cast<int>(*current) - static_cast<int>(begin);
    if (have <= 0) return 0;
    unsigned k = static_cast<unsigned>(have) < n ? static_cast<unsigned>(have) : n;
    for (unsigned i = 0; i < k; ++i) out[i] = reinterpret_cast<void**>(region)[*current - 1 - i];
    __atomic_store_n(current, static_cast<std::uint32_t>(*current - k), __ATOMIC_RELAXED);
    return static_cast<int>(k);
  }

  template <bool kDelay = false>
  static int PushBatch(const SlabWhere& where, std::size_t cls, unsigned, void* const* items,
                       unsigned n) {
    char* region = nullptr;
    int id = Locate(where, &region);
    if (id < 0) return 0;
    internal::IdLock lock(id);
    auto* header = reinterpret_cast<std::uint32_t*>(region + internal::kHeaderBytes * cls);
    int room = static_cast<int>(header[1]) - static_cast<int>(header[0]);
    if (room <= 0) return 0;
    unsigned k = static_cast<unsigned>(room) < n ? static_cast<unsigned>(room) : n;
    for (unsigned i = 0; i < k; ++i) reinterpret_cast<void**>(region)[header[0] + i] = items[i];
    __atomic_store_n(&header[0], static_cast<std::uint32_t>(header[0] + k), __ATOMIC_RELAXED);
    return static_cast<int>(k);
  }

 private:
  static void* TryPop(const SlabWhere& where, std::size_t cls) {
    char* region = nullptr;
    int id = Locate(where, &region);
    if (id < 0) return nullptr;
    internal::IdLock lock(id);
    auto* current = reinterpret_cast<std::uint32_t*>(region + internal::kHeaderBytes * cls);
    // (A header of 0 reads the 0 below the region, as the sections do.)
    void* item = reinterpret_cast<void**>(region)[static_cast<std::ptrdiff_t>(*current) - 1];
    if (item != nullptr) {
      __atomic_store_n(current, static_cast<std::uint32_t>(*current - 1), __ATOMIC_RELAXED);
    }
    return item;
  }

  static bool TryPush(const SlabWhere& where, std::size_t cls, void* item) {
    char* region = nullptr;
    int id = Locate(where, &region);
    if (id < 0) return false;
    internal::IdLock lock(id);
    auto* header = reinterpret_cast<std::uint32_t*>(region + internal::kHeaderBytes * cls);
    if (header[0] >= header[1]) return false;
    reinterpret_cast<void**>(region)[header[0]] = item;
    __atomic_store_n(&header[0], static_cast<std::uint32_t>(header[0] + 1), __ATOMIC_RELAXED);
    return true;
  }

  static int Locate(const SlabWhere& where, char** region) {
    auto at = [](std::ptrdiff_t offset) {
      return reinterpret_cast<const volatile std::int32_t*>(
          internal::ThreadPointer() + internal::NeverRegisteredAreaOffset() + offset);
    };
    if (*at(where.area_delta + kCpuIdOffset) < 0) return -1;
    int id = *at(where.id_delta);
    *region = where.base + (static_cast<std::size_t>(id) << kSlabShift);
    return id;
  }
};

}  // namespace rseqmalloc::rseq

#endif  // RSEQ_SLAB_SECTIONS_H_
