#include "allocator/central/transfer_cache.h"

#include <cstring>

#include "allocator/base/size_classes.h"
#include "allocator/pages/system.h"

namespace rseqmalloc::internal {

namespace {

int Capacity(uint32_t cls, size_t batches, size_t max_bytes) {
  size_t batch = static_cast<size_t>(ClassToBatch(cls));
  size_t by_bytes = max_bytes / ClassToSize(cls);
  size_t cap = batch * batches;
  if (cap > by_bytes) cap = by_bytes;
  if (cap < 2 * batch) cap = 2 * batch;
  return static_cast<int>(cap);
}

// Batches are in pop order (element 0 is handed out first: the most
// recently freed), and the stack grows down from the end of its slots, its
// top at the lowest used slot: a batch goes in and comes out as one
// memcpy, in the order it came, and objects freed together (neighbours in
// memory, if they were allocated together) are allocated together again
// (docs/design.md, "Batches keep their order"). A stack growing up made
// both copies element-by-element reversals, the slowest part of a refill
// that streams through the cache.
void CopyBatch(void** to, void* const* from, int n) {
  // An empty take from a cache not yet set up has a null source, which
  // memcpy may not be given even for no bytes.
  if (n > 0) memcpy(to, from, sizeof(void*) * static_cast<size_t>(n));
}

}  // namespace

int TransferCache::CapacityFor(uint32_t cls) {
  return Capacity(cls, kTransferCacheBatches, kTransferCacheMaxBytes);
}

int TransferCache::GrownCapacityFor(uint32_t cls, int shards) {
  size_t bytes = kTransferCacheGrownBytes / static_cast<size_t>(shards < 1 ? 1 : shards);
  if (bytes < kTransferCacheShardGrownBytes) bytes = kTransferCacheShardGrownBytes;
  if (bytes > kTransferCacheGrownBytes) bytes = kTransferCacheGrownBytes;
  return Capacity(cls, kTransferCacheGrownBatches, bytes);
}

void TransferCache::Init(uint32_t cls, CentralFreeList* central, void** slots, int shards,
                         bool may_grow) {
  central_ = central;
  base_capacity_ = CapacityFor(cls);
  grown_capacity_ = SlotsFor(cls, shards, may_grow);
  slots_ = slots;
  end_ = slots + grown_capacity_;
  // Grown from the start: round trips begin with a program's first rounds,
  // and on many CPUs a shard grew only when every other shard was empty
  // too, which rarely happens. Idle intervals still halve it down to the
  // base capacity (ReturnIdle), and round trips grow it back. Big classes
  // wait for a burst instead (NoteFreesLocked).
  grows_on_bursts_ = ClassToSize(cls) > kTransferCacheBurstAboveBytes;
  capacity_ = grows_on_bursts_ ? base_capacity_ : grown_capacity_;
  ring_objects_ = kTransferCacheRingBatches * ClassToBatch(cls);
}

int TransferCache::TakeLocked(void** out, int n) {
  int take = n < count_ ? n : count_;
  CopyBatch(out, Top(), take);  // out[0]: the top
  SetCount(count_ - take);
  if (count_ < low_water_) low_water_ = count_;
  return take;
}

int TransferCache::TakeCached(void** out, int n) {
  // An empty neighbour costs a read, not a lock: a refill may look at
  // every other shard of its class. A stale read only skips a cache.
  if (__atomic_load_n(&count_, __ATOMIC_RELAXED) == 0) return 0;
  SpinLockHolder h(&lock_);
  int took = TakeLocked(out, n);
  lost_to_others_.store(lost_to_others_.load(std::memory_order_relaxed) + took,
                        std::memory_order_relaxed);
  return took;
}

// A refill that has to go to the central list after frees overflowed into
// it: objects went down to the spans and now come back up, a round trip a
// larger cache would have saved. Caller holds the lock.
void TransferCache::GrowForRoundTripLocked() {
  if (grows_on_bursts_ || !overflowed_ || capacity_ >= grown_capacity_) return;
  GrowLocked(capacity_ * 2 < grown_capacity_ ? capacity_ * 2 : grown_capacity_);
  overflowed_ = false;
}

// A big class's count of live objects wanders when a program replaces them
// at random, and every wander down is a round trip; only a program that
// frees many at once (and will want them back at once) frees this many in
// a row. The count restarts at each refill of this shard, not at a refill
// of another shard that takes from it: a CPU that only frees still frees
// in bursts.
void TransferCache::NoteFreesLocked(int n) {
  if (!grows_on_bursts_) return;
  freed_since_refill_ += n;
  if (freed_since_refill_ < kTransferCacheBurstObjects || capacity_ >= grown_capacity_) return;
  GrowLocked(grown_capacity_);
}

void TransferCache::GrowLocked(int capacity) {
  capacity_ = capacity;
  grew_ = true;  // ReturnIdle does not halve it in this interval
  ++grows_;
}

// The objects the central list is about to give are booked with the hold
// of the lock that found the shard short (and taken off again if the list
// gives fewer, which only happens out of memory): a third hold for the
// statistics cost two more atomic operations on every refill that reaches
// the central list.
int TransferCache::RemoveRange(void** out, int n, TransferCache* const* neighbours, int count) {
  if (n <= 0) return 0;
  lock_.Lock();
  int got = TakeLocked(out, n);
  freed_since_refill_ = 0;
  outstanding_ += got;
  if (got < n && count == 0) {  // no other shard has objects
    GrowForRoundTripLocked();
    BookFromCentralLocked(n - got);
  }
  lock_.Unlock();
  if (got == n) return got;
  if (count > 0) {
    int stolen = 0;
    for (int i = 0; i < count && got + stolen < n; ++i) {
      stolen += neighbours[i]->TakeCached(out + got + stolen, n - got - stolen);
    }
    got += stolen;
    lock_.Lock();
    outstanding_ += stolen;
    from_other_shards_ += static_cast<uint64_t>(stolen);
    if (got < n) {  // the other shards were short too
      GrowForRoundTripLocked();
      BookFromCentralLocked(n - got);
    }
    lock_.Unlock();
    if (got == n) return got;
  }
  int more = central_->RemoveRange(out + got, n - got);
  if (more < n - got) {
    SpinLockHolder h(&lock_);
    BookFromCentralLocked(more - (n - got));
  }
  return got + more;
}

void TransferCache::BookFromCentralLocked(int n) {
  outstanding_ += n;
  from_central_ += static_cast<uint64_t>(static_cast<int64_t>(n));
}

void TransferCache::InsertRange(void* const* items, int n) {
  if (n <= 0) return;
  lock_.Lock();
  NoteFreesLocked(n);  // first: the batch that completes a burst fits
  int room = capacity_ > count_ ? capacity_ - count_ : 0;
  int put = n < room ? n : room;
  CopyBatch(Top() - put, items, put);  // items[0] ends on top
  SetCount(count_ + put);
  outstanding_ -= n;
  if (lost_to_others_.load(std::memory_order_relaxed) != 0) {
    lost_to_others_.store(0, std::memory_order_relaxed);
  }
  if (put < n) {
    overflowed_ = true;
    to_central_ += static_cast<uint64_t>(n - put);
  }
  lock_.Unlock();
  if (put < n) central_->InsertRange(items + put, n - put);
}

void TransferCache::Drain() {
  Give(INT32_MAX);
  SpinLockHolder h(&lock_);
  ShrinkLocked(base_capacity_);
}

int TransferCache::GiveAll() {
  // An empty cache costs a read, not a lock (as in TakeCached).
  if (__atomic_load_n(&count_, __ATOMIC_RELAXED) == 0) return 0;
  return Give(INT32_MAX);
}

int TransferCache::ReturnIdle() {
  lock_.Lock();
  int idle = low_water_;
  low_water_ = count_;
  bool grew = grew_;
  grew_ = false;
  lock_.Unlock();
  if (idle == 0) return 0;
  int given = Give(idle);
  if (!grew) {
    // Idle objects all interval and no round trip: half the room will do.
    SpinLockHolder h(&lock_);
    ShrinkLocked(capacity_ / 2);
  }
  return given;
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
    int take = TakeLocked(buf, n - given < kBite ? n - given : kBite);
    lock_.Unlock();
    if (take == 0) break;
    central_->InsertRange(buf, take);
    given += take;
  }
  return given;
}

// Lowers the capacity toward `capacity` (never below the base or what is
// cached) and gives back the whole slot pages below the lowest slot it may
// now use (the stack grows down). Caller holds the lock: no other thread
// writes a slot below the top until it is dropped.
void TransferCache::ShrinkLocked(int capacity) {
  if (capacity < base_capacity_) capacity = base_capacity_;
  if (capacity < count_) capacity = count_;
  if (capacity >= capacity_) return;
  capacity_ = capacity;
  overflowed_ = false;
  SystemReleaseMetadata(slots_, sizeof(void*) * static_cast<size_t>(grown_capacity_ - capacity_));
}

void TransferCache::GetStats(TransferCacheStats* out) {
  SpinLockHolder h(&lock_);
  GetStatsLocked(out);
}

void TransferCache::GetStatsLocked(TransferCacheStats* out) const {
  out->objects = static_cast<uint64_t>(count_);
  out->capacity = static_cast<uint64_t>(capacity_);
  out->grows = grows_;
  out->outstanding = outstanding_;
  out->lock_contended = lock_.contended();
  out->from_other_shards = from_other_shards_;
  out->to_central = to_central_;
  out->from_central = from_central_;
}

}  // namespace rseqmalloc::internal
