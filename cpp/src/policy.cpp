// oat_edge::Policy: loads a bundle, runs prefill → KV-cached AR step loop with our sampler →
// prefix detokenization. All buffers, OrtValues and the step IoBinding are created once per batch
// size; per token only the token ids and the step index change (docs/DESIGN.md §5, SPEC §6).
#include <dlfcn.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <random>
#include <set>

#include <onnxruntime_cxx_api.h>

#include "oat_edge/policy.h"
#include "fsq.h"
#include "input_checks.h"
#include "kv_cache.h"
#include "manifest.h"
#include "normalizer.h"
#include "ort_loader.h"
#include "sampler.h"
#include "sessions.h"

namespace oat_edge {
using namespace detail;
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;
double ms_since(Clock::time_point t0) { return std::chrono::duration<double, std::milli>(Clock::now() - t0).count(); }

// (bundle dir, entry file name) from a directory or a path to the entry file.
std::pair<std::string, std::string> locate_bundle(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    if (!fs::is_regular_file(fs::path(path) / "model.onnx", ec))
      throw BundleError("bundle directory " + path + " has no model.onnx: pass a directory written by oat_edge export");
    return {fs::absolute(path, ec).string(), "model.onnx"};
  }
  if (fs::is_regular_file(path, ec)) {
    fs::path p = fs::absolute(path, ec);
    return {p.parent_path().string(), p.filename().string()};
  }
  throw BundleError("bundle path '" + path + "' does not exist: pass the bundle directory or its model.onnx");
}

std::string read_manifest(Ort::Session& s, const std::string& entry) {
  Ort::AllocatorWithDefaultOptions alloc;
  Ort::ModelMetadata md = s.GetModelMetadata();
  Ort::AllocatedStringPtr v = md.LookupCustomMetadataMapAllocated(kManifestKey, alloc);
  if (!v)
    throw BundleError(entry + " has no '" + std::string(kManifestKey) +
                      "' metadata: it is not an oat_edge bundle entry file. Export one with oat_edge's exporter.");
  return v.get();
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// The graph must expose exactly the names the manifest lists (order-free).
void check_io(Ort::Session& s, const GraphIo& io, const std::string& graph) {
  auto in = input_names(s), out = output_names(s);
  if (std::set<std::string>(in.begin(), in.end()) != std::set<std::string>(io.inputs.begin(), io.inputs.end()) ||
      std::set<std::string>(out.begin(), out.end()) != std::set<std::string>(io.outputs.begin(), io.outputs.end()))
    throw BundleError(graph + " graph I/O is [" + join(in) + "] -> [" + join(out) + "], the manifest says [" +
                      join(io.inputs) + "] -> [" + join(io.outputs) + "]: the bundle is inconsistent, re-export it");
}

// Input/output `name` must be a tensor of `type` whose static dims match `want` (0 = any, e.g. the
// dynamic batch). Returns the graph's shape (-1 for dynamic dims).
std::vector<int64_t> check_tensor(Ort::Session& s, const std::string& name, bool input, ONNXTensorElementDataType type,
                                  const std::vector<int64_t>& want, const std::string& graph) {
  auto names = input ? input_names(s) : output_names(s);
  size_t i = std::find(names.begin(), names.end(), name) - names.begin();
  Ort::TypeInfo ti = input ? s.GetInputTypeInfo(i) : s.GetOutputTypeInfo(i);
  const std::string what = graph + (input ? " input '" : " output '") + name + "'";
  if (ti.GetONNXType() != ONNX_TYPE_TENSOR) throw BundleError(what + " is not a tensor; re-export the bundle");
  auto info = ti.GetTensorTypeAndShapeInfo();
  if (info.GetElementType() != type)
    throw BundleError(what + " has element type " + std::to_string(int(info.GetElementType())) + ", expected " +
                      (type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT ? "float32" : "int64") +
                      " (DESIGN.md §5: graph I/O stays float32/int64 even for fp16/int8 weights); re-export");
  auto shape = info.GetShape();
  auto str = [](const std::vector<int64_t>& d) {
    std::string r = "[";
    for (size_t j = 0; j < d.size(); ++j) r += (j ? "," : "") + (d[j] > 0 ? std::to_string(d[j]) : std::string("?"));
    return r + "]";
  };
  bool ok = shape.size() == want.size();
  for (size_t j = 0; ok && j < want.size(); ++j) ok = !(want[j] > 0 && shape[j] > 0 && want[j] != shape[j]);
  if (!ok)
    throw BundleError(what + " has shape " + str(shape) + ", the manifest implies " + str(want) +
                      ": the bundle is inconsistent, re-export it");
  return shape;
}

// Raw pointers into std::string storage, built once (ORT wants const char* arrays).
struct Names {
  std::vector<std::string> in, out;
  std::vector<const char*> in_c, out_c;
  explicit Names(const GraphIo& io = {}) : in(io.inputs), out(io.outputs) {
    for (auto& s : in) in_c.push_back(s.c_str());
    for (auto& s : out) out_c.push_back(s.c_str());
  }
  // A copy would keep pointers into the source's strings; a move keeps the string objects in place.
  Names(const Names&) = delete;
  Names& operator=(const Names&) = delete;
  Names(Names&&) = default;
  Names& operator=(Names&&) = default;
};

}  // namespace

struct Policy::Impl {
  // Declaration order matters: ORT must be loaded before any Ort:: member exists, because an
  // Ort:: object's destructor calls into the API table (a throw before loading would crash).
  RuntimeOptions opt;
  std::pair<std::string, std::string> where;  // (bundle dir, entry file)
  const OrtRuntime* ort = nullptr;
  Manifest m;
  PolicyInfo info;
  std::unique_ptr<SessionFactory> factory;
  std::unique_ptr<Ort::Session> step, prefill, decoder, encoder;
  Names step_names, prefill_names, decoder_names, encoder_names;
  std::unique_ptr<Fsq> fsq;
  std::unique_ptr<Sampler> sampler;
  Normalizer obs_norm, act_norm;
  std::unique_ptr<KvCache> kv;
  int static_batch = 0;           // >0: the step graph has a fixed batch dimension
  bool rebind_each_run = false;  // non-CPU EPs copy CPU inputs at bind time: rebind per token
  Ort::MemoryInfo cpu_mem{nullptr};
  Ort::RunOptions run_opts{nullptr};

  // Workspace for `capacity` rows; grown only when a larger batch arrives.
  int capacity = 0;
  std::vector<float> obs_n, logits, codes, actions;
  std::vector<int64_t> token, step_idx, ids, num_tokens;

  // OrtValues over the workspace + the step IoBinding, one set per batch size seen.
  struct Bound {
    Ort::Value obs{nullptr}, mem_k{nullptr}, mem_v{nullptr}, token{nullptr}, step{nullptr}, past_k{nullptr},
        past_v{nullptr}, logits{nullptr}, new_k{nullptr}, new_v{nullptr}, codes{nullptr}, num_tokens{nullptr},
        actions{nullptr};
    std::unique_ptr<Ort::IoBinding> binding;
  };
  std::map<int, std::unique_ptr<Bound>> bound;

  // Optional allocation counter (LD_PRELOAD'ed cpp/tools/malloc_counter.c); null otherwise.
  using CountFn = uint64_t (*)();
  CountFn alloc_count = reinterpret_cast<CountFn>(dlsym(RTLD_DEFAULT, "oat_malloc_count"));
  uint64_t ort_allocs = 0;  // accumulated inside Run() calls during one act/generate
  uint64_t allocs_now() const { return alloc_count ? alloc_count() : 0; }

  SplitMix64 seed_stream{0};
  std::mutex mu;
  std::atomic<uint64_t> step_runs{0};  // read without the mutex by Policy::step_runs()
  double decode_ms_estimate = 0;  // EMA of decoder time, for anytime mode

  Impl(const std::string& path, const RuntimeOptions& o);
  void ensure_capacity(int batch);
  Bound& bind(int batch);
  void bind_step_inputs(Bound& b);
  int generate_locked(const float* obs, int batch, const ResolvedAct& r, ActStats& st);
  // generate_locked, but a failure (e.g. a non-finite logit from an overflowing input) zeroes the KV
  // cache before rethrowing, so the next call starts clean instead of inheriting NaN slots.
  int generate_locked_or_reset(const float* obs, int batch, const ResolvedAct& r, ActStats& st) {
    try {
      return generate_locked(obs, batch, r, st);
    } catch (...) {
      kv->clear();
      throw;
    }
  }
  void decode_locked(int batch, int k, float* out, ActStats& st);
  template <typename Finish>
  int timed_generate(const float* obs, int batch, const void* out, const ActOptions& opt, ActStats* stats,
                     Finish&& finish);

  template <typename T>
  Ort::Value tensor(T* data, size_t count, std::vector<int64_t> shape) {
    return Ort::Value::CreateTensor<T>(cpu_mem, data, count, shape.data(), shape.size());
  }
};

namespace {
const RuntimeOptions& checked(const RuntimeOptions& o) {
  if (o.max_batch < 1) throw InputError("max_batch: expected >= 1, got " + std::to_string(o.max_batch));
  provider_for_device(o.device);  // InputError for an unknown device, before any loading
  return o;
}
}  // namespace

Policy::Impl::Impl(const std::string& path, const RuntimeOptions& o)
    : opt(checked(o)), where(locate_bundle(path)), ort(&load_ort(opt.ort_library)) {
  const std::string dir = where.first, entry = where.second;
  cpu_mem = Ort::MemoryInfo::CreateCpu(OrtDeviceAllocator, OrtMemTypeCPU);
  factory = std::make_unique<SessionFactory>(opt, dir);
  step = factory->create(entry);
  m = Manifest::parse(read_manifest(*step, entry), dir);
  if (m.file_step != entry)
    throw BundleError("manifest files.step is '" + m.file_step + "' but the entry file is '" + entry +
                      "': the entry file must be the step graph; re-export the bundle");
  prefill = factory->create(m.file_prefill);
  decoder = factory->create(m.file_decoder);
  if (!m.file_encoder.empty()) encoder = factory->create(m.file_encoder);

  check_io(*step, m.io_step, "step");
  check_io(*prefill, m.io_prefill, "prefill");
  check_io(*decoder, m.io_decoder, "decoder");
  if (encoder) check_io(*encoder, m.io_encoder, "encoder");
  const int64_t L = m.n_layers, H = m.n_heads, K = m.num_tokens, Dh = m.head_dim, S = m.n_obs_steps;
  const int64_t cd = static_cast<int64_t>(m.fsq_levels.size());
  constexpr auto F = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  constexpr auto I = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
  const auto& si = m.io_step.inputs;
  const auto& so = m.io_step.outputs;
  check_tensor(*step, si[0], true, I, {0}, "step");
  check_tensor(*step, si[1], true, I, {1}, "step");
  auto past_shape = check_tensor(*step, si[2], true, F, {L, 0, H, K, Dh}, "step");
  check_tensor(*step, si[3], true, F, {L, 0, H, K, Dh}, "step");
  check_tensor(*step, si[4], true, F, {L, 0, H, S, Dh}, "step");
  check_tensor(*step, si[5], true, F, {L, 0, H, S, Dh}, "step");
  check_tensor(*step, so[0], false, F, {0, m.vocab_size}, "step");
  check_tensor(*step, so[1], false, F, {L, 0, H, 1, Dh}, "step");
  check_tensor(*step, so[2], false, F, {L, 0, H, 1, Dh}, "step");
  check_tensor(*prefill, m.io_prefill.inputs[0], true, F, {0, S, m.obs_dim}, "prefill");
  check_tensor(*prefill, m.io_prefill.outputs[0], false, F, {L, 0, H, S, Dh}, "prefill");
  check_tensor(*prefill, m.io_prefill.outputs[1], false, F, {L, 0, H, S, Dh}, "prefill");
  check_tensor(*decoder, m.io_decoder.inputs[0], true, F, {0, K, cd}, "decoder");
  check_tensor(*decoder, m.io_decoder.inputs[1], true, I, {0}, "decoder");
  check_tensor(*decoder, m.io_decoder.outputs[0], false, F, {0, m.horizon, m.action_dim}, "decoder");
  if (encoder) {
    check_tensor(*encoder, m.io_encoder.inputs[0], true, F, {0, m.horizon, m.action_dim}, "encoder");
    check_tensor(*encoder, m.io_encoder.outputs[0], false, I, {0, K}, "encoder");
  }
  // A graph exported with a fixed batch (e.g. for TensorRT/CUDA graphs) only accepts that batch.
  static_batch = past_shape[1] > 0 ? int(past_shape[1]) : 0;
  if (static_batch && opt.max_batch != static_batch) opt.max_batch = static_batch;

  step_names = Names(m.io_step);
  prefill_names = Names(m.io_prefill);
  decoder_names = Names(m.io_decoder);
  if (encoder) encoder_names = Names(m.io_encoder);
  fsq = std::make_unique<Fsq>(m.fsq_levels);
  sampler = std::make_unique<Sampler>(m.codebook_size);
  obs_norm = Normalizer(m.obs_scale, m.obs_offset);
  act_norm = Normalizer(m.action_scale, m.action_offset, m.action_low, m.action_high);
  kv = std::make_unique<KvCache>(KvDims{m.n_layers, m.n_heads, m.num_tokens, m.head_dim, m.n_obs_steps});
  rebind_each_run = factory->provider() != "CPUExecutionProvider";
  std::random_device rd;
  seed_stream = SplitMix64((uint64_t(rd()) << 32) ^ rd() ^ uint64_t(Clock::now().time_since_epoch().count()));
  ensure_capacity(opt.max_batch);
  bind(opt.max_batch);
  if (opt.max_batch > 1 && !static_batch) bind(1);  // the common robot case, ready without a first-call cost

  info = PolicyInfo{m.num_tokens, m.codebook_size, m.vocab_size, m.bos_id, m.horizon, m.action_dim,
                    m.n_obs_steps, m.obs_dim, m.n_action_steps, m.n_layers, m.n_heads, m.head_dim,
                    m.fsq_levels, m.temperature, m.top_k, factory->provider(), ort->version, ort->library,
                    dir, m.precision, m.tokenizer_kind, m.tasks, m.json_text};
}

void Policy::Impl::ensure_capacity(int batch) {
  if (static_batch && batch != static_batch)
    throw InputError("batch: this bundle was exported with a fixed batch of " + std::to_string(static_batch) +
                     ", got " + std::to_string(batch) + "; pass exactly that many rows or re-export with a dynamic batch");
  if (batch <= capacity) return;
  kv->reserve(batch);
  obs_n.assign(size_t(batch) * m.n_obs_steps * m.obs_dim, 0.f);
  logits.assign(size_t(batch) * m.vocab_size, 0.f);
  codes.assign(size_t(batch) * m.num_tokens * m.fsq_levels.size(), 0.f);
  actions.assign(size_t(batch) * m.horizon * m.action_dim, 0.f);
  token.assign(batch, 0);
  step_idx.assign(1, 0);
  ids.assign(size_t(batch) * m.num_tokens, -1);
  num_tokens.assign(batch, 0);
  capacity = batch;
  bound.clear();  // the old OrtValues point at freed buffers
}

void Policy::Impl::bind_step_inputs(Bound& b) {
  const auto& n = m.io_step.inputs;  // token, step, past_k, past_v, mem_k, mem_v
  b.binding->BindInput(n[0].c_str(), b.token);
  b.binding->BindInput(n[1].c_str(), b.step);
  b.binding->BindInput(n[2].c_str(), b.past_k);
  b.binding->BindInput(n[3].c_str(), b.past_v);
  b.binding->BindInput(n[4].c_str(), b.mem_k);
  b.binding->BindInput(n[5].c_str(), b.mem_v);
}

Policy::Impl::Bound& Policy::Impl::bind(int B) {
  ensure_capacity(B);
  auto it = bound.find(B);
  if (it != bound.end()) return *it->second;
  const int64_t L = m.n_layers, H = m.n_heads, K = m.num_tokens, Dh = m.head_dim, S = m.n_obs_steps;
  const int64_t cd = static_cast<int64_t>(m.fsq_levels.size());
  auto b = std::make_unique<Bound>();
  b->obs = tensor(obs_n.data(), size_t(B) * S * m.obs_dim, {B, S, m.obs_dim});
  b->mem_k = tensor(kv->mem_k(), kv->mem_count(B), {L, B, H, S, Dh});
  b->mem_v = tensor(kv->mem_v(), kv->mem_count(B), {L, B, H, S, Dh});
  b->token = tensor(token.data(), size_t(B), {B});
  b->step = tensor(step_idx.data(), 1, {1});
  b->past_k = tensor(kv->past_k(), kv->past_count(B), {L, B, H, K, Dh});
  b->past_v = tensor(kv->past_v(), kv->past_count(B), {L, B, H, K, Dh});
  b->logits = tensor(logits.data(), size_t(B) * m.vocab_size, {B, m.vocab_size});
  b->new_k = tensor(kv->new_k(), kv->new_count(B), {L, B, H, 1, Dh});
  b->new_v = tensor(kv->new_v(), kv->new_count(B), {L, B, H, 1, Dh});
  b->codes = tensor(codes.data(), size_t(B) * K * cd, {B, K, cd});
  b->num_tokens = tensor(num_tokens.data(), size_t(B), {B});
  b->actions = tensor(actions.data(), size_t(B) * m.horizon * m.action_dim, {B, m.horizon, m.action_dim});
  b->binding = std::make_unique<Ort::IoBinding>(*step);
  bind_step_inputs(*b);
  const auto& o = m.io_step.outputs;  // logits, new_k, new_v: written straight into our buffers
  b->binding->BindOutput(o[0].c_str(), b->logits);
  b->binding->BindOutput(o[1].c_str(), b->new_k);
  b->binding->BindOutput(o[2].c_str(), b->new_v);
  return *(bound[B] = std::move(b));
}

int Policy::Impl::generate_locked(const float* obs, int B, const ResolvedAct& r, ActStats& st) {
  const auto t_start = Clock::now();
  check_finite(obs, {size_t(B), size_t(m.n_obs_steps), size_t(m.obs_dim)}, "obs");
  Bound& b = bind(B);
  obs_norm.normalize(obs, size_t(B) * m.n_obs_steps, obs_n.data());

  auto t0 = Clock::now();
  OrtValue* in_v[1] = {b.obs};
  OrtValue* out_v[2] = {b.mem_k, b.mem_v};
  uint64_t a0 = allocs_now();
  Ort::ThrowOnError(Ort::GetApi().Run(*prefill, run_opts, prefill_names.in_c.data(), in_v, 1,
                                      prefill_names.out_c.data(), 2, out_v));
  ort_allocs += allocs_now() - a0;
  st.prefill_ms = ms_since(t0);

  const int K = m.num_tokens;
  std::fill(token.begin(), token.begin() + B, int64_t(m.bos_id));
  std::fill(ids.begin(), ids.begin() + size_t(B) * K, int64_t(-1));
  SplitMix64 rng(r.seed);
  double step_ms = 0;
  int t = 0;
  for (; t < r.max_tokens; ++t) {
    if (r.budget_ms > 0 && t >= r.min_tokens) {
      // anytime: stop if one more token (at the mean rate so far) plus decoding would overrun
      const double per_token = step_ms / t;
      if (ms_since(t_start) + per_token + decode_ms_estimate > r.budget_ms) break;
    }
    step_idx[0] = t;
    if (rebind_each_run) bind_step_inputs(b);
    auto ts = Clock::now();
    a0 = allocs_now();
    step->Run(run_opts, *b.binding);
    ort_allocs += allocs_now() - a0;
    step_ms += ms_since(ts);
    ++step_runs;
    if (t + 1 < r.max_tokens) kv->write_slot(B, t);
    for (int row = 0; row < B; ++row) {  // rows draw in order b = 0..B-1 (DESIGN §7)
      const int64_t id = sampler->sample(logits.data() + size_t(row) * m.vocab_size, r.temperature, r.top_k, rng);
      ids[size_t(row) * K + t] = id;
      token[row] = id;
    }
  }
  st.step_ms = step_ms;
  st.tokens_used = t;
  return t;
}

void Policy::Impl::decode_locked(int B, int k, float* out, ActStats& st) {
  const int K = m.num_tokens, cd = fsq->code_dim();
  std::fill(codes.begin(), codes.begin() + size_t(B) * K * cd, 0.f);  // slots >= k: ignored by the graph
  for (int row = 0; row < B; ++row) {
    fsq->ids_to_codes(ids.data() + size_t(row) * K, size_t(k), codes.data() + size_t(row) * K * cd);
    num_tokens[row] = k;
  }
  Bound& b = bind(B);
  auto t0 = Clock::now();
  OrtValue* in_v[2] = {b.codes, b.num_tokens};
  OrtValue* out_v[1] = {b.actions};
  const uint64_t a0 = allocs_now();
  Ort::ThrowOnError(Ort::GetApi().Run(*decoder, run_opts, decoder_names.in_c.data(), in_v, 2,
                                      decoder_names.out_c.data(), 1, out_v));
  ort_allocs += allocs_now() - a0;
  st.decode_ms = ms_since(t0);
  decode_ms_estimate = decode_ms_estimate == 0 ? st.decode_ms : 0.8 * decode_ms_estimate + 0.2 * st.decode_ms;
  const size_t n = size_t(B) * m.horizon * m.action_dim;
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(actions[i]))
      throw BundleError("the decoder graph produced a non-finite action (flat index " + std::to_string(i) +
                        "); the bundle is broken: re-export it and check the parity report");
  act_norm.unnormalize_clamped(actions.data(), size_t(B) * m.horizon, out);
}

// ---------------------------------------------------------------- public API

Policy::Policy(const std::string& path, const RuntimeOptions& options) {
  try {
    impl_ = std::make_unique<Impl>(path, options);
    if (impl_->opt.warmup) warm_up();
  } catch (const Error&) {
    throw;
  } catch (const Ort::Exception& e) {
    throw BundleError(std::string("ONNX Runtime rejected the bundle at ") + path + ": " + e.what() +
                      ". Re-export it, or check that the ONNX Runtime library is >= 1.21.");
  }
}

Policy::~Policy() = default;

// ORT sizes its arenas and memory plans on a graph's first runs: without this, the first act() in
// the control loop would pay those allocations, and their page faults, inside a control cycle
// (measured on the shipped bundle: about 60 page faults; scripts/compare_bundles.py). Greedy and sampled
// acts per bound batch size, on the observation that normalizes to 0; afterwards the cache and the
// counters are as after load, except that anytime mode already has a decoder-time estimate.
void Policy::warm_up() {
  const auto& m = impl_->m;
  std::vector<int> sizes{impl_->opt.max_batch};
  if (impl_->opt.max_batch > 1 && !impl_->static_batch) sizes.push_back(1);
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
    for (int i = 0; i < 2; ++i) act(obs.data(), B, out.data(), o);
    o.temperature = -1;
    for (int i = 0; i < 2; ++i) act(obs.data(), B, out.data(), o, &last);
  }
  impl_->kv->clear();
  impl_->step_runs = 0;
  // Anytime mode budgets the decoder by an average of its times: start it from a warm run, not
  // from the slow first ones.
  impl_->decode_ms_estimate = last.decode_ms;
}

const PolicyInfo& Policy::info() const { return impl_->info; }

uint64_t Policy::step_runs() const { return impl_->step_runs.load(std::memory_order_relaxed); }

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

// act() and generate() share everything but the output: validation, the locked AR loop with its
// KV-cache reset on failure, and the stats (timings, allocation counts). `finish(k, st)` writes
// the output while the lock is still held.
template <typename Finish>
int Policy::Impl::timed_generate(const float* obs, int batch, const void* out, const ActOptions& opt,
                                 ActStats* stats, Finish&& finish) {
  std::lock_guard<std::mutex> lock(mu);
  const auto t0 = Clock::now();
  const uint64_t alloc0 = allocs_now();
  ort_allocs = 0;
  check_batch(batch);
  check_ptr(obs, "obs");
  check_ptr(out, "out");
  ResolvedAct r = resolve_act(opt, m, seed_stream);
  ActStats st;
  int k = generate_locked_or_reset(obs, batch, r, st);
  finish(k, st);
  st.total_ms = ms_since(t0);
  st.overhead_ms = st.total_ms - (st.prefill_ms + st.step_ms + st.decode_ms);
  if (alloc_count) {
    st.allocs_total = static_cast<int64_t>(allocs_now() - alloc0);
    st.allocs_in_ort = static_cast<int64_t>(ort_allocs);
  }
  if (stats) *stats = st;
  return k;
}

int Policy::generate(const float* obs, int batch, int64_t* out_ids, const ActOptions& opt, ActStats* stats) {
  return guarded("generate", [&] {
    return impl_->timed_generate(obs, batch, out_ids, opt, stats, [&](int, ActStats&) {
      std::memcpy(out_ids, impl_->ids.data(), sizeof(int64_t) * size_t(batch) * impl_->m.num_tokens);
    });
  });
}

void Policy::act(const float* obs, int batch, float* out, const ActOptions& opt, ActStats* stats) {
  guarded("act", [&] {
    impl_->timed_generate(obs, batch, out, opt, stats,
                          [&](int k, ActStats& st) { impl_->decode_locked(batch, k, out, st); });
  });
}

void Policy::detokenize(const int64_t* ids, int batch, int k, float* out) {
  guarded("detokenize", [&] {
    std::lock_guard<std::mutex> lock(impl_->mu);
    const int K = impl_->m.num_tokens;
    check_batch(batch);
    check_ptr(ids, "ids");
    check_ptr(out, "out");
    if (k < 1 || k > K)
      throw InputError("k: expected 1.." + std::to_string(K) + " tokens per row, got " + std::to_string(k));
    check_ids(ids, batch, k, impl_->m.codebook_size);
    impl_->ensure_capacity(batch);
    for (int row = 0; row < batch; ++row)
      std::copy(ids + size_t(row) * k, ids + size_t(row + 1) * k, impl_->ids.begin() + size_t(row) * K);
    ActStats st;
    impl_->decode_locked(batch, k, out, st);
  });
}

void Policy::tokenize(const float* actions, int batch, int64_t* out_ids) {
  guarded("tokenize", [&] {
    std::lock_guard<std::mutex> lock(impl_->mu);
    Impl& p = *impl_;
    if (!p.encoder)
      throw InputError("tokenize: this bundle has no encoder graph (files.encoder absent); re-export with the encoder");
    check_batch(batch);
    check_ptr(actions, "actions");
    check_ptr(out_ids, "out_ids");
    const size_t rows = size_t(batch) * p.m.horizon, n = rows * p.m.action_dim;
    check_finite(actions, {size_t(batch), size_t(p.m.horizon), size_t(p.m.action_dim)}, "actions");
    std::vector<float> norm(n);  // not a hot path: plain allocation is fine
    p.act_norm.normalize(actions, rows, norm.data());
    std::vector<int64_t> shape{batch, p.m.horizon, p.m.action_dim};
    Ort::Value in = Ort::Value::CreateTensor<float>(p.cpu_mem, norm.data(), n, shape.data(), shape.size());
    auto outs = p.encoder->Run(p.run_opts, p.encoder_names.in_c.data(), &in, 1, p.encoder_names.out_c.data(), 1);
    auto info = outs[0].GetTensorTypeAndShapeInfo();
    const size_t want = size_t(batch) * p.m.num_tokens;
    if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64 || info.GetElementCount() != want)
      throw BundleError("encoder graph returned " + std::to_string(info.GetElementCount()) +
                        " elements (expected int64 [batch, K] = " + std::to_string(want) + "); re-export the bundle");
    std::memcpy(out_ids, outs[0].GetTensorData<int64_t>(), want * sizeof(int64_t));
  });
}

}  // namespace oat_edge
