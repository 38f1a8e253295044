#include "normalizer.h"

#include <algorithm>

namespace oat_edge::detail {

Normalizer::Normalizer(std::vector<float> scale, std::vector<float> offset, std::vector<float> low,
                       std::vector<float> high)
    : scale_(std::move(scale)), offset_(std::move(offset)), low_(std::move(low)), high_(std::move(high)) {}

void Normalizer::normalize(const float* x, size_t rows, float* out) const {
  const size_t d = scale_.size();
  for (size_t r = 0; r < rows; ++r)
    for (size_t j = 0; j < d; ++j) out[r * d + j] = x[r * d + j] * scale_[j] + offset_[j];
}

void Normalizer::unnormalize_clamped(const float* x_norm, size_t rows, float* out) const {
  const size_t d = scale_.size();
  const bool bounded = low_.size() == d && high_.size() == d;
  for (size_t r = 0; r < rows; ++r)
    for (size_t j = 0; j < d; ++j) {
      float v = std::clamp(x_norm[r * d + j], -1.0f, 1.0f);
      v = (v - offset_[j]) / scale_[j];
      if (bounded) v = std::clamp(v, low_[j], high_[j]);
      out[r * d + j] = v;
    }
}

}  // namespace oat_edge::detail
