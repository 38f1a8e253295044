// FSQ implicit codebook (docs/DESIGN.md §3): id <-> code vector, no learned table.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace oat_edge::detail {

class Fsq {
 public:
  explicit Fsq(std::vector<int> levels);  // levels[i] >= 2
  int code_dim() const { return static_cast<int>(levels_.size()); }
  int64_t codebook_size() const { return size_; }
  // ids must lie in [0, codebook_size) (callers validate at the API boundary).
  void ids_to_codes(const int64_t* ids, size_t n, float* codes) const;
  int64_t code_to_id(const float* code) const;

 private:
  std::vector<int> levels_, half_;
  std::vector<int64_t> basis_;
  int64_t size_ = 1;
};

}  // namespace oat_edge::detail
