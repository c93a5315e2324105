#include "allocator/central/transfer_cache.h"

#include <cstring>

#include "allocator/base/size_classes.h"

namespace rseqmalloc::internal {

int TransferCache::CapacityFor(uint32_t cls) {
  size_t batch = static_cast<size_t>(ClassToBatch(cls));
  size_t by_bytes = kTransferCacheMaxBytes / ClassToSize(cls);
  size_t cap = batch * kTransferCacheBatches;
  if (cap > by_bytes) cap = by_bytes;
  if (cap < 2 * batch) cap = 2 * batch;
  return static_cast<int>(cap);
}

void TransferCache::Init(uint32_t cls, CentralFreeList* central, void** slots) {
  central_ = central;
  slots_ = slots;
  capacity_ = CapacityFor(cls);
}

int TransferCache::RemoveRange(void** out, int n) {
  if (n <= 0) return 0;
  lock_.Lock();
  int take = n < count_ ? n : count_;
  count_ -= take;
  if (count_ < low_water_) low_water_ = count_;
  memcpy(out, slots_ + count_, sizeof(void*) * static_cast<size_t>(take));
  outstanding_ += take;
  lock_.Unlock();
  if (take == n) return take;
  int more = central_->RemoveRange(out + take, n - take);
  if (more > 0) {
    lock_.Lock();
    outstanding_ += more;
    lock_.Unlock();
  }
  return take + more;
}

void TransferCache::InsertRange(void* const* items, int n) {
  if (n <= 0) return;
  lock_.Lock();
  int room = capacity_ - count_;
  int put = n < room ? n : room;
  memcpy(slots_ + count_, items, sizeof(void*) * static_cast<size_t>(put));
  count_ += put;
  outstanding_ -= n;
  lock_.Unlock();
  if (put < n) central_->InsertRange(items + put, n - put);
}

void TransferCache::Drain() { Give(INT32_MAX); }

int TransferCache::ReturnIdle() {
  lock_.Lock();
  int idle = low_water_;
  low_water_ = count_;
  lock_.Unlock();
  if (idle == 0) return 0;
  return Give(idle);
}

// Sends up to n cached objects (the oldest stay: the top of the stack is
// what the next RemoveRange takes) to the central free list, in small bites
// so the lock is never held for long and the stack buffer stays small.
int TransferCache::Give(int n) {
  constexpr int kBite = 64;
  void* buf[kBite];
  int given = 0;
  while (given < n) {
    lock_.Lock();
    int take = count_ < kBite ? count_ : kBite;
    if (take > n - given) take = n - given;
    count_ -= take;
    if (count_ < low_water_) low_water_ = count_;
    memcpy(buf, slots_ + count_, sizeof(void*) * static_cast<size_t>(take));
    lock_.Unlock();
    if (take == 0) break;
    central_->InsertRange(buf, take);
    given += take;
  }
  return given;
}

void TransferCache::GetStats(TransferCacheStats* out) {
  SpinLockHolder h(&lock_);
  GetStatsLocked(out);
}

void TransferCache::GetStatsLocked(TransferCacheStats* out) const {
  out->objects = static_cast<uint64_t>(count_);
  out->capacity = static_cast<uint64_t>(capacity_);
  out->outstanding = outstanding_;
  out->lock_contended = lock_.contended();
}

}  // namespace rseqmalloc::internal
