#include "generator.h"

#include <algorithm>
#include <cstring>

namespace oat_edge::detail {

Generator::Generator(Bundle& bundle, RunMeter& meter, bool rebind_each_run)
    : bundle_(bundle),
      m_(bundle.m),
      meter_(meter),
      rebind_each_run_(rebind_each_run),
      cpu_mem_(Ort::MemoryInfo::CreateCpu(OrtDeviceAllocator, OrtMemTypeCPU)),
      obs_norm_(m_.obs_scale, m_.obs_offset),
      sampler_(m_.codebook_size),
      kv_(KvDims{m_.n_layers, m_.n_heads, m_.num_tokens, m_.head_dim, m_.n_obs_steps}) {
  named_.resize(m_.observation.size());
  named_ptrs_.assign(m_.observation.size(), nullptr);
}

void Generator::reserve(int batch) {
  if (batch <= capacity_) return;
  kv_.reserve(batch);
  if (m_.observation.empty()) obs_n_.assign(size_t(batch) * m_.n_obs_steps * m_.obs_dim, 0.f);
  logits_.assign(size_t(batch) * m_.vocab_size, 0.f);
  token_.assign(batch, 0);
  step_idx_.assign(1, 0);
  ids_.assign(size_t(batch) * m_.num_tokens, -1);
  capacity_ = batch;
  bound_.clear();  // the old OrtValues point at freed buffers
}

void Generator::bind_step_inputs(Bound& b) {
  const auto& n = m_.io_step.inputs;  // token, step, past_k, past_v, mem_k, mem_v
  b.binding->BindInput(n[0].c_str(), b.token);
  b.binding->BindInput(n[1].c_str(), b.step);
  b.binding->BindInput(n[2].c_str(), b.past_k);
  b.binding->BindInput(n[3].c_str(), b.past_v);
  b.binding->BindInput(n[4].c_str(), b.mem_k);
  b.binding->BindInput(n[5].c_str(), b.mem_v);
}

void Generator::bind(int B) {
  reserve(B);
  if (bound_.count(B)) return;
  const int64_t L = m_.n_layers, H = m_.n_heads, K = m_.num_tokens, Dh = m_.head_dim, S = m_.n_obs_steps;
  auto b = std::make_unique<Bound>();
  if (m_.observation.empty())
    b->obs = cpu_tensor(cpu_mem_, obs_n_.data(), size_t(B) * S * m_.obs_dim, {B, S, m_.obs_dim});
  b->mem_k = cpu_tensor(cpu_mem_, kv_.mem_k(), kv_.mem_count(B), {L, B, H, S, Dh});
  b->mem_v = cpu_tensor(cpu_mem_, kv_.mem_v(), kv_.mem_count(B), {L, B, H, S, Dh});
  b->token = cpu_tensor(cpu_mem_, token_.data(), size_t(B), {B});
  b->step = cpu_tensor(cpu_mem_, step_idx_.data(), 1, {1});
  b->past_k = cpu_tensor(cpu_mem_, kv_.past_k(), kv_.past_count(B), {L, B, H, K, Dh});
  b->past_v = cpu_tensor(cpu_mem_, kv_.past_v(), kv_.past_count(B), {L, B, H, K, Dh});
  b->logits = cpu_tensor(cpu_mem_, logits_.data(), size_t(B) * m_.vocab_size, {B, m_.vocab_size});
  b->new_k = cpu_tensor(cpu_mem_, kv_.new_k(), kv_.new_count(B), {L, B, H, 1, Dh});
  b->new_v = cpu_tensor(cpu_mem_, kv_.new_v(), kv_.new_count(B), {L, B, H, 1, Dh});
  b->binding = std::make_unique<Ort::IoBinding>(*bundle_.step.session);
  bind_step_inputs(*b);
  const auto& o = m_.io_step.outputs;  // logits, new_k, new_v: written straight into our buffers
  b->binding->BindOutput(o[0].c_str(), b->logits);
  b->binding->BindOutput(o[1].c_str(), b->new_k);
  b->binding->BindOutput(o[2].c_str(), b->new_v);
  bound_[B] = std::move(b);
}

int Generator::run(const PrefillInput& in, int batch, const ResolvedAct& r, double decode_ms_estimate, ActStats& st) {
  try {
    return run_unguarded(in, batch, r, decode_ms_estimate, st);
  } catch (...) {
    kv_.clear();
    throw;
  }
}

void Generator::prefill(Bound& b, ActStats& st) {
  const GraphNames& n = bundle_.prefill.names;
  OrtValue* in_v[1] = {b.obs};
  OrtValue* out_v[2] = {b.mem_k, b.mem_v};
  st.prefill_ms = meter_.run([&] {
    Ort::ThrowOnError(
        Ort::GetApi().Run(*bundle_.prefill.session, run_opts_, n.in_c.data(), in_v, 1, n.out_c.data(), 2, out_v));
  });
}

// The caller's views as ORT tensors, in place: ORT only reads inputs, hence the const_cast.
void Generator::prefill_named(Bound& b, const std::vector<const TensorView*>& views, ActStats& st) {
  const GraphNames& n = bundle_.prefill.names;  // the spec's names, in the spec's order, as `views`
  for (size_t i = 0; i < views.size(); ++i) {
    const TensorView& v = *views[i];
    NamedSlot& slot = named_[i];
    if (!slot.value || slot.data != v.data || slot.rank != v.rank || slot.shape != v.shape) {
      const bool u8 = v.dtype == DType::UInt8;
      size_t count = 1;
      for (size_t d = 0; d < v.rank; ++d) count *= size_t(v.shape[d]);
      slot.value = Ort::Value(nullptr);  // never left pointing at a buffer of another shape
      slot.value = Ort::Value::CreateTensor(
          cpu_mem_, const_cast<void*>(v.data), count * (u8 ? 1 : sizeof(float)), v.shape.data(), v.rank,
          u8 ? ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8 : ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT);
      slot.data = v.data;
      slot.shape = v.shape;
      slot.rank = v.rank;
    }
    named_ptrs_[i] = slot.value;
  }
  OrtValue* out_v[2] = {b.mem_k, b.mem_v};
  st.prefill_ms = meter_.run([&] {
    Ort::ThrowOnError(Ort::GetApi().Run(*bundle_.prefill.session, run_opts_, n.in_c.data(), named_ptrs_.data(),
                                        views.size(), n.out_c.data(), 2, out_v));
  });
}

int Generator::run_unguarded(const PrefillInput& in, int B, const ResolvedAct& r, double decode_ms_estimate,
                             ActStats& st) {
  const auto t_start = Clock::now();
  if (!in.named) check_finite(in.obs, {size_t(B), size_t(m_.n_obs_steps), size_t(m_.obs_dim)}, "obs");
  bind(B);
  Bound& b = *bound_[B];
  if (in.named) {
    prefill_named(b, *in.named, st);
  } else {
    obs_norm_.normalize(in.obs, size_t(B) * m_.n_obs_steps, obs_n_.data());
    prefill(b, st);
  }

  const int K = m_.num_tokens;
  std::fill(token_.begin(), token_.begin() + B, int64_t(m_.bos_id));
  std::fill(ids_.begin(), ids_.begin() + size_t(B) * K, int64_t(-1));
  SplitMix64 rng(r.seed.value_or(0));  // the caller fills an unset seed
  double step_ms = 0;
  int t = 0;
  for (; t < r.max_tokens; ++t) {
    if (r.budget_ms > 0 && t >= r.min_tokens) {
      // anytime: stop if one more token (at the mean rate so far) plus decoding would overrun
      const double per_token = step_ms / t;
      if (ms_since(t_start) + per_token + decode_ms_estimate > r.budget_ms) break;
    }
    step_idx_[0] = t;
    if (rebind_each_run_) bind_step_inputs(b);
    step_ms += meter_.run([&] { bundle_.step.session->Run(run_opts_, *b.binding); });
    ++step_runs_;
    if (t + 1 < r.max_tokens) kv_.write_slot(B, t);
    for (int row = 0; row < B; ++row) {  // rows draw in order b = 0..B-1 (DESIGN §7)
      const int64_t id = sampler_.sample(logits_.data() + size_t(row) * m_.vocab_size, r.temperature, r.top_k, rng);
      ids_[size_t(row) * K + t] = id;
      token_[row] = id;
    }
  }
  st.step_ms = step_ms;
  st.tokens_used = t;
  return t;
}

}  // namespace oat_edge::detail
