#!/usr/bin/env bash
# g++ -O1 building a small program (templates, std containers, <regex>) with
# the library preloaded into the driver and, through the inherited
# LD_PRELOAD, into every child: cc1plus, as, collect2, ld. The object files
# and the executable must be byte-identical to those of a plain build, and
# the program's output (run preloaded as well) identical to the plain one.
source "$(dirname "$0")/../preload/preload_lib.sh"

mkdir -p "$WORK/src"
cat >"$WORK/src/lib.h" <<'CC'
#include <cstdint>
#include <map>
#include <string>
#include <vector>

std::map<std::string, std::vector<int>> BuildIndex(int words);
std::uint64_t MatrixChecksum(int rounds);
std::string RegexReport(int lines);

// FNV-1a over anything iterable of integers or chars.
template <typename Range>
std::uint64_t Fnv(const Range& r, std::uint64_t h = 1469598103934665603ull) {
  for (auto v : r) h = (h ^ static_cast<std::uint64_t>(v)) * 1099511628211ull;
  return h;
}
CC
cat >"$WORK/src/index.cc" <<'CC'
#include <algorithm>
#include <set>
#include <unordered_map>
#include "lib.h"

namespace {
template <typename K, typename V>
struct Bucketed {
  std::unordered_map<K, std::set<V>> buckets;
  void Add(const K& k, V v) { buckets[k].insert(v); }
};
}  // namespace

std::map<std::string, std::vector<int>> BuildIndex(int words) {
  Bucketed<std::string, int> b;
  std::uint32_t x = 7;
  for (int i = 0; i < words; ++i) {
    x = x * 1664525u + 1013904223u;
    std::string w(1 + x % 9, static_cast<char>('a' + (x >> 8) % 26));
    b.Add(w + std::to_string(x % 97), i);
  }
  std::map<std::string, std::vector<int>> out;
  for (auto& [k, s] : b.buckets) out[k].assign(s.begin(), s.end());
  return out;
}
CC
cat >"$WORK/src/matrix.cc" <<'CC'
#include <array>
#include <memory>
#include <numeric>
#include "lib.h"

namespace {
template <typename T, int N>
class Matrix {
 public:
  Matrix() : cells_(std::make_unique<std::array<T, N * N>>()) {}
  T& At(int r, int c) { return (*cells_)[r * N + c]; }
  const T& At(int r, int c) const { return (*cells_)[r * N + c]; }
  Matrix Times(const Matrix& o) const {
    Matrix m;
    for (int i = 0; i < N; ++i)
      for (int k = 0; k < N; ++k)
        for (int j = 0; j < N; ++j) m.At(i, j) += At(i, k) * o.At(k, j);
    return m;
  }
  T Sum() const { return std::accumulate(cells_->begin(), cells_->end(), T{}); }

 private:
  std::unique_ptr<std::array<T, N * N>> cells_;
};
}  // namespace

std::uint64_t MatrixChecksum(int rounds) {
  std::vector<std::uint64_t> sums;
  for (int r = 0; r < rounds; ++r) {
    Matrix<std::uint64_t, 24> a, b;
    for (int i = 0; i < 24; ++i)
      for (int j = 0; j < 24; ++j) {
        a.At(i, j) = (i * 31 + j + r) % 17;
        b.At(i, j) = (j * 7 + i * r) % 13;
      }
    sums.push_back(a.Times(b).Sum());
  }
  return Fnv(sums);
}
CC
cat >"$WORK/src/text.cc" <<'CC'
#include <regex>
#include <sstream>
#include "lib.h"

std::string RegexReport(int lines) {
  std::ostringstream text;
  for (int i = 0; i < lines; ++i)
    text << "id=" << i << " user=u" << (i * 37) % 1000 << " took=" << (i % 13) << "ms\n";
  const std::string all = text.str();
  const std::regex re(R"(user=u(\d+) took=(1[0-2])ms)");
  std::map<int, int> slow;
  for (std::sregex_iterator it(all.begin(), all.end(), re), end; it != end; ++it)
    slow[std::stoi((*it)[1].str())] += std::stoi((*it)[2].str());
  std::ostringstream out;
  out << slow.size() << " users, fnv " << Fnv(all) << ", first " << slow.begin()->first
      << "=" << slow.begin()->second;
  return out.str();
}
CC
cat >"$WORK/src/main.cc" <<'CC'
#include <cstdio>
#include "lib.h"

int main() {
  const auto index = BuildIndex(200000);
  std::size_t postings = 0;
  std::uint64_t h = 0;
  for (const auto& [word, ids] : index) {
    postings += ids.size();
    h = Fnv(word, h) ^ Fnv(ids);
  }
  std::printf("index %zu words %zu postings %llx\n", index.size(), postings,
              static_cast<unsigned long long>(h));
  std::printf("matrix %llx\n", static_cast<unsigned long long>(MatrixChecksum(200)));
  std::printf("regex %s\n", RegexReport(20000).c_str());
  return postings == 200000 ? 0 : 1;
}
CC

# build DIR PREFIX...: compiles each source to an object, links, in DIR.
build() {
  set -euo pipefail
  local dir="$1" f
  shift
  mkdir -p "$dir"
  cp "$WORK"/src/* "$dir"
  cd "$dir"
  for f in index matrix text main; do
    "$@" g++ -std=c++17 -O1 -frandom-seed="$f" -c "$f.cc" -o "$f.o"
  done
  "$@" g++ -O1 index.o matrix.o text.o main.o -o prog
}

(build "$WORK/plain")
preloaded "$WORK/err.txt" bash -c "$(declare -f build); WORK='$WORK'; build '$WORK/pre'"
expect_loaded "$WORK/err.txt"
# Four compiles (g++, cc1plus, as each) and one link (g++, collect2, ld).
procs="$(grep -oE '^rseqmalloc: pid [0-9]+' "$WORK/err.txt" | sort -u | wc -l)"
[ "$procs" -ge 15 ] || fail "only $procs processes printed the marker, want 15"
for f in index.o matrix.o text.o main.o prog; do
  cmp -s "$WORK/plain/$f" "$WORK/pre/$f" || fail "$f differs between the plain and preloaded builds"
done
"$WORK/plain/prog" >"$WORK/expected.txt"
preloaded "$WORK/err_prog.txt" "$WORK/pre/prog" >"$WORK/actual.txt"
expect_loaded "$WORK/err_prog.txt"
same_output "$WORK/expected.txt" "$WORK/actual.txt" "compiled program"
grep -q '^index [0-9]* words 200000 postings' "$WORK/actual.txt" || fail "bad program output"
cat "$WORK/actual.txt"
echo "$procs preloaded processes, objects and executable identical"
echo PASS
