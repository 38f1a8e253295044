#include "detokenizer.h"

#include <algorithm>
#include <cmath>
#include <string>

namespace oat_edge::detail {

Detokenizer::Detokenizer(Bundle& bundle, RunMeter& meter)
    : bundle_(bundle),
      m_(bundle.m),
      meter_(meter),
      cpu_mem_(Ort::MemoryInfo::CreateCpu(OrtDeviceAllocator, OrtMemTypeCPU)),
      fsq_(m_.fsq_levels),
      act_norm_(m_.action_scale, m_.action_offset, m_.action_low, m_.action_high) {}

void Detokenizer::reserve(int batch) {
  if (batch <= capacity_) return;
  codes_.assign(size_t(batch) * m_.num_tokens * m_.fsq_levels.size(), 0.f);
  actions_.assign(size_t(batch) * m_.horizon * m_.action_dim, 0.f);
  num_tokens_.assign(batch, 0);
  capacity_ = batch;
  bound_.clear();  // the old OrtValues point at freed buffers
}

void Detokenizer::bind(int B) {
  reserve(B);
  if (bound_.count(B)) return;
  const int64_t K = m_.num_tokens, cd = fsq_.code_dim();
  auto b = std::make_unique<Bound>();
  b->codes = cpu_tensor(cpu_mem_, codes_.data(), size_t(B) * K * cd, {B, K, cd});
  b->num_tokens = cpu_tensor(cpu_mem_, num_tokens_.data(), size_t(B), {B});
  b->actions =
      cpu_tensor(cpu_mem_, actions_.data(), size_t(B) * m_.horizon * m_.action_dim, {B, m_.horizon, m_.action_dim});
  bound_[B] = std::move(b);
}

double Detokenizer::decode(const int64_t* ids, size_t row_stride, int B, int k, float* out) {
  bind(B);
  const int K = m_.num_tokens, cd = fsq_.code_dim();
  std::fill(codes_.begin(), codes_.begin() + size_t(B) * K * cd, 0.f);  // slots >= k: ignored by the graph
  for (int row = 0; row < B; ++row) {
    fsq_.ids_to_codes(ids + size_t(row) * row_stride, size_t(k), codes_.data() + size_t(row) * K * cd);
    num_tokens_[row] = k;
  }
  Bound& b = *bound_[B];
  const GraphNames& n = bundle_.decoder.names;
  OrtValue* in_v[2] = {b.codes, b.num_tokens};
  OrtValue* out_v[1] = {b.actions};
  const double ms = meter_.run([&] {
    Ort::ThrowOnError(
        Ort::GetApi().Run(*bundle_.decoder.session, run_opts_, n.in_c.data(), in_v, 2, n.out_c.data(), 1, out_v));
  });
  estimate_ms_ = estimate_ms_ == 0 ? ms : 0.8 * estimate_ms_ + 0.2 * ms;
  const size_t count = size_t(B) * m_.horizon * m_.action_dim;
  for (size_t i = 0; i < count; ++i)
    if (!std::isfinite(actions_[i]))
      throw BundleError("the decoder graph produced a non-finite action (flat index " + std::to_string(i) +
                        "); the bundle is broken: re-export it and check the parity report");
  act_norm_.unnormalize_clamped(actions_.data(), size_t(B) * m_.horizon, out);
  return ms;
}

}  // namespace oat_edge::detail
