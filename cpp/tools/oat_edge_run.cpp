// oat_edge_run: load a bundle, run act() and time it.
//   oat_edge_run BUNDLE [--obs file.npy|--random] [--tokens k] [--iters N] [--threads T]
//                [--device cpu|cuda|tensorrt] [--greedy] [--seed S] [--batch B] [--ort LIB] [--opt-cache DIR]
//                [--rt-memory]
// Prints one action chunk, then per k: latency median/p99 of act(), ORT vs own time (overhead
// fraction), page faults and sleeps of the calling thread per act(), and — when run under
// LD_PRELOAD=liboat_edge_malloc_counter.so — heap allocations per act() and per generated token,
// split into inside-ORT-Run and ours. --rt-memory applies oat_edge::prepare_realtime_memory first.
// A named-input (camera) bundle runs on random inputs: the state uniform in [-1, 1] after its
// normalization, uniformly random uint8 frames (--obs is for state bundles).
#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <vector>

#include "npy_reader.h"
#include "oat_edge/policy.h"
#include "oat_edge/realtime.h"

namespace {

struct Args {
  std::string bundle, obs_file, ort, device = "cpu", opt_cache;
  int tokens = 0, iters = 200, threads = 1, batch = 1;
  bool greedy = false, rt_memory = false;
  uint64_t seed = 0;
};

[[noreturn]] void usage(const char* why) {
  std::fprintf(stderr,
               "error: %s\nusage: oat_edge_run BUNDLE [--obs file.npy|--random] [--tokens k] [--iters N]\n"
               "       [--threads T] [--device cpu|cuda|tensorrt] [--greedy] [--seed S] [--batch B] [--ort LIB]\n"
               "       [--opt-cache DIR]   (ORT_ENABLE_ALL-optimized graphs cached in DIR)\n"
               "       [--rt-memory]       (no-trim/no-mmap malloc + mlockall before loading)\n",
               why);
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    std::string s = argv[i];
    auto val = [&]() -> std::string {
      if (i + 1 >= argc) usage((s + " needs a value").c_str());
      return argv[++i];
    };
    auto num = [&]() -> long long {
      std::string v = val();
      char* end = nullptr;
      long long x = std::strtoll(v.c_str(), &end, 10);
      if (!end || *end) usage((s + " expects an integer, got '" + v + "'").c_str());
      return x;
    };
    if (s == "--obs") a.obs_file = val();
    else if (s == "--random") a.obs_file.clear();
    else if (s == "--tokens") a.tokens = int(num());
    else if (s == "--iters") a.iters = int(num());
    else if (s == "--threads") a.threads = int(num());
    else if (s == "--batch") a.batch = int(num());
    else if (s == "--device") a.device = val();
    else if (s == "--ort") a.ort = val();
    else if (s == "--opt-cache") a.opt_cache = val();
    else if (s == "--greedy") a.greedy = true;
    else if (s == "--rt-memory") a.rt_memory = true;
    else if (s == "--seed") a.seed = uint64_t(num());
    else if (s == "-h" || s == "--help") usage("help requested");
    else if (!s.empty() && s[0] == '-') usage(("unknown option " + s).c_str());
    else if (a.bundle.empty()) a.bundle = s;
    else usage(("unexpected argument " + s).c_str());
  }
  if (a.bundle.empty()) usage("BUNDLE is required");
  if (a.iters < 1) usage("--iters must be >= 1");
  return a;
}

// Random raw values whose normalized value is uniform in [-1, 1] (x = (u - offset) / scale).
std::vector<float> random_raw(const std::vector<float>& scale, const std::vector<float>& offset, size_t n,
                              std::mt19937_64& g) {
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> x(n);
  for (size_t i = 0; i < n; ++i) x[i] = (u(g) - offset[i % offset.size()]) / scale[i % scale.size()];
  return x;
}

std::vector<float> random_obs(const oat_edge::PolicyInfo& info, int batch, uint64_t seed) {
  std::mt19937_64 g(seed);
  const auto& n = info.normalization;
  return random_raw(n.obs_scale, n.obs_offset, size_t(batch) * info.n_obs_steps * info.obs_dim, g);
}

// A named-input bundle's random inputs (buffers and the views over them), in info.inputs order.
struct NamedInputs {
  std::vector<std::vector<float>> states;
  std::vector<std::vector<uint8_t>> frames;
  std::vector<oat_edge::NamedTensorView> views;
};

NamedInputs random_named(const oat_edge::PolicyInfo& info, int batch, uint64_t seed) {
  const auto spec = nlohmann::json::parse(info.observation).at("inputs");
  std::mt19937_64 g(seed);
  NamedInputs in;
  in.states.reserve(info.inputs.size());  // the views point into these buffers: no reallocation
  in.frames.reserve(info.inputs.size());
  for (size_t k = 0; k < info.inputs.size(); ++k) {
    const auto& inp = info.inputs[k];
    oat_edge::NamedTensorView v{inp.name, {}};
    v.view.dtype = inp.dtype;
    v.view.rank = inp.shape.size() + 1;
    v.view.shape[0] = batch;
    size_t n = size_t(batch);
    for (size_t d = 0; d < inp.shape.size(); ++d) n *= size_t(v.view.shape[d + 1] = inp.shape[d]);
    if (inp.dtype == oat_edge::DType::UInt8) {
      auto& f = in.frames.emplace_back(n);
      for (auto& px : f) px = uint8_t(g() >> 56);
      v.view.data = f.data();
    } else {
      const auto& norm = spec.at(k).at("normalize");
      in.states.push_back(
          random_raw(norm.at("scale").get<std::vector<float>>(), norm.at("offset").get<std::vector<float>>(), n, g));
      v.view.data = in.states.back().data();
    }
    in.views.push_back(v);
  }
  return in;
}

double percentile(std::vector<double> v, double p) {
  std::sort(v.begin(), v.end());
  size_t i = size_t(p * double(v.size() - 1) + 0.5);
  return v[std::min(i, v.size() - 1)];
}

// The observation batch: from --obs (an .npy of batch*n_obs_steps*obs_dim floats) or random.
std::vector<float> load_obs(const Args& a, const oat_edge::PolicyInfo& info) {
  if (!info.observation.empty()) {
    if (!a.obs_file.empty())
      throw oat_edge::InputError("--obs: this bundle reads named inputs (cameras); run it with --random");
    return {};
  }
  if (a.obs_file.empty()) return random_obs(info, a.batch, a.seed);
  auto arr = oat_edge_tools::read_npy(a.obs_file);
  const size_t want = size_t(a.batch) * info.n_obs_steps * info.obs_dim;
  if (arr.data.size() != want)
    throw oat_edge::InputError(a.obs_file + " holds " + std::to_string(arr.data.size()) +
                               " values, expected batch*n_obs_steps*obs_dim = " + std::to_string(want));
  return std::move(arr.data);
}

struct Timing {
  double alloc_mean = -1, ort_mean = 0;  // heap allocations per act (-1: not counted)
};

// a.iters timed act() calls at prefix length k (after 10 untimed ones); prints one table row.
// act(opt, stats) runs one act() on the observation.
template <typename Act>
Timing time_k(Act&& act, oat_edge::ActOptions opt, const Args& a, int k) {
  oat_edge::ActStats st;
  opt.max_tokens = k;
  for (int w = 0; w < 10; ++w) act(opt, &st);  // warm-up
  std::vector<double> total, pre, step, dec, over_frac;
  int64_t allocs = 0, allocs_ort = 0;
  const oat_edge::ThreadFaults f0 = oat_edge::thread_faults();
  for (int i = 0; i < a.iters; ++i) {
    opt.seed = a.seed + uint64_t(i);
    act(opt, &st);
    total.push_back(st.total_ms);
    pre.push_back(st.prefill_ms);
    step.push_back(st.step_ms / std::max(1, st.tokens_used));
    dec.push_back(st.decode_ms);
    over_frac.push_back(st.overhead_ms / st.total_ms);
    allocs += st.allocs_total;
    allocs_ort += st.allocs_in_ort;
  }
  const oat_edge::ThreadFaults f1 = oat_edge::thread_faults();
  Timing t;
  if (st.allocs_total >= 0) t = {double(allocs) / a.iters, double(allocs_ort) / a.iters};
  const double faults = double(f1.minor + f1.major - f0.minor - f0.major) / a.iters;
  const double sleeps = double(f1.voluntary_switches - f0.voluntary_switches) / a.iters;
  char abuf[32] = "n/a", obuf[32] = "n/a";
  if (t.alloc_mean >= 0) {
    std::snprintf(abuf, sizeof abuf, "%.1f", t.alloc_mean);
    std::snprintf(obuf, sizeof obuf, "%.1f", t.ort_mean);
  }
  std::printf("%3d %10.3f %10.3f %10.3f %10.3f %10.3f %8.1f%% %11.2f %11.2f %12s %12s\n", k, percentile(total, 0.5),
              percentile(total, 0.99), percentile(pre, 0.5), percentile(step, 0.5), percentile(dec, 0.5),
              100.0 * percentile(over_frac, 0.5), faults, sleeps, abuf, obuf);
  return t;
}

void print_chunk(const oat_edge::PolicyInfo& info, const std::vector<float>& out, int k) {
  std::printf("\nchunk (k=%d, first %d of %d steps, row 0):\n", k, info.n_action_steps, info.horizon);
  for (int t = 0; t < info.n_action_steps; ++t) {
    std::printf("  %2d:", t);
    for (int d = 0; d < info.action_dim; ++d) std::printf(" % .4f", out[size_t(t) * info.action_dim + d]);
    std::printf("\n");
  }
}

void print_footer(const std::vector<int>& ks, const std::vector<Timing>& rows) {
  if (rows.empty() || rows.front().alloc_mean < 0) {
    std::printf("\n(allocation counts: run with LD_PRELOAD=<build>/cpp/tools/liboat_edge_malloc_counter.so)\n");
  } else if (ks.size() >= 2) {
    const double dk = double(ks.back() - ks.front());
    const auto ours = [](const Timing& t) { return t.alloc_mean - t.ort_mean; };
    std::printf("\nheap allocations per extra generated token (k=%d..%d): ours %.2f, inside ORT Run() %.2f\n",
                ks.front(), ks.back(), (ours(rows.back()) - ours(rows.front())) / dk,
                (rows.back().ort_mean - rows.front().ort_mean) / dk);
  }
  std::printf(
      "overhead = median over calls of (act() time - ORT Run() time) / act() time "
      "(normalize, sampling, KV copy, FSQ, unnormalize, timers)\n"
      "faults/act, sleeps/act = page faults and voluntary context switches of the calling thread "
      "(getrusage RUSAGE_THREAD), mean over the timed calls: 0 means no allocation reached the kernel\n");
}

int run(const Args& a) {
  if (a.rt_memory) std::printf("rt memory: %s\n", oat_edge::prepare_realtime_memory(true).message.c_str());
  oat_edge::RuntimeOptions ro;
  ro.ort_library = a.ort;
  ro.device = a.device;
  ro.intra_op_threads = a.threads;
  ro.max_batch = a.batch;
  ro.batch_limit = std::max(a.batch, ro.batch_limit);
  ro.optimized_model_dir = a.opt_cache;
  oat_edge::Policy policy(a.bundle, ro);
  const auto& info = policy.info();
  std::printf("bundle %s  ORT %s (%s)  provider %s  threads %d  batch %d\n", info.bundle_dir.c_str(),
              info.ort_version.c_str(), info.ort_library.c_str(), info.provider.c_str(), a.threads, a.batch);
  std::printf("K=%d H_a=%d D_a=%d obs=[%d,%d] layers=%d heads=%d head_dim=%d precision=%s\n", info.num_tokens,
              info.horizon, info.action_dim, info.n_obs_steps, info.obs_dim, info.n_layers, info.n_heads, info.head_dim,
              info.precision.c_str());
  const std::vector<float> obs = load_obs(a, info);
  std::vector<int> ks;
  if (a.tokens > 0) ks.push_back(a.tokens);
  else
    for (int k = 1; k <= info.num_tokens; k *= 2) ks.push_back(k);

  oat_edge::ActOptions opt;
  opt.seed = a.seed;
  if (a.greedy) opt.temperature = 0;
  std::vector<float> out(size_t(a.batch) * info.horizon * info.action_dim);
  const oat_edge::TensorView obs_view(obs.data(), {a.batch, info.n_obs_steps, info.obs_dim});
  const NamedInputs named = info.observation.empty() ? NamedInputs{} : random_named(info, a.batch, a.seed);
  auto act = [&](const oat_edge::ActOptions& o, oat_edge::ActStats* st) {
    if (info.observation.empty()) policy.act(obs_view, out, o, st);
    else policy.act(named.views, out, o, st);
  };
  opt.max_tokens = ks.back();  // one chunk at the largest k, first n_action_steps rows of row 0
  act(opt, nullptr);
  print_chunk(info, out, ks.back());

  std::printf("\n%3s %10s %10s %10s %10s %10s %9s %11s %11s %12s %12s\n", "k", "median_ms", "p99_ms", "prefill",
              "step/tok", "decode", "overhead", "faults/act", "sleeps/act", "allocs/act", "(in ORT)");
  std::vector<Timing> rows;
  for (int k : ks) rows.push_back(time_k(act, opt, a, k));
  print_footer(ks, rows);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  try {
    return run(a);
  } catch (const oat_edge::InputError& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 2;
  } catch (const oat_edge::Error& e) {
    std::fprintf(stderr, "oat_edge error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {  // e.g. an --obs file it cannot read
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
