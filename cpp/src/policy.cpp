// oat_edge::Policy: the public facade. It validates every call (input_checks), serializes calls
// with one mutex, and hands the work to the pieces: Bundle (graphs + manifest), Generator (prefill
// and the KV-cached token loop), Detokenizer (prefix -> actions).
#include "oat_edge/policy.h"

#include <onnxruntime_cxx_api.h>
#include <unistd.h>

#include <cstring>
#include <mutex>
#include <random>

#include "bundle.h"
#include "detokenizer.h"
#include "fork_guard.h"
#include "generator.h"
#include "input_checks.h"
#include "normalizer.h"
#include "ort_loader.h"
#include "policy_info.h"
#include "run_meter.h"
#include "sampler.h"

namespace oat_edge {
using namespace detail;

namespace {
const RuntimeOptions& checked(const RuntimeOptions& o) {
  check_runtime_options(o);
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
  ForkGuard fork_guard{mu};
  const pid_t owner_pid = getpid();
  Ort::MemoryInfo cpu_mem{Ort::MemoryInfo::CreateCpu(OrtDeviceAllocator, OrtMemTypeCPU)};
  Ort::RunOptions run_opts{nullptr};
  std::vector<const TensorView*> views;  // one call's named inputs, in info.inputs order
  NamedTensorView single[1];             // the single-array form of a one-input named bundle (views points here)

  Impl(const std::string& path, const RuntimeOptions& o);
  void bind(int batch);
  void warm_up(Policy& self);
  bool usable_after_fork() const { return opt.intra_op_threads == 1 && info.provider == "CPUExecutionProvider"; }
  void check_process() const;
  int check_obs(const TensorView& obs, PrefillInput& in);
  int check_inputs(Span<const NamedTensorView> inputs, PrefillInput& in);
  template <typename Finish>
  int timed_generate(const PrefillInput& in, int batch, const ActOptions& opt, ActStats* stats, Finish&& finish);
  template <typename CheckIn>
  int generate_ids(CheckIn&& check_in, Span<int64_t> out_ids, const ActOptions& o, ActStats* stats);
  template <typename CheckIn>
  void act(CheckIn&& check_in, Span<float> out, const ActOptions& o, ActStats* stats);
};

Policy::Impl::Impl(const std::string& path, const RuntimeOptions& o)
    : opt(checked(o)),
      where(locate_bundle(path)),
      ort(&load_ort(opt.ort_library)),
      bundle(where, opt),
      m(bundle.m),
      generator(bundle, meter, bundle.factory->provider() != "CPUExecutionProvider"),
      detokenizer(bundle, meter) {
  if (bundle.static_batch) opt.max_batch = opt.batch_limit = bundle.static_batch;
  bind(opt.max_batch);
  if (opt.max_batch > 1 && !bundle.static_batch) bind(1);  // the common robot case, ready without a first-call cost
  info = make_policy_info(m, bundle.encoder ? true : false);
  info.provider = bundle.factory->provider();
  info.ort_version = ort->version;
  info.ort_library = ort->library;
  info.bundle_dir = where.dir;
  info.max_batch = opt.max_batch;
  info.batch_limit = opt.batch_limit;
  views.reserve(info.inputs.size());
}

void Policy::Impl::bind(int batch) {
  generator.bind(batch);
  detokenizer.bind(batch);
}

// A child process may use a Policy made by its parent (the fork guard released its lock), but
// only if nothing of it lives in threads: ORT's intra-op pool and a GPU context do not survive fork().
void Policy::Impl::check_process() const {
  if (getpid() != owner_pid && !usable_after_fork())
    throw RuntimeLoadError("this Policy was created in process " + std::to_string(owner_pid) + " with " +
                           std::to_string(opt.intra_op_threads) + " intra-op threads on " + info.provider +
                           ", and ONNX Runtime's threads and device context do not survive fork(): create the "
                           "Policy in the child process (or use intra_op_threads = 1 on the CPU)");
}

// The single-array form: a state bundle's `obs`, or a named bundle's one float input.
int Policy::Impl::check_obs(const TensorView& obs, PrefillInput& in) {
  if (m.observation.empty()) {
    in.obs = static_cast<const float*>(obs.data);
    return check_view(obs, "obs", DType::Float32, {-1, m.n_obs_steps, m.obs_dim}, opt.batch_limit, bundle.static_batch);
  }
  if (info.inputs.size() != 1 || info.inputs[0].dtype != DType::Float32) throw_needs_named_inputs(info.inputs);
  single[0] = {info.inputs[0].name, obs};  // a member: `views` must outlive this function
  return check_inputs(Span<const NamedTensorView>(single, 1), in);
}

// Named inputs: checked against info.inputs; a state bundle's one input `obs` takes the host path.
int Policy::Impl::check_inputs(Span<const NamedTensorView> inputs, PrefillInput& in) {
  const int batch = check_named_inputs(inputs, info.inputs, opt.batch_limit, bundle.static_batch, views);
  if (m.observation.empty()) in.obs = static_cast<const float*>(views[0]->data);
  else in.named = &views;
  return batch;
}

// ORT sizes its arenas and memory plans on a graph's first runs: without this, the first act() in
// the control loop would pay those allocations, and their page faults, inside a control cycle
// (measured on the shipped bundle: about 60 page faults; scripts/compare_bundles.py). Greedy and sampled
// acts per bound batch size, on the observation that normalizes to 0; afterwards the cache and the
// counters are as after load, except that anytime mode already has a decoder-time estimate.
// It goes through the public act(), so the call path itself is warm too.
void Policy::Impl::warm_up(Policy& self) {
  std::vector<int> sizes{opt.max_batch};
  if (opt.max_batch > 1 && !bundle.static_batch) sizes.push_back(1);
  ActOptions greedy, sampled;
  greedy.temperature = 0;
  greedy.seed = sampled.seed = 0;  // a fixed seed: the warm-up draws nothing from seed_stream
  ActStats last;
  for (int B : sizes) {
    std::vector<float> out(size_t(B) * m.horizon * m.action_dim);
    if (m.observation.empty()) {
      std::vector<float> obs(size_t(B) * m.n_obs_steps * m.obs_dim);
      for (size_t i = 0; i < obs.size(); ++i) {
        const size_t d = i % size_t(m.obs_dim);
        obs[i] = -m.obs_offset[d] / m.obs_scale[d];  // normalized: x * scale + offset = 0
      }
      const TensorView view(obs.data(), {B, m.n_obs_steps, m.obs_dim});
      for (int i = 0; i < 2; ++i) self.act(view, out, greedy);
      for (int i = 0; i < 2; ++i) self.act(view, out, sampled, &last);  // sizes the sampler's buffers
      continue;
    }
    // Named inputs: the state that the graph normalizes to 0, black frames.
    std::vector<std::vector<float>> states;
    std::vector<std::vector<uint8_t>> frames;
    std::vector<NamedTensorView> inputs;
    for (size_t k = 0; k < m.observation.size(); ++k) {
      const ObservationInput& o = m.observation[k];
      const InputInfo& in = info.inputs[k];
      NamedTensorView nv{in.name, TensorView{}};
      nv.view.dtype = in.dtype;
      nv.view.rank = in.shape.size() + 1;
      nv.view.shape[0] = B;
      size_t n = size_t(B);
      for (size_t d = 0; d < in.shape.size(); ++d) n *= size_t(nv.view.shape[d + 1] = in.shape[d]);
      if (in.dtype == DType::Float32) {
        std::vector<float>& x = states.emplace_back(n);
        for (size_t i = 0; i < n; ++i) x[i] = -o.offset[i % o.offset.size()] / o.scale[i % o.scale.size()];
        nv.view.data = x.data();
      } else {
        nv.view.data = frames.emplace_back(n, uint8_t(0)).data();
      }
      inputs.push_back(nv);
    }
    for (int i = 0; i < 2; ++i) self.act(inputs, out, greedy);
    for (int i = 0; i < 2; ++i) self.act(inputs, out, sampled, &last);
  }
  generator.clear_cache();
  generator.reset_step_runs();
  // Anytime mode budgets the decoder by an average of its times: start it from a warm run, not
  // from the slow first ones.
  detokenizer.set_decode_ms_estimate(last.decode_ms);
}

// act() and generate() share everything but the output: the locked token loop with its KV-cache
// reset on failure, and the stats (timings, allocation counts). `finish(k, st)` writes the output
// while the lock is still held. The caller has checked obs and the output buffer.
template <typename Finish>
int Policy::Impl::timed_generate(const PrefillInput& in, int batch, const ActOptions& o, ActStats* stats,
                                 Finish&& finish) {
  const auto t0 = Clock::now();
  const uint64_t alloc0 = meter.allocs_now();
  meter.reset_ort_allocs();
  ResolvedAct r = resolve_act(o, m);
  if (!r.seed) r.seed = seed_stream.next();
  ActStats st;
  int k = generator.run(in, batch, r, detokenizer.decode_ms_estimate(), st);
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

// ---------------------------------------------------------------- public API

namespace {
template <typename F>
auto guarded(const char* what, F&& f) {
  try {
    return f();
  } catch (const Error&) { throw; } catch (const Ort::Exception& e) {
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
    if (impl_->opt.warmup) impl_->warm_up(*this);
  } catch (const Error&) { throw; } catch (const Ort::Exception& e) {
    throw BundleError(std::string("ONNX Runtime rejected the bundle at ") + path + ": " + e.what() +
                      ". Re-export it, or check that the ONNX Runtime library is >= 1.21.");
  }
}

// In a forked child whose inherited Policy holds ORT threads or a device context, tearing those
// down could hang on threads that do not exist there: the child leaves them to the OS instead.
Policy::~Policy() {
  if (impl_ && getpid() != impl_->owner_pid && !impl_->usable_after_fork()) (void)impl_.release();
}

const PolicyInfo& Policy::info() const { return impl_->info; }

uint64_t Policy::step_runs() const { return impl_->generator.step_runs(); }

void Policy::check(const ActOptions& options) const { resolve_act(options, impl_->m); }

// generate() and act() for either input form: `check_in(in)` checks the inputs and returns the batch.
template <typename CheckIn>
int Policy::Impl::generate_ids(CheckIn&& check_in, Span<int64_t> out_ids, const ActOptions& o, ActStats* stats) {
  check_process();
  std::lock_guard<std::mutex> lock(mu);
  PrefillInput in;
  const int batch = check_in(in);
  const size_t K = size_t(m.num_tokens);
  check_span(out_ids.data, out_ids.size, size_t(batch) * K, "out_ids", "[batch, K]");
  return timed_generate(in, batch, o, stats, [&](int, ActStats&) {
    std::memcpy(out_ids.data, generator.ids(), sizeof(int64_t) * size_t(batch) * K);
  });
}

template <typename CheckIn>
void Policy::Impl::act(CheckIn&& check_in, Span<float> out, const ActOptions& o, ActStats* stats) {
  check_process();
  std::lock_guard<std::mutex> lock(mu);
  PrefillInput in;
  const int batch = check_in(in);
  check_span(out.data, out.size, size_t(batch) * m.horizon * m.action_dim, "out", "[batch, horizon, action_dim]");
  timed_generate(in, batch, o, stats, [&](int k, ActStats& st) {
    st.decode_ms = detokenizer.decode(generator.ids(), size_t(m.num_tokens), batch, k, out.data);
  });
}

int Policy::generate(const TensorView& obs, Span<int64_t> out_ids, const ActOptions& opt, ActStats* stats) {
  return guarded("generate", [&] {
    return impl_->generate_ids([&](PrefillInput& in) { return impl_->check_obs(obs, in); }, out_ids, opt, stats);
  });
}

int Policy::generate(Span<const NamedTensorView> inputs, Span<int64_t> out_ids, const ActOptions& opt,
                     ActStats* stats) {
  return guarded("generate", [&] {
    return impl_->generate_ids([&](PrefillInput& in) { return impl_->check_inputs(inputs, in); }, out_ids, opt, stats);
  });
}

void Policy::act(const TensorView& obs, Span<float> out, const ActOptions& opt, ActStats* stats) {
  guarded("act", [&] { impl_->act([&](PrefillInput& in) { return impl_->check_obs(obs, in); }, out, opt, stats); });
}

void Policy::act(Span<const NamedTensorView> inputs, Span<float> out, const ActOptions& opt, ActStats* stats) {
  guarded("act",
          [&] { impl_->act([&](PrefillInput& in) { return impl_->check_inputs(inputs, in); }, out, opt, stats); });
}

void Policy::detokenize(const TensorView& ids, Span<float> out) {
  guarded("detokenize", [&] {
    Impl& p = *impl_;
    p.check_process();
    std::lock_guard<std::mutex> lock(p.mu);
    const int batch = check_view(ids, "ids", DType::Int64, {-1, -1}, p.opt.batch_limit, p.bundle.static_batch);
    const int k = check_range("k (ids.shape[1])", ids.shape[1], 1, p.m.num_tokens, "the prefix length, 1..K");
    check_span(out.data, out.size, size_t(batch) * p.m.horizon * p.m.action_dim, "out", "[batch, horizon, action_dim]");
    const auto* id = static_cast<const int64_t*>(ids.data);
    check_ids(id, batch, k, p.m.codebook_size);
    p.detokenizer.decode(id, size_t(k), batch, k, out.data);
  });
}

void Policy::tokenize(const TensorView& actions, Span<int64_t> out_ids) {
  guarded("tokenize", [&] {
    Impl& p = *impl_;
    p.check_process();
    std::lock_guard<std::mutex> lock(p.mu);
    const Graph& enc = p.bundle.encoder;
    if (!enc)
      throw InputError("tokenize: this bundle has no encoder graph (files.encoder absent); re-export with the encoder");
    const int batch =
        check_view(actions, "actions", DType::Float32, {-1, p.m.horizon, p.m.action_dim}, p.opt.batch_limit, 0);
    const size_t want = size_t(batch) * p.m.num_tokens;
    check_span(out_ids.data, out_ids.size, want, "out_ids", "[batch, K]");
    const auto* x = static_cast<const float*>(actions.data);
    const size_t rows = size_t(batch) * p.m.horizon, n = rows * p.m.action_dim;
    check_finite(x, {size_t(batch), size_t(p.m.horizon), size_t(p.m.action_dim)}, "actions");
    std::vector<float> norm(n);  // not a hot path: plain allocation is fine
    Normalizer(p.m.action_scale, p.m.action_offset).normalize(x, rows, norm.data());
    std::vector<int64_t> shape{batch, p.m.horizon, p.m.action_dim};
    Ort::Value in = Ort::Value::CreateTensor<float>(p.cpu_mem, norm.data(), n, shape.data(), shape.size());
    auto outs = enc.session->Run(p.run_opts, enc.names.in_c.data(), &in, 1, enc.names.out_c.data(), 1);
    auto info = outs[0].GetTensorTypeAndShapeInfo();
    if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 || info.GetElementCount() != want)
      throw BundleError("encoder graph returned " + std::to_string(info.GetElementCount()) +
                        " elements (expected int64 [batch, K] = " + std::to_string(want) + "); re-export the bundle");
    std::memcpy(out_ids.data, outs[0].GetTensorData<int64_t>(), want * sizeof(int64_t));
  });
}

}  // namespace oat_edge
