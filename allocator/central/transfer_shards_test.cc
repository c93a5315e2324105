#include "allocator/central/transfer_shards.h"

#include <gtest/gtest.h>

#include <vector>

namespace rseqmalloc::internal {
namespace {

// The order a refill asks the other shards in, spelled out: shard + 1,
// shard + 2, ... wrapping around, those whose bit is set.
std::vector<int> ReferenceOrder(uint32_t occupied, int shard, int shards) {
  std::vector<int> order;
  for (int i = 1; i < shards; ++i) {
    int s = (shard + i) % shards;
    if ((occupied >> s) & 1) order.push_back(s);
  }
  return order;
}

TEST(TransferShards, AsksEveryOccupiedShardButItsOwnInWrappedOrder) {
  const int shards = kMaxTransferShards;
  for (uint32_t occupied = 0; occupied < (uint32_t{1} << shards); ++occupied) {
    for (int shard = 0; shard < shards; ++shard) {
      int ask[kMaxTransferShards - 1];
      int count = ShardsToAsk(occupied, shard, ask);
      std::vector<int> expected = ReferenceOrder(occupied, shard, shards);
      ASSERT_EQ(std::vector<int>(ask, ask + count), expected)
          << "occupied " << occupied << " shard " << shard;
    }
  }
}

// The word has room for 32 shards; the top bit and shard 31 work too.
TEST(TransferShards, HandlesTheTopBit) {
  int ask[31];
  ASSERT_EQ(ShardsToAsk(0xffffffffu, 31, ask), 31);
  for (int i = 0; i < 31; ++i) EXPECT_EQ(ask[i], i);
  ASSERT_EQ(ShardsToAsk(0x80000001u, 0, ask), 1);
  EXPECT_EQ(ask[0], 31);
  EXPECT_EQ(ShardsToAsk(0x80000000u, 31, ask), 0);
}

}  // namespace
}  // namespace rseqmalloc::internal
