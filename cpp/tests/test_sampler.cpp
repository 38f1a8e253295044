// Sampler + splitmix64 (docs/DESIGN.md §7). The RNG numbers are pinned identically in the Python tests.
#include <cmath>

#include "mini_test.h"
#include "oat_edge/policy.h"
#include "sampler.h"

using oat_edge::detail::Sampler;
using oat_edge::detail::SplitMix64;

TEST(splitmix64_first_outputs) {
  SplitMix64 a(0);
  CHECK(a.next() == 0xE220A8397B1DCDAFULL);
  CHECK(a.next() == 0x6E789E6AA1B965F4ULL);
  CHECK(a.next() == 0x06C45D188009454FULL);
  SplitMix64 b(1234567);
  CHECK(b.next() == 6457827717110365317ULL);  // 0x599ED017FB08FC85
  CHECK(b.next() == 3203168211198807973ULL);  // 0x2C73F08458540FA5
  CHECK(b.next() == 9817491932198370423ULL);  // 0x883EBCE5A3F27C77
  SplitMix64 u(0);
  CHECK(u.uniform() == double(0xE220A8397B1DCDAFULL >> 11) * 0x1.0p-53);  // 0.8833108082136426
}

static std::vector<float> flat_logits(float fill = -5.f) { return std::vector<float>(1001, fill); }

TEST(greedy_tie_takes_lowest_id) {
  Sampler s(1000);
  auto l = flat_logits();
  l[7] = 2.f;
  l[3] = 2.f;
  l[900] = 2.f;
  l[1000] = 50.f;  // BOS column is never sampled
  SplitMix64 rng(1);
  CHECK_EQ(s.sample(l.data(), 0.0, 10, rng), int64_t(3));
  CHECK_EQ(s.greedy(l.data()), int64_t(3));
  SplitMix64 fresh(1);
  CHECK(rng.next() == fresh.next());  // greedy draws nothing
}

TEST(top_k_1_equals_greedy) {
  Sampler s(1000);
  auto l = flat_logits();
  for (int i = 0; i < 1000; ++i) l[i] = std::sin(0.37f * i);
  SplitMix64 rng(42);
  for (double t : {0.5, 1.0, 3.0}) CHECK_EQ(s.sample(l.data(), t, 1, rng), s.greedy(l.data()));
}

TEST(hand_computed_weighted_pick) {
  // candidates (top_k=2): id 1 (logit ln 3) then id 0 (logit 0); weights 1, 1/3; total 4/3.
  // seed 0: u = 0.88331 -> r = 1.1777 > 1 -> id 0.   seed 1: u = 0.56656 -> r = 0.7554 < 1 -> id 1.
  Sampler s(1000);
  auto l = flat_logits();
  l[0] = 0.f;
  l[1] = std::log(3.f);
  SplitMix64 r0(0), r1(1);
  CHECK_EQ(s.sample(l.data(), 1.0, 2, r0), int64_t(0));
  CHECK_EQ(s.sample(l.data(), 1.0, 2, r1), int64_t(1));
}

TEST(sampling_stays_in_top_k_and_codebook) {
  Sampler s(1000);
  auto l = flat_logits();
  for (int i = 0; i < 1000; ++i) l[i] = float(i % 17);  // ids with i%17==16 are the 58 best
  l[1000] = 100.f;
  SplitMix64 rng(7);
  for (int n = 0; n < 2000; ++n) {
    int64_t id = s.sample(l.data(), 1.0, 10, rng);
    CHECK(id >= 0 && id < 1000 && id % 17 == 16 && id < 170);  // top 10 = lowest ten such ids
  }
  for (int n = 0; n < 200; ++n) {
    int64_t id = s.sample(l.data(), 2.0, 0, rng);  // top_k = 0: all candidates, BOS excluded
    CHECK(id >= 0 && id < 1000);
  }
}

TEST(non_finite_logits_are_a_bundle_error) {
  Sampler s(1000);
  auto l = flat_logits();
  l[5] = NAN;
  SplitMix64 rng(0);
  CHECK_THROWS(oat_edge::BundleError, s.sample(l.data(), 1.0, 10, rng), "non-finite logit (id 5)");
}

MINI_TEST_MAIN()
