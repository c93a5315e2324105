#include "allocator/frontend/stats_signal.h"

#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>

#include "allocator/base/log.h"
#include "allocator/frontend/stats_report.h"

namespace rseqmalloc::internal {
namespace {

sem_t g_requests;

void OnStatsSignal(int) {
  int saved_errno = errno;
  sem_post(&g_requests);
  errno = saved_errno;
}

void* Reporter(void*) {
  // The reporter never takes the signal itself.
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);
  for (;;) {
    if (sem_wait(&g_requests) != 0) continue;  // EINTR
    PrintStatsReport(STDERR_FILENO);
  }
  return nullptr;
}

bool Fail(const char* what) {
  LogLine line;
  line.Str("rseqmalloc: RSEQMALLOC_STATS_SIGNAL: ").Str(what).Str("; no on-demand report\n")
      .Flush(STDERR_FILENO);
  return false;
}

}  // namespace

bool InstallStatsSignal(int signal_number) {
  if (sem_init(&g_requests, 0, 0) != 0) return Fail("sem_init failed");
  pthread_t thread;
  if (pthread_create(&thread, nullptr, Reporter, nullptr) != 0) {
    return Fail("cannot start the reporter thread");
  }
  pthread_detach(thread);
  struct sigaction action = {};
  action.sa_handler = OnStatsSignal;
  action.sa_flags = SA_RESTART;
  sigemptyset(&action.sa_mask);
  if (sigaction(signal_number, &action, nullptr) != 0) return Fail("sigaction failed");
  return true;
}

}  // namespace rseqmalloc::internal
