#include "allocator/frontend/shared_tls_child.h"

#include <sched.h>
#include <sys/syscall.h>

#include <cerrno>
#include <cstdint>

#include "rseq/registration.h"

extern "C" int __clone(int (*fn)(void*), void* stack, int flags, void* arg, ...);

namespace rseqmalloc::internal {
namespace {

// What tls_shared_tls_child points at while a child whose parent is
// suspended runs: the parent clears the pointer when it resumes.
constexpr int kChildRunning = 1;

__thread std::int32_t tls_saved_cpu_id __attribute__((tls_model("initial-exec"))) = 0;
// Cleared by the kernel (CLONE_CHILD_CLEARTID) when a clone child we mark,
// and that gave no clear-tid word of its own, exits or execs.
__thread volatile int tls_child_alive __attribute__((tls_model("initial-exec"))) = 0;

// Whether the thread's area is unregistered while a child that does not
// suspend the thread shares it (rseq::SuspendArea).
__thread bool tls_area_suspended __attribute__((tls_model("initial-exec"))) = false;

// In the thread, before the child exists. A second child while the first
// may still run keeps the cpu_id saved for the first (the area reads
// kCpuIdRegistrationFailed by now). A child that lets the thread run on
// (no CLONE_VFORK) gets the area unregistered, so that the kernel's
// updates for the thread cannot undo the child's mark.
void BeforeChild(const volatile int* alive, bool thread_runs_on) {
  if (tls_shared_tls_child == nullptr) tls_saved_cpu_id = rseq::AreaCpuId();
  if (thread_runs_on && !tls_area_suspended) tls_area_suspended = rseq::SuspendArea();
  tls_shared_tls_child = alive;
}

// In the thread, once no child runs on its TLS any more.
void AfterChild() {
  tls_shared_tls_child = nullptr;
  if (tls_area_suspended) {
    tls_area_suspended = false;
    rseq::ResumeArea();
    return;
  }
  rseq::RestoreArea(tls_saved_cpu_id);
}

struct ChildStart {
  int (*fn)(void*);
  void* arg;
};

int StartMarkedChild(void* raw) {
  rseqmalloc::rseq::MarkAreaUnavailable();
  auto* start = static_cast<ChildStart*>(raw);
  return start->fn(start->arg);
}

}  // namespace

__thread const volatile int* tls_shared_tls_child __attribute__((tls_model("initial-exec"))) =
    nullptr;

bool SharedTlsChildRunning() {
  if (*tls_shared_tls_child != 0) return true;
  AfterChild();
  return false;
}

int CloneMarkingSharedTls(int (*fn)(void*), void* stack, int flags, void* arg, pid_t* parent_tid,
                          void* tls, pid_t* child_tid) {
  if ((flags & CLONE_VM) == 0 || (flags & CLONE_SETTLS) != 0 || fn == nullptr ||
      stack == nullptr) {
    return __clone(fn, stack, flags, arg, parent_tid, tls, child_tid);
  }
  // The trampoline's arguments go on top of the child's stack, below which
  // the child's frames grow.
  auto top = reinterpret_cast<uintptr_t>(stack);
  auto* start = reinterpret_cast<ChildStart*>((top - sizeof(ChildStart)) & ~uintptr_t{15});
  start->fn = fn;
  start->arg = arg;
  const volatile int* alive = &kChildRunning;
  if ((flags & CLONE_VFORK) == 0) {
    if ((flags & CLONE_CHILD_CLEARTID) == 0) {
      flags |= CLONE_CHILD_CLEARTID;
      child_tid = const_cast<pid_t*>(reinterpret_cast<volatile pid_t*>(&tls_child_alive));
      tls_child_alive = 1;
    }
    alive = reinterpret_cast<volatile int*>(child_tid);
  }
  BeforeChild(alive, (flags & CLONE_VFORK) == 0);
  int saved_errno = errno;
  int pid = __clone(StartMarkedChild, start, flags, start, parent_tid, tls, child_tid);
  if (pid < 0 || (flags & CLONE_VFORK) != 0) {
    saved_errno = errno;
    AfterChild();
  }
  errno = saved_errno;
  return pid;
}

}  // namespace rseqmalloc::internal

extern "C" {

namespace in = rseqmalloc::internal;

// The three C steps of rseqmalloc_vfork below.
__attribute__((visibility("hidden"), used)) void rseqmalloc_vfork_before() {
  in::BeforeChild(&in::kChildRunning, /*thread_runs_on=*/false);
}
__attribute__((visibility("hidden"), used)) void rseqmalloc_vfork_child() {
  rseqmalloc::rseq::MarkAreaUnavailable();
}
// In the parent once the child exec'd or exited, or after a failure
// (`result` is the system call's: a pid or -errno). Returns vfork's result.
__attribute__((visibility("hidden"), used)) long rseqmalloc_vfork_parent(long result) {
  in::AfterChild();
  if (result < 0) {
    errno = static_cast<int>(-result);
    return -1;
  }
  return result;
}

}  // extern "C"

// vfork: the child borrows this stack until it execs or exits, so the
// return address is kept in a register across the system call (the child's
// frames overwrite the stack slot), as glibc's own vfork does.
asm(R"(
  .text
  .globl rseqmalloc_vfork
  .hidden rseqmalloc_vfork
  .type rseqmalloc_vfork, @function
rseqmalloc_vfork:
  .cfi_startproc
  endbr64
  subq $8, %rsp                  # align the stack for the call
  .cfi_adjust_cfa_offset 8
  call rseqmalloc_vfork_before   # save cpu_id, mark the TLS as shared
  addq $8, %rsp
  .cfi_adjust_cfa_offset -8
  popq %rdi                      # return address, out of the child's way
  .cfi_adjust_cfa_offset -8
  .cfi_register rip, rdi
  movl $)" "58" R"(, %eax          # SYS_vfork
  syscall
  pushq %rdi                     # both processes: return address back
  .cfi_adjust_cfa_offset 8
  .cfi_rel_offset rip, 0
  testq %rax, %rax
  jz 1f
  movq %rax, %rdi                # parent (or failure): restore, set errno
  subq $8, %rsp
  .cfi_adjust_cfa_offset 8
  call rseqmalloc_vfork_parent
  addq $8, %rsp
  .cfi_adjust_cfa_offset -8
  ret
1:
  subq $8, %rsp                  # child: make our own sections miss
  .cfi_adjust_cfa_offset 8
  call rseqmalloc_vfork_child
  addq $8, %rsp
  .cfi_adjust_cfa_offset -8
  xorl %eax, %eax
  ret
  .cfi_endproc
  .size rseqmalloc_vfork, .-rseqmalloc_vfork
)");
static_assert(SYS_vfork == 58, "the vfork stub hard-codes the x86-64 system call number");
