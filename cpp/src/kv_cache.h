// Self-attention KV cache + cross-attention memory for the step graph (docs/DESIGN.md §5).
// Buffers are allocated once for a batch capacity and reused; per token the runtime only copies
// the graph's new_k/new_v [L,B,H,1,Dh] into slot t of past_k/past_v [L,B,H,K,Dh].
#pragma once

#include <cstddef>
#include <vector>

namespace oat_edge::detail {

struct KvDims {
  int layers = 0, heads = 0, slots = 0, head_dim = 0, mem_steps = 0;  // L, H, K, Dh, n_obs_steps
};

class KvCache {
 public:
  explicit KvCache(const KvDims& d) : d_(d) {}
  const KvDims& dims() const { return d_; }
  int capacity() const { return capacity_; }
  // Grows the buffers to hold `batch` rows (never shrinks). Returns true if it reallocated
  // (every OrtValue/IoBinding over the old buffers must then be rebuilt).
  bool reserve(int batch);

  size_t past_count(int batch) const { return size_t(d_.layers) * batch * d_.heads * d_.slots * d_.head_dim; }
  size_t new_count(int batch) const { return size_t(d_.layers) * batch * d_.heads * d_.head_dim; }
  size_t mem_count(int batch) const { return size_t(d_.layers) * batch * d_.heads * d_.mem_steps * d_.head_dim; }

  float* past_k() { return past_k_.data(); }
  float* past_v() { return past_v_.data(); }
  float* new_k() { return new_k_.data(); }
  float* new_v() { return new_v_.data(); }
  float* mem_k() { return mem_k_.data(); }
  float* mem_v() { return mem_v_.data(); }

  // past[l,b,h,t,:] = new[l,b,h,0,:] for both K and V, with the layout of a `batch`-row tensor.
  void write_slot(int batch, int t);

  // Zero every buffer (keeps the allocation). After a failed run the slots may hold NaN/Inf, and the
  // additive mask cannot hide those (NaN + -inf = NaN): without this one bad call poisons all later ones.
  void clear();

 private:
  KvDims d_;
  int capacity_ = 0;
  std::vector<float> past_k_, past_v_, new_k_, new_v_, mem_k_, mem_v_;
};

}  // namespace oat_edge::detail
