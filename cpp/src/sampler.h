// Token sampler + RNG (docs/DESIGN.md §7), bit-exact with python/oat_edge/sampling.py.
#pragma once

#include <cstdint>
#include <vector>

namespace oat_edge::detail {

class SplitMix64 {
 public:
  explicit SplitMix64(uint64_t seed = 0) : state_(seed) {}
  uint64_t next() {
    state_ += 0x9E3779B97F4A7C15ULL;
    uint64_t z = state_;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)

 private:
  uint64_t state_;
};

// Samples ids in [0, codebook_size) from one logits row; buffers are allocated once here,
// so sample() does no heap allocation (it runs once per token per row in the AR loop).
class Sampler {
 public:
  explicit Sampler(int codebook_size);
  // Greedy (no RNG draw) when temperature == 0 or top_k == 1; top_k == 0 means all candidates.
  // Callers validate temperature (finite, >= 0) and top_k (0..codebook_size).
  // Throws BundleError if the row holds NaN/Inf (a broken graph, never silently sampled).
  int64_t sample(const float* logits, double temperature, int top_k, SplitMix64& rng);
  int64_t greedy(const float* logits) const;

 private:
  void check_finite(const float* logits) const;
  int select_top_k(const float* logits, int k);  // fills order_[0..k), returns k
  static constexpr int kInsertionMaxK = 64;      // above: partial_sort
  int n_;
  std::vector<int32_t> order_;  // candidate ids
  std::vector<double> weight_;  // unnormalized weights of the candidates
  std::vector<float> top_val_;  // logits of the small-k candidate list
};

}  // namespace oat_edge::detail
