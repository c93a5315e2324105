#include "rseq/slab.h"

#include <linux/membarrier.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "rseq/cpus.h"
#include "rseq/primitives.h"
#include "rseq/reference.h"

namespace rseqmalloc::rseq {
namespace {

constexpr std::size_t kRegionBytes = std::size_t{1} << kSlabShift;
constexpr std::uint32_t kRegionSlots = kRegionBytes / internal::kSlotBytes;
constexpr std::size_t kPageBytes = 4096;
// The zero page in front of region 0: what a pop on a header of 0 reads.
constexpr std::size_t kGuardBytes = kPageBytes;

// A header word: {uint32 current, uint32 end} (pseudocode.h), one 8-byte
// word so that capacity changes are one compare-and-swap.
using Word = std::uint64_t;
constexpr Word kCurrentMask = 0xffffffffu;
std::uint32_t Current(Word header) { return static_cast<std::uint32_t>(header); }
std::uint32_t End(Word header) { return static_cast<std::uint32_t>(header >> 32); }
Word PackHeader(std::uint32_t current, std::uint32_t end) { return current | (Word{end} << 32); }

bool Fence() {
  return syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED_RSEQ, 0, 0) == 0;
}

}  // namespace

std::size_t PercpuSlab::ReservationBytes() {
  return kGuardBytes + (static_cast<std::size_t>(NumPossibleCpus()) << kSlabShift);
}

bool PercpuSlab::Init(const std::uint32_t* max_capacity, int num_classes) {
  if (num_classes < 1 || num_classes > kMaxClasses || mapping_ != nullptr) return false;
  // Headers, then per class: the 0 marker, then its slots. The region's
  // last slot stays 0 too (a header of 0 on the next id reads it).
  std::uint32_t slot = (internal::kHeaderBytes * num_classes + internal::kSlotBytes - 1) /
                       internal::kSlotBytes;
  for (int cls = 0; cls < num_classes; ++cls) {
    if (max_capacity[cls] == 0) continue;
    begin_[cls] = slot + 1;
    max_[cls] = max_capacity[cls];
    // 64-bit sum: a capacity near 2^32 must fail here, not wrap.
    std::uint64_t next = std::uint64_t{slot} + 1 + max_capacity[cls];
    if (next >= kRegionSlots) return false;
    slot = static_cast<std::uint32_t>(next);
  }
  int ids = NumPossibleCpus();
  std::size_t bytes = ReservationBytes();
  void* mapping = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mapping == MAP_FAILED) return false;
  mapping_ = static_cast<char*>(mapping);
  mapping_bytes_ = bytes;
  num_ids_ = ids;
  num_classes_ = num_classes;
  remote_ = syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_RSEQ, 0, 0) == 0;
  where_.base = mapping_ + kGuardBytes;
  return true;
}

void PercpuSlab::Release() {
  if (mapping_ != nullptr) munmap(mapping_, mapping_bytes_);
  __atomic_store_n(&where_.area_delta, 0, __ATOMIC_RELEASE);
  mapping_ = nullptr;
  where_.base = nullptr;
  started_ = false;
}

void PercpuSlab::Start(IndexMode mode) {
  std::ptrdiff_t delta = internal::AreaOffset() - internal::NeverRegisteredAreaOffset();
  int field = mode == IndexMode::kMmCid ? kMmCidOffset : kCpuIdOffset;
  mode_ = mode;
  __atomic_store_n(&where_.id_delta, delta + field, __ATOMIC_RELAXED);
  // Last: a fast path that sees the real area sees the rest (x86-64 keeps
  // stores and loads in order; the compiler is kept in order by release).
  __atomic_store_n(&where_.area_delta, delta, __ATOMIC_RELEASE);
  __atomic_store_n(&started_, true, __ATOMIC_RELEASE);
}

int PercpuSlab::CurrentId() const {
  std::ptrdiff_t never = internal::NeverRegisteredAreaOffset();
  auto at = [never](std::ptrdiff_t offset) {
    return *reinterpret_cast<const volatile std::int32_t*>(internal::ThreadPointer() + never +
                                                           offset);
  };
  if (at(where_.area_delta + kCpuIdOffset) < 0) return -1;
  int id = at(where_.id_delta);
  return id < num_ids_ ? id : -1;
}

void* PercpuSlab::PopRetrying(std::size_t cls, int* id) const {
  for (;;) {
    std::uint64_t aborts = ThreadRestartCount();
    void* item = Pop(cls, [] { return static_cast<void*>(nullptr); });
    if (item != nullptr || ThreadRestartCount() == aborts) {
      *id = CurrentId();
      return item;
    }
  }
}

bool PercpuSlab::PushRetrying(std::size_t cls, void* item, int* id) const {
  for (;;) {
    std::uint64_t aborts = ThreadRestartCount();
    bool done = true;
    Push(cls, item, [&done] { done = false; });
    if (done || ThreadRestartCount() == aborts) {
      *id = CurrentId();
      return done;
    }
  }
}

std::uint64_t* PercpuSlab::Header(int id, std::size_t cls) const {
  return reinterpret_cast<std::uint64_t*>(
      where_.base + (static_cast<std::size_t>(id) << kSlabShift) + internal::kHeaderBytes * cls);
}

void** PercpuSlab::Slots(int id) const {
  return reinterpret_cast<void**>(where_.base + (static_cast<std::size_t>(id) << kSlabShift));
}

PercpuSlab::Fill PercpuSlab::FillOf(int id, std::size_t cls) const {
  if (where_.base == nullptr || id < 0 || id >= num_ids_ || max_[cls] == 0) return {};
  Word h = __atomic_load_n(Header(id, cls), __ATOMIC_RELAXED);
  if (h == 0) return {};
  std::uint32_t cached = Current(h) > begin_[cls] ? Current(h) - begin_[cls] : 0;
  return {cached, static_cast<std::uint32_t>(End(h) - begin_[cls])};
}

std::uint32_t PercpuSlab::Grow(int id, std::size_t cls, std::uint32_t slots) {
  Word* word = Header(id, cls);
  std::uint32_t begin = begin_[cls];
  std::uint32_t limit = begin + max_[cls];
  Word h = __atomic_load_n(word, __ATOMIC_RELAXED);
  for (;;) {
    std::uint32_t current = h == 0 ? begin : Current(h);
    std::uint32_t end = h == 0 ? begin : End(h);
    std::uint32_t added = end + slots > limit ? limit - end : slots;
    if (added == 0) return 0;
    if (__atomic_compare_exchange_n(word, &h, PackHeader(current, end + added), false,
                                    __ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
      return added;
    }
  }
}

std::uint32_t PercpuSlab::ShrinkUnused(int id, std::size_t cls, std::uint32_t slots) {
  Word* word = Header(id, cls);
  Word h = __atomic_load_n(word, __ATOMIC_RELAXED);
  for (;;) {
    if (h == 0) return 0;
    std::uint32_t unused = End(h) > Current(h) ? End(h) - Current(h) : 0;
    std::uint32_t removed = unused < slots ? unused : slots;
    if (removed == 0) return 0;
    if (__atomic_compare_exchange_n(word, &h, PackHeader(Current(h), End(h) - removed), false,
                                    __ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
      return removed;
    }
  }
}

// A section that read a header before the swap may still commit after it;
// once it has, the header is no longer 0 (its 32-bit commit wrote `current`
// into the zeroed word, leaving `end` 0). On `id` itself a compare-and-store
// section does the swap: it can only succeed while no other section on the
// id is in flight (they were preempted for us to run, and restart). From
// elsewhere, the fence restarts every section in flight in the process, and
// the swap repeats until a pass finds every header still 0. The reference
// implementation's sections run under the id's lock instead, taken here too.
bool PercpuSlab::Stop(int id, const std::size_t* classes, int n, std::uint64_t* last) {
  if (n == 1 && CurrentId() == id) {
    Word* word = Header(id, classes[0]);
    Word h = __atomic_load_n(word, __ATOMIC_RELAXED);
    std::size_t offset = internal::kHeaderBytes * classes[0];
    CasResult stored =
        h == 0 ? CasResult::kStored
        : mode_ == IndexMode::kMmCid
            ? RseqOps::CompareAndStore<IndexMode::kMmCid, Word>(id, where_.base, kSlabShift,
                                                                offset, h, Word{0})
            : RseqOps::CompareAndStore<IndexMode::kCpuId, Word>(id, where_.base, kSlabShift,
                                                                offset, h, Word{0});
    if (stored == CasResult::kStored) {
      last[0] = h;
      return true;
    }
  }
  if (!remote_) return false;
  for (int i = 0; i < n; ++i) {
    last[i] = __atomic_exchange_n(Header(id, classes[i]), Word{0}, __ATOMIC_SEQ_CST);
  }
  for (;;) {
    if (!Fence()) return false;  // registered at Init, so this does not happen
    bool again = false;
    for (int i = 0; i < n; ++i) {
      if (__atomic_load_n(Header(id, classes[i]), __ATOMIC_SEQ_CST) != 0) {
        // A late commit wrote `current` alone into the zeroed word: the
        // current is the new one, the end is still the first swap's.
        Word late = __atomic_exchange_n(Header(id, classes[i]), Word{0}, __ATOMIC_SEQ_CST);
        last[i] = (last[i] & ~kCurrentMask) | (late & kCurrentMask);
        again = true;
      }
    }
    if (!again) return true;
  }
}

void PercpuSlab::Hand(int id, std::size_t cls, std::uint32_t from, std::uint32_t to, Sink sink,
                      void* context) const {
  void** slots = Slots(id);
  for (std::uint32_t s = from; s < to;) {
    int n = static_cast<int>(to - s < kSinkBatch ? to - s : kSinkBatch);
    sink(context, cls, slots + s, n);
    s += static_cast<std::uint32_t>(n);
  }
}

bool PercpuSlab::Evict(int id, std::size_t cls, std::uint32_t capacity, Sink sink,
                       void* context) {
  internal::IdLock lock(id);
  Word h;
  if (!Stop(id, &cls, 1, &h)) return false;
  std::uint32_t begin = begin_[cls];
  std::uint32_t current = h == 0 ? begin : Current(h);
  std::uint32_t end = h == 0 ? begin : End(h);
  std::uint32_t new_end = begin + capacity < end ? begin + capacity : end;
  if (current > new_end) Hand(id, cls, new_end, current, sink, context);
  std::uint32_t new_current = current < new_end ? current : new_end;
  __atomic_store_n(Header(id, cls), h == 0 ? Word{0} : PackHeader(new_current, new_end),
                   __ATOMIC_RELEASE);
  return true;
}

bool PercpuSlab::Drain(int id, Sink sink, void* context) {
  internal::IdLock lock(id);
  std::size_t classes[kMaxClasses];
  Word last[kMaxClasses];
  int n = 0;
  for (int cls = 0; cls < num_classes_; ++cls) {
    if (max_[cls] != 0) classes[n++] = static_cast<std::size_t>(cls);
  }
  if (!Stop(id, classes, n, last)) return false;
  for (int i = 0; i < n; ++i) {
    if (last[i] != 0) Hand(id, classes[i], begin_[classes[i]], Current(last[i]), sink, context);
  }
  // Every header of the id is 0 and stays 0 until the caller grows a class
  // again (capacity changes are the caller's to keep exclusive), and no
  // section writes under a header of 0. The region holds nothing anyone
  // needs, then: its pages go back to the OS, and read as zeros (headers 0,
  // markers 0) until the id is used again. An idle id costs no memory.
  madvise(Slots(id), kRegionBytes, MADV_DONTNEED);
  return true;
}

std::size_t PercpuSlab::ResidentBytes(int id) const {
  if (where_.base == nullptr || id < 0 || id >= num_ids_) return 0;
  unsigned char pages[kRegionBytes / kPageBytes];
  if (mincore(Slots(id), kRegionBytes, pages) != 0) return 0;
  std::size_t resident = 0;
  for (unsigned char page : pages) resident += (page & 1) ? kPageBytes : 0;
  return resident;
}

}  // namespace rseqmalloc::rseq
