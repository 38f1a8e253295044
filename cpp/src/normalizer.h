// Per-dimension affine (de)normalization (docs/DESIGN.md §4): x_norm = x * scale + offset.
#pragma once

#include <cstddef>
#include <vector>

namespace oat_edge::detail {

class Normalizer {
 public:
  Normalizer() = default;
  Normalizer(std::vector<float> scale, std::vector<float> offset, std::vector<float> low = {},
             std::vector<float> high = {});
  size_t dim() const { return scale_.size(); }
  // rows of dim() values
  void normalize(const float* x, size_t rows, float* out) const;
  // clamps x_norm to [-1, 1], unnormalizes, then clamps to [low, high] (float rounding)
  void unnormalize_clamped(const float* x_norm, size_t rows, float* out) const;

 private:
  std::vector<float> scale_, offset_, low_, high_;
};

}  // namespace oat_edge::detail
