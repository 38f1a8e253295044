// Named inputs through the C++ API, on a camera bundle: OAT_EDGE_TEST_PIXEL_BUNDLE=<dir> (written by
// tests/fixtures/tiny_pixel_bundle.py: observation.state [5] and uint8 cameras corner and topview
// [32, 32, 3]; skipped, exit 77, when unset). ORT library: argv[1], else OAT_EDGE_ORT_LIBRARY, else
// the system search. tests/runtime/test_named_inputs.py checks the same path against onnxruntime.
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "mini_test.h"
#include "oat_edge/policy.h"

using namespace oat_edge;

static std::string g_bundle, g_ort;

static Policy& policy() {
  static Policy p(g_bundle, [] {
    RuntimeOptions o;
    o.ort_library = g_ort;
    return o;
  }());
  return p;
}

// One batch of raw inputs in the caller's buffers, and named views over them.
struct Batch {
  std::vector<float> state;
  std::vector<uint8_t> corner, top;
  int B, S = 2, D = 5, H = 32, W = 32;
  Batch(int batch, unsigned seed) : B(batch) {
    state.resize(size_t(B) * S * D);
    corner.resize(size_t(B) * S * H * W * 3);
    top.resize(corner.size());
    uint32_t x = seed * 2654435761u + 1;
    auto next = [&] { return x = x * 1664525u + 1013904223u; };
    for (auto& v : state) v = float(int(next() >> 20) - 2048) / 1024.f;
    for (auto& v : corner) v = uint8_t(next() >> 24);
    for (auto& v : top) v = uint8_t(next() >> 24);
  }
  TensorView state_view() const { return TensorView(state.data(), {B, S, D}); }
  TensorView frame_view(const std::vector<uint8_t>& f) const {
    return TensorView(f.data(), DType::UInt8, {B, S, H, W, 3});
  }
  std::vector<NamedTensorView> views() const {
    return {{"observation.state", state_view()},
            {"observation.images.corner", frame_view(corner)},
            {"observation.images.topview", frame_view(top)}};
  }
  // Row b alone, as a batch of one.
  Batch row(int b) const {
    Batch r(1, 0);
    const size_t ns = size_t(S) * D, nf = size_t(S) * H * W * 3;
    r.state.assign(state.begin() + b * ns, state.begin() + (b + 1) * ns);
    r.corner.assign(corner.begin() + b * nf, corner.begin() + (b + 1) * nf);
    r.top.assign(top.begin() + b * nf, top.begin() + (b + 1) * nf);
    return r;
  }
};

static ActOptions greedy() {
  ActOptions o;
  o.temperature = 0;
  return o;
}

static std::vector<float> act(const Batch& x) {
  const auto& in = policy().info();
  std::vector<float> out(size_t(x.B) * in.horizon * in.action_dim);
  policy().act(x.views(), out, greedy());
  return out;
}

TEST(info_lists_the_spec_inputs) {
  const auto& in = policy().info();
  CHECK_EQ(in.inputs.size(), size_t(3));
  CHECK(in.inputs[0].name == "observation.state" && in.inputs[0].dtype == DType::Float32);
  CHECK(in.inputs[0].shape == std::vector<int64_t>({2, 5}));
  CHECK(in.inputs[1].name == "observation.images.corner" && in.inputs[1].dtype == DType::UInt8);
  CHECK(in.inputs[2].shape == std::vector<int64_t>({2, 32, 32, 3}));
  CHECK(in.observation.find("\"observation.images.topview\"") != std::string::npos);
  CHECK(in.normalization.obs_scale.empty() && in.normalization.obs_offset.empty());
}

TEST(batch_rows_match_single_calls_and_results_are_deterministic) {
  const Batch x(3, 1);
  const auto all = act(x);
  CHECK(all == act(x));
  const size_t n = all.size() / 3;
  for (int b = 0; b < 3; ++b) {
    const auto one = act(x.row(b));
    for (size_t i = 0; i < n; ++i) CHECK_NEAR(one[i], all[b * n + i], 1e-5);
  }
  for (float v : all) CHECK(std::isfinite(v));
}

TEST(every_input_is_read_and_key_order_does_not_matter) {
  const Batch x(1, 2);
  const auto base = act(x);
  auto v = x.views();
  std::vector<NamedTensorView> reversed(v.rbegin(), v.rend());
  std::vector<float> out(base.size());
  policy().act(reversed, out, greedy());
  CHECK(out == base);
  // Each input reaches the graph: changing it alone changes the tokens of some of a few rows.
  const Batch y(4, 5);
  const int K = policy().info().num_tokens;
  std::vector<int64_t> ids(size_t(4) * K), ids_other(ids.size());
  policy().generate(y.views(), ids, greedy());
  for (int which = 0; which < 3; ++which) {
    Batch other = y;
    if (which == 0) {
      for (auto& s : other.state) s = -s + 2.f;
    } else {  // a darker, inverted frame of one camera
      std::vector<uint8_t>& frames = which == 1 ? other.corner : other.top;
      for (auto& px : frames) px = uint8_t((255 - px) / 2);
    }
    policy().generate(other.views(), ids_other, greedy());
    CHECK(ids != ids_other);
  }
}

TEST(buffers_reused_between_calls_are_read_anew) {
  // The runtime keeps its ORT view of a buffer the caller passes again: the values are still read
  // at each call, and another shape over the same memory is another view.
  Batch x(2, 6);
  act(x);
  for (auto& px : x.top) px = uint8_t(px ^ 0x5a);  // same buffers, new contents
  for (auto& v : x.state) v = -v;
  const auto in_place = act(x);
  const Batch copy = x;  // the same values in fresh buffers
  CHECK(in_place == act(copy));
  Batch first_row = x;
  first_row.B = 1;  // a batch-1 view of the same memory
  const auto one = act(first_row);
  for (size_t i = 0; i < one.size(); ++i) CHECK_NEAR(one[i], in_place[i], 1e-5);
}

TEST(generate_then_detokenize_equals_act) {
  const Batch x(2, 3);
  const auto& in = policy().info();
  std::vector<int64_t> ids(size_t(2) * in.num_tokens);
  CHECK_EQ(policy().generate(x.views(), ids, greedy()), in.num_tokens);
  std::vector<float> out(size_t(2) * in.horizon * in.action_dim);
  policy().detokenize(TensorView(ids.data(), {2, in.num_tokens}), out);
  CHECK(out == act(x));
}

TEST(bad_named_inputs_are_input_errors_naming_the_key) {
  Policy& p = policy();
  const Batch x(2, 4);
  std::vector<float> out(size_t(2) * p.info().horizon * p.info().action_dim);
  auto v = x.views();
  auto without = [&](size_t i) {
    auto w = v;
    w.erase(w.begin() + i);
    return w;
  };
  CHECK_THROWS(InputError, p.act(without(2), out), "missing 'observation.images.topview'");
  auto extra = v;
  extra.push_back({"observation.images.wrist", v[1].view});
  CHECK_THROWS(InputError, p.act(extra, out), "unknown 'observation.images.wrist'");
  auto twice = v;
  twice.push_back(v[1]);
  CHECK_THROWS(InputError, p.act(twice, out), "given twice 'observation.images.corner'");
  auto changed = [&](size_t i, TensorView t) {
    auto w = v;
    w[i].view = t;
    return w;
  };
  const std::vector<float> float_frames(x.corner.size());
  CHECK_THROWS(InputError, p.act(changed(1, TensorView(float_frames.data(), {2, 2, 32, 32, 3})), out),
               "observation.images.corner: expected uint8 [B, 2, 32, 32, 3], got float32 [2, 2, 32, 32, 3] (pass the "
               "camera's raw uint8 frames");
  CHECK_THROWS(InputError, p.act(changed(2, TensorView(x.top.data(), DType::UInt8, {2, 2, 3, 32, 32})), out),
               "observation.images.topview: expected uint8 [B, 2, 32, 32, 3], got uint8 [2, 2, 3, 32, 32] (channels "
               "first");
  CHECK_THROWS(InputError, p.act(changed(1, TensorView(x.corner.data(), DType::UInt8, {1, 4, 32, 32, 3})), out),
               "history of 4 frames, this bundle reads n_obs_steps = 2");
  CHECK_THROWS(InputError, p.act(changed(1, TensorView(x.corner.data(), DType::UInt8, {2, 2, 16, 64, 3})), out),
               "got uint8 [2, 2, 16, 64, 3]");
  CHECK_THROWS(InputError, p.act(changed(2, TensorView(x.top.data(), DType::UInt8, {1, 2, 32, 32, 3})), out),
               "observation.images.topview: batch 1, but observation.state has batch 2");
  CHECK_THROWS(InputError, p.act(changed(0, TensorView(static_cast<const float*>(nullptr), {2, 2, 5})), out),
               "observation.state: expected a valid buffer, got a null pointer");
  Batch nan = x;
  nan.state[7] = NAN;
  CHECK_THROWS(InputError, p.act(nan.views(), out), "observation.state[0][1][2] (flat index 7) is NaN");
  CHECK_THROWS(InputError, p.act(x.state_view(), out),
               "obs: this bundle reads the named inputs [observation.state, "
               "observation.images.corner, observation.images.topview]");
  std::vector<float> short_out(out.size() - 1);
  CHECK_THROWS(InputError, p.act(v, short_out), "out: expected a buffer of");
  CHECK(act(x) == act(x));  // still usable after the errors
}

int main(int argc, char** argv) {
  const char* b = std::getenv("OAT_EDGE_TEST_PIXEL_BUNDLE");
  if (!b || !*b) {
    std::printf(
        "OAT_EDGE_TEST_PIXEL_BUNDLE not set: skipping the named-input tests (write one with "
        "tests/fixtures/tiny_pixel_bundle.py DIR)\n");
    return mini_test::kSkip;
  }
  g_bundle = b;
  if (argc > 1) g_ort = argv[1];
  if (const char* e = std::getenv("OAT_EDGE_ORT_LIBRARY"); e && *e && g_ort.empty()) g_ort = e;
  const auto& in = policy().info().inputs;  // every test indexes these three inputs
  if (in.size() != 3 || in[1].name != "observation.images.corner" || in[2].name != "observation.images.topview") {
    std::printf(
        "%s is not tiny_pixel_bundle.py's default bundle (state, corner, topview): write one with "
        "tests/fixtures/tiny_pixel_bundle.py DIR\n",
        b);
    return 1;
  }
  return mini_test::run_all();
}
