#include "fsq.h"

#include <cmath>
#include <string>

#include "oat_edge/policy.h"

namespace oat_edge::detail {

Fsq::Fsq(std::vector<int> levels) : levels_(std::move(levels)) {
  if (levels_.empty()) throw InputError("fsq levels: expected a non-empty list, got []");
  for (int l : levels_) {
    if (l < 2) throw InputError("fsq levels: every level must be >= 2, got " + std::to_string(l));
    half_.push_back(l / 2);
    basis_.push_back(size_);
    size_ *= l;
  }
}

void Fsq::ids_to_codes(const int64_t* ids, size_t n, float* codes) const {
  const size_t d = levels_.size();
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < d; ++j) {
      const int64_t digit = (ids[i] / basis_[j]) % levels_[j];
      // exact in float: (digit - half) / half with half a small integer
      codes[i * d + j] = static_cast<float>(digit - half_[j]) / static_cast<float>(half_[j]);
    }
  }
}

int64_t Fsq::code_to_id(const float* code) const {
  int64_t id = 0;
  for (size_t j = 0; j < levels_.size(); ++j)
    id += (static_cast<int64_t>(std::nearbyint(code[j] * half_[j])) + half_[j]) * basis_[j];
  return id;
}

}  // namespace oat_edge::detail

namespace oat_edge {

void fsq_ids_to_codes(const std::vector<int>& levels, const int64_t* ids, size_t n, float* codes) {
  detail::Fsq fsq(levels);
  if (n > 0 && (!ids || !codes)) throw InputError("fsq_ids_to_codes: ids/codes must not be null for n > 0");
  for (size_t i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= fsq.codebook_size())
      throw InputError("fsq_ids_to_codes: ids[" + std::to_string(i) + "] = " + std::to_string(ids[i]) +
                       " is outside [0, " + std::to_string(fsq.codebook_size()) + ")");
  fsq.ids_to_codes(ids, n, codes);
}

}  // namespace oat_edge
