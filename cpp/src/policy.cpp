// oat_edge::Policy: the public facade. It validates every call, serializes calls with one mutex,
// and hands the work to the pieces: Bundle (graphs + manifest), Generator (prefill and the
// KV-cached token loop), Detokenizer (prefix -> actions).
#include <cstring>
#include <mutex>
#include <random>

#include <onnxruntime_cxx_api.h>

#include "oat_edge/policy.h"
#include "bundle.h"
#include "detokenizer.h"
#include "generator.h"
#include "input_checks.h"
#include "normalizer.h"
#include "ort_loader.h"
#include "run_meter.h"
#include "sampler.h"

namespace oat_edge {
using namespace detail;

namespace {
const RuntimeOptions& checked(const RuntimeOptions& o) {
  if (o.max_batch < 1) throw InputError("max_batch: expected >= 1, got " + std::to_string(o.max_batch));
  provider_for_device(o.device);  // InputError for an unknown device, before any loading
  return o;
}

uint64_t random_seed() {
  std::random_device rd;
  return (uint64_t(rd()) << 32) ^ rd() ^ uint64_t(Clock::now().time_since_epoch().count());
}
}  // namespace

struct Policy::Impl {
  // Declaration order matters: ORT must be loaded before any Ort:: member exists, because an
  // Ort:: object's destructor calls into the API table (a throw before loading would crash).
  RuntimeOptions opt;
  BundleLocation where;
  const OrtRuntime* ort = nullptr;
  Bundle bundle;
  const Manifest& m;
  RunMeter meter;
  Generator generator;
  Detokenizer detokenizer;
  PolicyInfo info;
  SplitMix64 seed_stream{random_seed()};
  std::mutex mu;
  Ort::MemoryInfo cpu_mem{Ort::MemoryInfo::CreateCpu(OrtDeviceAllocator, OrtMemTypeCPU)};
  Ort::RunOptions run_opts{nullptr};

  Impl(const std::string& path, const RuntimeOptions& o);
  void check_batch_size(int batch) const;
  void bind(int batch);
  void warm_up();
  template <typename Finish>
  int timed_generate(const float* obs, int batch, const void* out, const ActOptions& opt, ActStats* stats,
                     Finish&& finish);
  void act(const float* obs, int batch, float* out, const ActOptions& o, ActStats* stats);
};

Policy::Impl::Impl(const std::string& path, const RuntimeOptions& o)
    : opt(checked(o)),
      where(locate_bundle(path)),
      ort(&load_ort(opt.ort_library)),
      bundle(where, opt),
      m(bundle.m),
      generator(bundle, meter, bundle.factory->provider() != "CPUExecutionProvider"),
      detokenizer(bundle, meter) {
  if (bundle.static_batch && opt.max_batch != bundle.static_batch) opt.max_batch = bundle.static_batch;
  bind(opt.max_batch);
  if (opt.max_batch > 1 && !bundle.static_batch) bind(1);  // the common robot case, ready without a first-call cost
  info = PolicyInfo{m.num_tokens, m.codebook_size, m.vocab_size, m.bos_id, m.horizon, m.action_dim,
                    m.n_obs_steps, m.obs_dim, m.n_action_steps, m.n_layers, m.n_heads, m.head_dim,
                    m.fsq_levels, m.temperature, m.top_k, bundle.factory->provider(), ort->version, ort->library,
                    where.dir, m.precision, m.tokenizer_kind, m.tasks, m.json_text};
}

void Policy::Impl::check_batch_size(int batch) const {
  check_batch(batch);
  const int fixed = bundle.static_batch;
  if (fixed && batch != fixed)
    throw InputError("batch: this bundle was exported with a fixed batch of " + std::to_string(fixed) + ", got " +
                     std::to_string(batch) + "; pass exactly that many rows or re-export with a dynamic batch");
}

void Policy::Impl::bind(int batch) {
  check_batch_size(batch);
  generator.bind(batch);
  detokenizer.bind(batch);
}

// ORT sizes its arenas and memory plans on a graph's first runs: without this, the first act() in
// the control loop would pay those allocations, and their page faults, inside a control cycle
// (measured on the shipped bundle: about 60 page faults; scripts/compare_bundles.py). Greedy and sampled
// acts per bound batch size, on the observation that normalizes to 0; afterwards the cache and the
// counters are as after load, except that anytime mode already has a decoder-time estimate.
void Policy::Impl::warm_up() {
  std::vector<int> sizes{opt.max_batch};
  if (opt.max_batch > 1 && !bundle.static_batch) sizes.push_back(1);
  ActOptions o;
  o.max_tokens = m.num_tokens;
  o.seed = 0;  // a fixed seed: the warm-up draws nothing from seed_stream
  ActStats last;
  for (int B : sizes) {
    std::vector<float> obs(size_t(B) * m.n_obs_steps * m.obs_dim);
    for (size_t i = 0; i < obs.size(); ++i) {
      const size_t d = i % size_t(m.obs_dim);
      obs[i] = -m.obs_offset[d] / m.obs_scale[d];  // normalized: x * scale + offset = 0
    }
    std::vector<float> out(size_t(B) * m.horizon * m.action_dim);
    o.temperature = 0;  // greedy, then the bundle's default sampling (sizes the sampler's buffers)
    for (int i = 0; i < 2; ++i) act(obs.data(), B, out.data(), o, nullptr);
    o.temperature = -1;
    for (int i = 0; i < 2; ++i) act(obs.data(), B, out.data(), o, &last);
  }
  generator.clear_cache();
  generator.reset_step_runs();
  // Anytime mode budgets the decoder by an average of its times: start it from a warm run, not
  // from the slow first ones.
  detokenizer.set_decode_ms_estimate(last.decode_ms);
}

// act() and generate() share everything but the output: validation, the locked token loop with its
// KV-cache reset on failure, and the stats (timings, allocation counts). `finish(k, st)` writes
// the output while the lock is still held.
template <typename Finish>
int Policy::Impl::timed_generate(const float* obs, int batch, const void* out, const ActOptions& o,
                                 ActStats* stats, Finish&& finish) {
  std::lock_guard<std::mutex> lock(mu);
  const auto t0 = Clock::now();
  const uint64_t alloc0 = meter.allocs_now();
  meter.reset_ort_allocs();
  check_batch_size(batch);
  check_ptr(obs, "obs");
  check_ptr(out, "out");
  ResolvedAct r = resolve_act(o, m, seed_stream);
  ActStats st;
  int k = generator.run(obs, batch, r, detokenizer.decode_ms_estimate(), st);
  finish(k, st);
  st.total_ms = ms_since(t0);
  st.overhead_ms = st.total_ms - (st.prefill_ms + st.step_ms + st.decode_ms);
  if (meter.counting()) {
    st.allocs_total = static_cast<int64_t>(meter.allocs_now() - alloc0);
    st.allocs_in_ort = static_cast<int64_t>(meter.ort_allocs());
  }
  if (stats) *stats = st;
  return k;
}

void Policy::Impl::act(const float* obs, int batch, float* out, const ActOptions& o, ActStats* stats) {
  timed_generate(obs, batch, out, o, stats, [&](int k, ActStats& st) {
    st.decode_ms = detokenizer.decode(generator.ids(), size_t(m.num_tokens), batch, k, out);
  });
}

// ---------------------------------------------------------------- public API

namespace {
template <typename F>
auto guarded(const char* what, F&& f) {
  try {
    return f();
  } catch (const Error&) {
    throw;
  } catch (const Ort::Exception& e) {
    throw BundleError(std::string(what) + ": ONNX Runtime failed while running the bundle: " + e.what() +
                      ". The graphs may not match the manifest; re-export the bundle.");
  } catch (const std::bad_alloc&) {
    throw InputError(std::string(what) + ": out of memory for this batch size; use a smaller batch");
  }
}
}  // namespace

Policy::Policy(const std::string& path, const RuntimeOptions& options) {
  try {
    impl_ = std::make_unique<Impl>(path, options);
    if (impl_->opt.warmup) impl_->warm_up();
  } catch (const Error&) {
    throw;
  } catch (const Ort::Exception& e) {
    throw BundleError(std::string("ONNX Runtime rejected the bundle at ") + path + ": " + e.what() +
                      ". Re-export it, or check that the ONNX Runtime library is >= 1.21.");
  }
}

Policy::~Policy() = default;

const PolicyInfo& Policy::info() const { return impl_->info; }

uint64_t Policy::step_runs() const { return impl_->generator.step_runs(); }

int Policy::generate(const float* obs, int batch, int64_t* out_ids, const ActOptions& opt, ActStats* stats) {
  return guarded("generate", [&] {
    return impl_->timed_generate(obs, batch, out_ids, opt, stats, [&](int, ActStats&) {
      std::memcpy(out_ids, impl_->generator.ids(), sizeof(int64_t) * size_t(batch) * impl_->m.num_tokens);
    });
  });
}

void Policy::act(const float* obs, int batch, float* out, const ActOptions& opt, ActStats* stats) {
  guarded("act", [&] { impl_->act(obs, batch, out, opt, stats); });
}

void Policy::detokenize(const int64_t* ids, int batch, int k, float* out) {
  guarded("detokenize", [&] {
    std::lock_guard<std::mutex> lock(impl_->mu);
    const int K = impl_->m.num_tokens;
    impl_->check_batch_size(batch);
    check_ptr(ids, "ids");
    check_ptr(out, "out");
    if (k < 1 || k > K)
      throw InputError("k: expected 1.." + std::to_string(K) + " tokens per row, got " + std::to_string(k));
    check_ids(ids, batch, k, impl_->m.codebook_size);
    impl_->detokenizer.decode(ids, size_t(k), batch, k, out);
  });
}

void Policy::tokenize(const float* actions, int batch, int64_t* out_ids) {
  guarded("tokenize", [&] {
    std::lock_guard<std::mutex> lock(impl_->mu);
    Impl& p = *impl_;
    const Graph& enc = p.bundle.encoder;
    if (!enc)
      throw InputError("tokenize: this bundle has no encoder graph (files.encoder absent); re-export with the encoder");
    check_batch(batch);
    check_ptr(actions, "actions");
    check_ptr(out_ids, "out_ids");
    const size_t rows = size_t(batch) * p.m.horizon, n = rows * p.m.action_dim;
    check_finite(actions, {size_t(batch), size_t(p.m.horizon), size_t(p.m.action_dim)}, "actions");
    std::vector<float> norm(n);  // not a hot path: plain allocation is fine
    Normalizer(p.m.action_scale, p.m.action_offset).normalize(actions, rows, norm.data());
    std::vector<int64_t> shape{batch, p.m.horizon, p.m.action_dim};
    Ort::Value in = Ort::Value::CreateTensor<float>(p.cpu_mem, norm.data(), n, shape.data(), shape.size());
    auto outs = enc.session->Run(p.run_opts, enc.names.in_c.data(), &in, 1, enc.names.out_c.data(), 1);
    auto info = outs[0].GetTensorTypeAndShapeInfo();
    const size_t want = size_t(batch) * p.m.num_tokens;
    if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 || info.GetElementCount() != want)
      throw BundleError("encoder graph returned " + std::to_string(info.GetElementCount()) +
                        " elements (expected int64 [batch, K] = " + std::to_string(want) + "); re-export the bundle");
    std::memcpy(out_ids, outs[0].GetTensorData<int64_t>(), want * sizeof(int64_t));
  });
}

}  // namespace oat_edge
