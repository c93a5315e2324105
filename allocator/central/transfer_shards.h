// Which CPU shards of a class's transfer caches a refill asks, and in what
// order (docs/design.md, "Transfer caches per CPU shard").
//
// Each class has one transfer cache per shard of CPUs, up to
// kMaxTransferShards. A refill that its own shard cannot serve takes from
// the other shards before the central free list. With many shards, reading
// every other shard's count to find the ones that hold objects costs a
// cache line each (15 at 16 shards); instead each class keeps one word,
// bit s set while shard s holds objects (TransferCache::TrackOccupancy),
// and the refill reads that word once.
#ifndef RSEQMALLOC_ALLOCATOR_CENTRAL_TRANSFER_SHARDS_H_
#define RSEQMALLOC_ALLOCATOR_CENTRAL_TRANSFER_SHARDS_H_

#include <atomic>
#include <cstdint>

namespace rseqmalloc::internal {

// One shard per CPU up to this many CPUs; beyond it CPUs c, c + 16, ...
// share one.
inline constexpr int kMaxTransferShards = 16;

// Per class, on a line of its own: it changes whenever one of the class's
// shards empties or stops being empty.
struct alignas(64) OccupiedShards {
  std::atomic<uint32_t> bits{0};
};
static_assert(kMaxTransferShards <= 32, "one bit per shard in OccupiedShards::bits");

// Writes to `out` the shards whose bits are set in `occupied`, except
// `shard` itself, in the order a refill of `shard` asks them: the shards
// after it first, then wrapping around from 0, so that refills of
// different CPUs do not all start at the same neighbour. Returns how many;
// out needs room for kMaxTransferShards - 1.
inline int ShardsToAsk(uint32_t occupied, int shard, int* out) {
  int count = 0;
  uint32_t after = (occupied >> shard) >> 1;  // two shifts: shard may be 31
  uint32_t before = occupied & ((uint32_t{1} << shard) - 1);
  for (; after != 0; after &= after - 1) out[count++] = shard + 1 + __builtin_ctz(after);
  for (; before != 0; before &= before - 1) out[count++] = __builtin_ctz(before);
  return count;
}

}  // namespace rseqmalloc::internal

#endif  // RSEQMALLOC_ALLOCATOR_CENTRAL_TRANSFER_SHARDS_H_
