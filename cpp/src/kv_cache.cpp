#include "kv_cache.h"

#include <algorithm>
#include <cstring>

namespace oat_edge::detail {

bool KvCache::reserve(int batch) {
  if (batch <= capacity_) return false;
  // value-initialised (zeros): masked slots must never hold NaN bit patterns (0 * NaN = NaN in attention)
  past_k_.assign(past_count(batch), 0.0f);
  past_v_.assign(past_count(batch), 0.0f);
  new_k_.assign(new_count(batch), 0.0f);
  new_v_.assign(new_count(batch), 0.0f);
  mem_k_.assign(mem_count(batch), 0.0f);
  mem_v_.assign(mem_count(batch), 0.0f);
  capacity_ = batch;
  return true;
}

void KvCache::clear() {
  for (auto* v : {&past_k_, &past_v_, &new_k_, &new_v_, &mem_k_, &mem_v_}) std::fill(v->begin(), v->end(), 0.0f);
}

void KvCache::write_slot(int batch, int t) {
  const size_t rows = size_t(d_.layers) * batch * d_.heads;  // (l, b, h) rows, same order in both layouts
  const size_t dh = d_.head_dim, row_past = size_t(d_.slots) * dh;
  const size_t bytes = dh * sizeof(float);
  for (size_t r = 0; r < rows; ++r) {
    std::memcpy(past_k_.data() + r * row_past + size_t(t) * dh, new_k_.data() + r * dh, bytes);
    std::memcpy(past_v_.data() + r * row_past + size_t(t) * dh, new_v_.data() + r * dh, bytes);
  }
}

}  // namespace oat_edge::detail
