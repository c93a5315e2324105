// A small multithreaded program with rseqmalloc linked in, run under
// valgrind by valgrind_test.sh. Valgrind has no rseq, so the allocator must
// detect that and serve every thread from the per-thread fallback.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "allocator/api/rseqmalloc.h"

int main() {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t] {
      std::vector<std::string> strings;
      for (int i = 0; i < 3000; ++i) strings.push_back(std::string(i % 500 + 1, 'a' + t));
      for (int i = 0; i < 3000; ++i) {
        if (strings[i].size() != size_t(i % 500 + 1) || strings[i][0] != 'a' + t) abort();
      }
      void* big = malloc(1 << 20);
      memset(big, t, 1 << 20);
      void* aligned = aligned_alloc(4096, 10000);
      memset(aligned, t, 10000);
      void* grown = realloc(malloc(10), 100000);
      memset(grown, t, 100000);
      free(big);
      free(aligned);
      free(grown);
    });
  }
  for (auto& th : threads) th.join();
  // Memcheck replaces malloc in shared libraries; linked into the
  // executable, ours must still be the one that runs.
  void* probe = malloc(100);
  printf("owned=%d\n", rseqmalloc_owns(probe));
  free(probe);
  printf("mode=%s\n", rseqmalloc_mode());
  return 0;
}
