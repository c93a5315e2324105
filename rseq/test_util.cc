#include "rseq/test_util.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

extern char** environ;

namespace rseqmalloc::rseq {
namespace testing {
namespace {

std::atomic<void (*)()> g_storm_work{nullptr};
std::atomic<std::int64_t> g_signals_handled{0};

void StormHandler(int) {
  int saved_errno = errno;
  g_signals_handled.fetch_add(1, std::memory_order_relaxed);
  if (auto work = g_storm_work.load(std::memory_order_relaxed)) work();
  errno = saved_errno;
}

}  // namespace

std::int64_t RunThreads(int num_threads, const std::function<void(int)>& body,
                        void (*storm_work)()) {
  const bool storm = storm_work != nullptr;
  struct sigaction old_action;
  if (storm) {
    g_storm_work.store(storm_work);
    g_signals_handled.store(0);
    struct sigaction action;
    std::memset(&action, 0, sizeof(action));
    action.sa_handler = StormHandler;
    action.sa_flags = SA_RESTART;
    sigemptyset(&action.sa_mask);
    sigaction(SIGUSR1, &action, &old_action);
  }

  std::vector<std::atomic<pid_t>> tids(num_threads);
  for (auto& tid : tids) tid.store(0);
  std::atomic<int> finished{0};
  std::atomic<bool> storm_over{!storm};

  std::vector<std::thread> workers;
  workers.reserve(num_threads);
  for (int i = 0; i < num_threads; ++i) {
    workers.emplace_back([&, i] {
      tids[i].store(static_cast<pid_t>(syscall(SYS_gettid)));
      body(i);
      finished.fetch_add(1);
      // Stay alive (a valid tgkill target) until the sender has stopped.
      while (!storm_over.load()) sched_yield();
    });
  }

  if (storm) {
    std::thread sender([&] {
      const pid_t pid = getpid();
      const struct timespec pause = {0, 20 * 1000};
      while (finished.load() < num_threads) {
        for (auto& tid : tids) {
          pid_t t = tid.load();
          if (t != 0) syscall(SYS_tgkill, pid, t, SIGUSR1);
        }
        nanosleep(&pause, nullptr);
      }
      storm_over.store(true);
    });
    sender.join();
  }
  for (auto& w : workers) w.join();

  if (!storm) return 0;
  sigaction(SIGUSR1, &old_action, nullptr);
  g_storm_work.store(nullptr);
  return g_signals_handled.load();
}

ScopedPinToCurrentCpu::ScopedPinToCurrentCpu() {
  sched_getaffinity(0, sizeof(saved_), &saved_);
  cpu_ = sched_getcpu();
  cpu_set_t one;
  CPU_ZERO(&one);
  CPU_SET(cpu_, &one);
  sched_setaffinity(0, sizeof(one), &one);
  sched_yield();  // make sure we are on it before anyone reads an id
}

ScopedPinToCurrentCpu::~ScopedPinToCurrentCpu() {
  sched_setaffinity(0, sizeof(saved_), &saved_);
}

const char* ChildScenario() { return std::getenv("RSEQ_TEST_CHILD"); }

void FinishChild() {
  fflush(stdout);
  fflush(stderr);
  _exit(::testing::Test::HasFailure() ? 1 : kChildPassed);
}

int RunTestInChild(const char* test_name, const char* scenario,
                   bool block_rseq) {
  // Everything that allocates happens before fork(): the parent is
  // multi-threaded, the child may only make raw system calls until execve.
  std::string filter = std::string("--gtest_filter=") + test_name;
  std::vector<std::string> env_storage;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string var = *e;
    // Bazel's result files and sharding belong to the parent run.
    static const char* const kDropped[] = {
        "GLIBC_TUNABLES=", "RSEQ_TEST_CHILD=", "XML_OUTPUT_FILE=",
        "GTEST_OUTPUT=",   "GTEST_SHARD_",     "TEST_SHARD_",
        "TEST_TOTAL_SHARDS=", "TEST_PREMATURE_EXIT_FILE="};
    bool drop = false;
    for (const char* prefix : kDropped) {
      if (var.rfind(prefix, 0) == 0) drop = true;
    }
    if (!drop) env_storage.push_back(var);
  }
  env_storage.push_back("GLIBC_TUNABLES=glibc.pthread.rseq=0");
  env_storage.push_back(std::string("RSEQ_TEST_CHILD=") + scenario);
  std::vector<char*> envp;
  for (auto& s : env_storage) envp.push_back(s.data());
  envp.push_back(nullptr);
  char arg0[] = "rseq_test_child";
  char* argv[] = {arg0, filter.data(), nullptr};

  struct sock_filter insns[] = {
      // if (data->arch != AUDIT_ARCH_X86_64) return ALLOW;
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
      // if (data->nr == __NR_rseq) return ERRNO(ENOSYS); return ALLOW;
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_rseq, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ENOSYS),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {sizeof(insns) / sizeof(insns[0]), insns};

  pid_t pid = fork();
  if (pid == 0) {
    if (block_rseq) {
      if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) _exit(120);
      if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) != 0) {
        _exit(121);
      }
    }
    execve("/proc/self/exe", argv, envp.data());
    _exit(122);
  }
  if (pid < 0) return -1;
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

}  // namespace testing
}  // namespace rseqmalloc::rseq
