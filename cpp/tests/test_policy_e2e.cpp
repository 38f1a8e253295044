// End-to-end on a real bundle: OAT_EDGE_TEST_BUNDLE=<dir> (skipped, exit 77, when unset).
// ORT library: argv[1] (-DOAT_EDGE_TEST_ORT_LIBRARY), else OAT_EDGE_ORT_LIBRARY (set by make
// test-cpp / make asan), else the system search of ort_loader.
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <thread>

#include "mini_test.h"
#include "oat_edge/policy.h"
#include "oat_edge/realtime.h"

using namespace oat_edge;

static std::string g_bundle, g_ort;

static RuntimeOptions opts(int max_batch = 1) {
  RuntimeOptions o;
  o.ort_library = g_ort;
  o.max_batch = max_batch;
  return o;
}

static Policy& shared_policy() {
  static Policy p(g_bundle, opts());
  return p;
}

// The [B, n_obs_steps, obs_dim] view of a flat observation buffer (B from its size).
static TensorView obs_view(const Policy& p, const std::vector<float>& obs) {
  const auto& in = p.info();
  return TensorView(obs.data(), {int64_t(obs.size()) / (in.n_obs_steps * in.obs_dim), in.n_obs_steps, in.obs_dim});
}

static std::vector<float> obs_for(const PolicyInfo& in, int batch, float phase = 0.f) {
  std::vector<float> o(size_t(batch) * in.n_obs_steps * in.obs_dim);
  for (size_t i = 0; i < o.size(); ++i) o[i] = std::sin(0.1f * float(i) + phase);
  return o;
}

TEST(act_shapes_bounds_and_determinism) {
  Policy& p = shared_policy();
  const auto& in = p.info();
  CHECK(in.provider == "CPUExecutionProvider");
  auto obs = obs_for(in, 1);
  const size_t n = size_t(in.horizon) * in.action_dim;
  std::vector<float> a(n), b(n);
  for (int k = 1; k <= in.num_tokens; ++k) {
    ActOptions o;
    o.max_tokens = k;
    o.seed = 123;
    ActStats st;
    p.act(obs_view(p, obs), a, o, &st);
    CHECK_EQ(st.tokens_used, k);
    CHECK(st.total_ms > 0 && st.overhead_ms >= -0.01);
    p.act(obs_view(p, obs), b, o);
    CHECK(a == b);  // same seed, same chunk
    for (size_t i = 0; i < n; ++i) CHECK(std::isfinite(a[i]));
  }
}

TEST(generate_then_detokenize_equals_act) {
  Policy& p = shared_policy();
  const auto& in = p.info();
  const int B = 3;  // > max_batch: the workspace grows once
  auto obs = obs_for(in, B, 0.5f);
  std::vector<int64_t> ids(size_t(B) * in.num_tokens);
  ActOptions o;
  o.max_tokens = 4;
  o.seed = 99;
  CHECK_EQ(p.generate(obs_view(p, obs), ids, o), 4);
  std::vector<int64_t> prefix;
  for (int b = 0; b < B; ++b)
    for (int t = 0; t < in.num_tokens; ++t) {
      int64_t id = ids[size_t(b) * in.num_tokens + t];
      if (t < 4) {
        CHECK(id >= 0 && id < in.codebook_size);
        prefix.push_back(id);
      } else {
        CHECK_EQ(id, int64_t(-1));
      }
    }
  const size_t n = size_t(B) * in.horizon * in.action_dim;
  std::vector<float> via_ids(n), via_act(n);
  p.detokenize(TensorView(prefix.data(), {B, 4}), via_ids);
  p.act(obs_view(p, obs), via_act, o);
  CHECK(via_ids == via_act);
}

TEST(greedy_equals_top_k_1_and_ignores_seed) {
  Policy& p = shared_policy();
  auto obs = obs_for(p.info(), 1);
  std::vector<int64_t> a(p.info().num_tokens), b(p.info().num_tokens);
  ActOptions g;
  g.temperature = 0;
  g.seed = 1;
  ActOptions k1;
  k1.top_k = 1;
  k1.seed = 2;
  p.generate(obs_view(p, obs), a, g);
  p.generate(obs_view(p, obs), b, k1);
  CHECK(a == b);
}

TEST(input_errors) {
  Policy& p = shared_policy();
  const auto& in = p.info();
  auto obs = obs_for(in, 1);
  std::vector<float> out(size_t(in.horizon) * in.action_dim);
  ActOptions o;
  CHECK_THROWS(InputError, p.act(TensorView(obs.data(), {0, in.n_obs_steps, in.obs_dim}), out), "obs: empty batch");
  CHECK_THROWS(InputError, p.act(TensorView(obs.data(), {1, in.obs_dim, in.n_obs_steps}), out),
               "obs: expected float32 [B, " + std::to_string(in.n_obs_steps) + ", " + std::to_string(in.obs_dim) + "]");
  CHECK_THROWS(InputError, p.act(TensorView(obs.data(), DType::Float64, {1, in.n_obs_steps, in.obs_dim}), out),
               "got float64");
  std::vector<float> short_out(out.size() - 1);
  CHECK_THROWS(InputError, p.act(obs_view(p, obs), short_out), "out: expected a buffer of");
  auto bad = obs;
  bad[in.obs_dim + 2] = NAN;
  CHECK_THROWS(InputError, p.act(obs_view(p, bad), out), "obs[0][1][2]");
  bad = obs;
  bad[1] = INFINITY;
  CHECK_THROWS(InputError, p.act(obs_view(p, bad), out), "is Inf");
  o.max_tokens = in.num_tokens + 1;
  CHECK_THROWS(InputError, p.act(obs_view(p, obs), out, o), "max_tokens: expected 1..");
  o = {};
  o.temperature = -0.5;
  CHECK_THROWS(InputError, p.act(obs_view(p, obs), out, o), "temperature");
  o.temperature = NAN;
  CHECK_THROWS(InputError, p.act(obs_view(p, obs), out, o), "temperature");
  o = {};
  o.top_k = in.codebook_size + 1;
  CHECK_THROWS(InputError, p.act(obs_view(p, obs), out, o), "top_k");
  int64_t ids[2] = {5, in.codebook_size};
  CHECK_THROWS(InputError, p.detokenize(TensorView(ids, {1, 2}), out), "ids[0][1]");
  CHECK_THROWS(InputError, p.detokenize(TensorView(ids, {1, 0}), out), "k (ids.shape[1]): expected 1..");
  CHECK_THROWS(InputError, p.act(TensorView(static_cast<const float*>(nullptr), {1, in.n_obs_steps, in.obs_dim}), out),
               "null pointer");
}

TEST(anytime_budget_stops_early_but_not_before_min_tokens) {
  Policy& p = shared_policy();
  auto obs = obs_for(p.info(), 1);
  std::vector<float> out(size_t(p.info().horizon) * p.info().action_dim);
  ActOptions o;
  o.latency_budget_ms = 1e-6;  // impossible: stops as soon as allowed
  o.min_tokens = 2;
  ActStats st;
  p.act(obs_view(p, obs), out, o, &st);
  CHECK_EQ(st.tokens_used, 2);
  o.latency_budget_ms = 1e6;  // generous: all tokens
  p.act(obs_view(p, obs), out, o, &st);
  CHECK_EQ(st.tokens_used, p.info().num_tokens);
}

TEST(concurrent_act_is_serialized_and_deterministic) {
  Policy& p = shared_policy();
  auto obs = obs_for(p.info(), 1);
  const size_t n = size_t(p.info().horizon) * p.info().action_dim;
  std::vector<float> ref(n);
  ActOptions o;
  o.seed = 5;
  p.act(obs_view(p, obs), ref, o);
  int mismatches = 0;
  std::vector<std::thread> ts;
  std::mutex mu;
  for (int i = 0; i < 4; ++i)
    ts.emplace_back([&] {
      std::vector<float> out(n);
      for (int r = 0; r < 20; ++r) {
        p.act(obs_view(p, obs), out, o);
        if (out != ref) {
          std::lock_guard<std::mutex> l(mu);
          ++mismatches;
        }
      }
    });
  for (auto& t : ts) t.join();
  CHECK_EQ(mismatches, 0);
}

TEST(tokenize_round_trip_shape) {
  Policy& p = shared_policy();
  const auto& in = p.info();
  std::vector<float> chunk(size_t(in.horizon) * in.action_dim);
  ActOptions o;
  o.seed = 3;
  p.act(obs_view(p, obs_for(in, 1)), chunk, o);
  std::vector<int64_t> ids(in.num_tokens, -7);
  try {
    p.tokenize(TensorView(chunk.data(), {1, in.horizon, in.action_dim}), ids);
    for (auto id : ids) CHECK(id >= 0 && id < in.codebook_size);
  } catch (const InputError& e) { CHECK(std::string(e.what()).find("no encoder graph") != std::string::npos); }
}

TEST(optimized_model_cache_round_trip) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / "oat_edge_test_opt_cache";
  fs::remove_all(dir);
  RuntimeOptions o = opts();
  o.optimized_model_dir = dir.string();
  auto obs = obs_for(shared_policy().info(), 1);
  const size_t n = size_t(shared_policy().info().horizon) * shared_policy().info().action_dim;
  std::vector<float> ref(n), first(n), cached(n);
  ActOptions a;
  a.seed = 11;
  shared_policy().act(obs_view(shared_policy(), obs), ref, a);
  {
    Policy writes(g_bundle, o);  // optimizes and saves
    writes.act(obs_view(writes, obs), first, a);
  }
  int cached_files = 0;
  for (const auto& e : fs::directory_iterator(dir))
    cached_files += e.path().filename().string().rfind("model.CPUExecutionProvider.", 0) == 0;
  CHECK_EQ(cached_files, 1);
  Policy reads(g_bundle, o);  // loads the cached graphs (manifest metadata must survive)
  reads.act(obs_view(reads, obs), cached, a);
  for (size_t i = 0; i < n; ++i) {
    CHECK_NEAR(first[i], ref[i], 1e-5);
    CHECK_NEAR(cached[i], ref[i], 1e-5);
  }
  fs::remove_all(dir);
}

TEST(load_errors) {
  CHECK_THROWS(BundleError, Policy("/nonexistent/oat_bundle", opts()), "does not exist");
  RuntimeOptions o = opts();
  o.device = "tpu";
  CHECK_THROWS(InputError, Policy(g_bundle, o), "device: expected 'cpu', 'cuda' or 'tensorrt'");
  o.device = "cuda";
  try {  // CPU-only ORT: RuntimeLoadError listing providers; GPU ORT: loads on CUDA
    Policy gpu(g_bundle, o);
    CHECK(gpu.info().provider == "CUDAExecutionProvider");
  } catch (const RuntimeLoadError& e) {
    CHECK(std::string(e.what()).find("Available providers: ") != std::string::npos);
    o.allow_cpu_fallback = true;
    Policy fb(g_bundle, o);
    CHECK(fb.info().provider == "CPUExecutionProvider");
  }
  // corrupt entry file, then a valid ONNX graph without the manifest metadata
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / "oat_edge_test_bad_bundle";
  fs::remove_all(dir);
  fs::create_directories(dir);
  { std::ofstream(dir / "model.onnx") << "garbage"; }
  CHECK_THROWS(BundleError, Policy(dir.string(), opts()), "could not load graph 'model.onnx'");
  fs::copy_file(fs::path(g_bundle) / "policy_prefill.onnx", dir / "model.onnx", fs::copy_options::overwrite_existing);
  CHECK_THROWS(BundleError, Policy(dir.string(), opts()), "has no 'oat_edge.manifest' metadata");
  fs::remove_all(dir);
  o = opts();
  o.ort_library = "/nonexistent/libonnxruntime.so.1";
  CHECK_THROWS(RuntimeLoadError, Policy(g_bundle, o), "already loaded");  // one ORT per process
}

// After warm-up, an act() makes ORT allocate (a few objects per graph node) but nothing reaches
// the kernel: the calling thread takes no page fault and never sleeps. Memory is not locked here
// (that needs privileges CI lacks); no-trim/no-mmap malloc is what keeps the pages in the process.
TEST(no_page_fault_or_sleep_per_act_after_warm_up) {
  const RealtimeMemoryStatus rt = prepare_realtime_memory(false);
  CHECK(!rt.locked);
  CHECK(rt.message.find("not requested") != std::string::npos);
#if defined(__SANITIZE_ADDRESS__)
  // ASan replaces malloc (mallopt does not apply) and quarantines freed blocks: faults are expected.
  CHECK(!rt.malloc_pinned);
  return;
#endif
  CHECK(rt.malloc_pinned);
  Policy& p = shared_policy();
  const auto& in = p.info();
  auto obs = obs_for(in, 1, 0.3f);
  std::vector<float> out(size_t(in.horizon) * in.action_dim);
  ActOptions o;
  o.max_tokens = in.num_tokens;
  o.seed = 5;
  for (int i = 0; i < 20; ++i) p.act(obs_view(p, obs), out, o);
  const ThreadFaults f0 = thread_faults();
  for (int i = 0; i < 300; ++i) p.act(obs_view(p, obs), out, o);
  const ThreadFaults f1 = thread_faults();
  CHECK_EQ(f1.minor - f0.minor, 0);
  CHECK_EQ(f1.major - f0.major, 0);
  CHECK_EQ(f1.voluntary_switches - f0.voluntary_switches, 0);
}

// The constructor's warm-up (RuntimeOptions::warmup, on by default) takes ORT's first-run
// allocations out of the first act(): a fresh Policy's first greedy and first sampled act fault no
// page (7 faults here with warmup = false), and the warm-up leaves step_runs at 0.
// Under user-mode emulation (cross builds run by qemu) the faults counted are the emulator's,
// which translates code on its first run: a fresh Policy's first sampled act runs new code.
TEST(first_act_of_a_fresh_policy_takes_no_page_fault) {
#if !defined(__SANITIZE_ADDRESS__)
  if (std::getenv("OAT_EDGE_EMULATED")) {
    std::printf("  (skipped: page faults under emulation are the emulator's)\n");
    return;
  }
  prepare_realtime_memory(false);
  Policy p(g_bundle, opts());
  CHECK_EQ(p.step_runs(), uint64_t(0));
  const auto& in = p.info();
  auto obs = obs_for(in, 1, 0.7f);
  std::vector<float> out(size_t(in.horizon) * in.action_dim);
  ActOptions greedy;
  greedy.temperature = 0;
  ActOptions sampled;
  sampled.seed = 9;
  const ThreadFaults f0 = thread_faults();
  p.act(obs_view(p, obs), out, greedy);
  p.act(obs_view(p, obs), out, sampled);
  const ThreadFaults f1 = thread_faults();
  CHECK_EQ(f1.minor - f0.minor, 0);
  CHECK_EQ(p.step_runs(), uint64_t(2 * in.num_tokens));
#endif
}

int main(int argc, char** argv) {
  const char* b = std::getenv("OAT_EDGE_TEST_BUNDLE");
  if (!b || !*b) {
    std::printf("OAT_EDGE_TEST_BUNDLE not set: skipping the end-to-end tests\n");
    return mini_test::kSkip;
  }
  g_bundle = b;
  if (argc > 1) g_ort = argv[1];
  if (const char* e = std::getenv("OAT_EDGE_ORT_LIBRARY"); e && *e && g_ort.empty()) g_ort = e;
  return mini_test::run_all();
}
