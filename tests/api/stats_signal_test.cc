// RSEQMALLOC_STATS_SIGNAL=12 (this target's environment): the report on
// demand, without a thread of ours in the process.
//
// A program that must stay single-threaded (unshare(CLONE_NEWUSER) refuses a
// multi-threaded caller with EINVAL; `unshare -U` is such a program) used to
// fail as soon as the variable was set, because a reporter thread started at
// the first malloc. Now the handler prints the report itself when the signal
// did not interrupt this thread's allocator, and leaves it to the thread's
// next slow path when it did (the report takes locks the interrupted call may
// hold).
#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "allocator/frontend/reentry.h"
#include "gtest/gtest.h"

namespace {

constexpr int kStatsSignal = 12;  // SIGUSR2, set in the BUILD target's env

int CountThreads() {
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return -1;
  int n = 0;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(dir);
  return n;
}

// Runs fn with file descriptor 2 sent to a temporary file; returns the text.
template <typename Fn>
std::string CaptureStderr(Fn fn) {
  char path[] = "/tmp/rseqmalloc_stats_signal_XXXXXX";
  int fd = mkstemp(path);
  if (fd < 0) return "<mkstemp failed>";
  unlink(path);
  int saved = dup(2);
  dup2(fd, 2);
  fn();
  dup2(saved, 2);
  close(saved);
  std::string text;
  lseek(fd, 0, SEEK_SET);
  char buf[4096];
  ssize_t n;
  while ((n = read(fd, buf, sizeof(buf))) > 0) text.append(buf, static_cast<size_t>(n));
  close(fd);
  return text;
}

size_t Reports(const std::string& text) {
  size_t n = 0;
  for (size_t at = text.find("rseqmalloc statistics:"); at != std::string::npos;
       at = text.find("rseqmalloc statistics:", at + 1)) {
    ++n;
  }
  return n;
}

TEST(StatsSignal, AllocatingStartsNoThread) {
  for (int i = 0; i < 1000; ++i) free(malloc(static_cast<size_t>(i) * 97));
  EXPECT_EQ(CountThreads(), 1);
}

// In this process, not in a fork: a forked child has one thread whatever
// its parent had. (EINVAL is the multi-threaded refusal; EPERM or ENOSPC
// only say that this sandbox allows no user namespaces.)
TEST(StatsSignal, SingleThreadedProgramCanStillUnshareAUserNamespace) {
  free(malloc(100));
  int rc = unshare(CLONE_NEWUSER);
  int error = errno;
  EXPECT_TRUE(rc == 0 || error == EPERM || error == ENOSPC)
      << "unshare(CLONE_NEWUSER): " << strerror(error) << " (the process is multi-threaded?)";
}

TEST(StatsSignal, SignalPrintsTheReport) {
  void* keep = malloc(1000);
  std::string text = CaptureStderr([] { raise(kStatsSignal); });
  free(keep);
  EXPECT_EQ(Reports(text), 1u) << text;
  EXPECT_NE(text.find("total mapped"), std::string::npos) << text;
  EXPECT_EQ(CountThreads(), 1);
}

// What a handler that interrupted this thread's malloc finds: the report
// waits for the thread to leave the allocator, then comes on its next slow
// path (a large block always takes one).
TEST(StatsSignal, SignalInsideTheAllocatorPrintsOnTheNextSlowPath) {
  free(malloc(100));
  std::string during = CaptureStderr([] {
    rseqmalloc::internal::EnterAllocator();
    raise(kStatsSignal);
    rseqmalloc::internal::LeaveAllocator();
  });
  EXPECT_EQ(Reports(during), 0u) << "printed while the allocator was busy:\n" << during;
  std::string after = CaptureStderr([] { free(malloc(1 << 20)); });
  EXPECT_EQ(Reports(after), 1u) << after;
}

}  // namespace
