// KV slot writing: new [L,B,H,1,Dh] lands in slot t of past [L,B,H,K,Dh], nothing else changes.
#include "kv_cache.h"
#include "mini_test.h"

using oat_edge::detail::KvCache;
using oat_edge::detail::KvDims;

TEST(write_slot_places_new_kv_at_t) {
  const int L = 2, H = 3, K = 4, Dh = 2;
  KvCache kv(KvDims{L, H, K, Dh, 2});
  CHECK(kv.reserve(2));
  CHECK(!kv.reserve(1));  // never shrinks / reallocates for smaller batches
  for (int B : {2, 1}) {
    std::fill(kv.past_k(), kv.past_k() + kv.past_count(2), -1.f);
    std::fill(kv.past_v(), kv.past_v() + kv.past_count(2), -1.f);
    for (size_t i = 0; i < kv.new_count(B); ++i) {
      kv.new_k()[i] = float(i);
      kv.new_v()[i] = float(1000 + i);
    }
    const int t = 2;
    kv.write_slot(B, t);
    for (int l = 0; l < L; ++l)
      for (int b = 0; b < B; ++b)
        for (int h = 0; h < H; ++h)
          for (int s = 0; s < K; ++s)
            for (int d = 0; d < Dh; ++d) {
              size_t row = (size_t(l) * B + b) * H + h;
              float pk = kv.past_k()[(row * K + s) * Dh + d], pv = kv.past_v()[(row * K + s) * Dh + d];
              if (s == t) {
                CHECK_EQ(pk, float(row * Dh + d));
                CHECK_EQ(pv, float(1000 + row * Dh + d));
              } else {
                CHECK_EQ(pk, -1.f);
                CHECK_EQ(pv, -1.f);
              }
            }
  }
}

TEST(reserve_grows_and_zeroes) {
  KvCache kv(KvDims{1, 1, 2, 2, 1});
  CHECK(kv.reserve(1));
  CHECK(kv.reserve(3));
  CHECK_EQ(kv.capacity(), 3);
  for (size_t i = 0; i < kv.past_count(3); ++i) CHECK_EQ(kv.past_k()[i], 0.f);  // never NaN garbage
}

MINI_TEST_MAIN()
