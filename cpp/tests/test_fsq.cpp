// FSQ id -> code values computed by hand from docs/DESIGN.md §3 (levels [8,5,5,5], basis [1,8,40,200]).
#include "fsq.h"
#include "mini_test.h"
#include "oat_edge/policy.h"

using oat_edge::detail::Fsq;

static void expect_codes(int64_t id, std::vector<float> want) {
  std::vector<float> got(4);
  oat_edge::fsq_ids_to_codes({8, 5, 5, 5}, &id, 1, got.data());
  for (int j = 0; j < 4; ++j) CHECK_EQ(got[j], want[j]);
}

TEST(fsq_hand_computed_codes) {
  expect_codes(0, {-1.f, -1.f, -1.f, -1.f});    // all digits 0
  expect_codes(1, {-0.75f, -1.f, -1.f, -1.f});  // digit0 = 1 -> (1-4)/4
  expect_codes(8, {-1.f, -0.5f, -1.f, -1.f});   // digit1 = 1 -> (1-2)/2
  expect_codes(340, {0.f, 0.f, 0.5f, -0.5f});   // 340 = 4 + 2*8 + 3*40 + 1*200
  expect_codes(999, {0.75f, 1.f, 1.f, 1.f});    // last id: digits 7,4,4,4
}

TEST(fsq_round_trip_all_ids) {
  Fsq fsq({8, 5, 5, 5});
  CHECK_EQ(fsq.codebook_size(), int64_t(1000));
  for (int64_t id = 0; id < 1000; ++id) {
    float c[4];
    fsq.ids_to_codes(&id, 1, c);
    for (float x : c) CHECK(x >= -1.f && x <= 1.f);
    CHECK_EQ(fsq.code_to_id(c), id);
  }
}

TEST(fsq_rejects_bad_ids_and_levels) {
  int64_t bad = 1000;
  float c[4];
  CHECK_THROWS(oat_edge::InputError, oat_edge::fsq_ids_to_codes({8, 5, 5, 5}, &bad, 1, c), "outside [0, 1000)");
  bad = -1;
  CHECK_THROWS(oat_edge::InputError, oat_edge::fsq_ids_to_codes({8, 5, 5, 5}, &bad, 1, c), "ids[0] = -1");
  CHECK_THROWS(oat_edge::InputError, Fsq({8, 1}), ">= 2");
}

MINI_TEST_MAIN()
