#include "sampler.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>
#include <string>

#include "oat_edge/policy.h"

namespace oat_edge::detail {

Sampler::Sampler(int codebook_size)
    : n_(codebook_size), order_(codebook_size), weight_(codebook_size), top_val_(kInsertionMaxK) {}

void Sampler::check_finite(const float* logits) const {
  // Branch-free OR over the exponent bits (vectorizes); the slow search runs only on failure.
  uint32_t bad = 0;
  for (int i = 0; i < n_; ++i) {
    uint32_t bits;
    std::memcpy(&bits, logits + i, sizeof bits);
    bad |= static_cast<uint32_t>((bits & 0x7f800000u) == 0x7f800000u);
  }
  if (!bad) return;
  for (int i = 0; i < n_; ++i)
    if (!std::isfinite(logits[i]))
      throw BundleError("the step graph produced a non-finite logit (id " + std::to_string(i) +
                        "); the bundle's weights or inputs are broken: re-export it and check the parity report");
}

int64_t Sampler::greedy(const float* logits) const {
  int best = 0;
  for (int i = 1; i < n_; ++i)
    if (logits[i] > logits[best]) best = i;  // strict: lowest id wins ties
  return best;
}

// Top-k candidates in order (descending logit, ties by lower id == numpy argsort(-l, kind="stable")).
int Sampler::select_top_k(const float* logits, int k) {
  if (k > kInsertionMaxK) {
    std::iota(order_.begin(), order_.end(), 0);
    auto before = [logits](int32_t a, int32_t b) { return logits[a] > logits[b] || (logits[a] == logits[b] && a < b); };
    std::partial_sort(order_.begin(), order_.begin() + k, order_.end(), before);
    return k;
  }
  // Small k: one pass, keep a sorted top-k list; ids arrive ascending, so an equal logit never
  // displaces an earlier (lower) id — exactly the tie rule.
  int cnt = 0;
  for (int i = 0; i < n_; ++i) {
    const float x = logits[i];
    if (cnt == k && !(x > top_val_[k - 1])) continue;
    int j = cnt < k ? cnt++ : k - 1;
    while (j > 0 && top_val_[j - 1] < x) {
      top_val_[j] = top_val_[j - 1];
      order_[j] = order_[j - 1];
      --j;
    }
    top_val_[j] = x;
    order_[j] = i;
  }
  return cnt;
}

int64_t Sampler::sample(const float* logits, double temperature, int top_k, SplitMix64& rng) {
  check_finite(logits);
  if (temperature == 0.0 || top_k == 1) return greedy(logits);
  const int k = select_top_k(logits, (top_k <= 0 || top_k > n_) ? n_ : top_k);
  const double lmax = logits[order_[0]];
  // Weights in double, summed sequentially in candidate order.
  double total = 0.0;
  for (int i = 0; i < k; ++i) {
    weight_[i] = std::exp((static_cast<double>(logits[order_[i]]) - lmax) / temperature);
    total += weight_[i];
  }
  const double r = rng.uniform() * total;
  double acc = 0.0;
  for (int i = 0; i < k; ++i) {
    acc += weight_[i];
    if (acc > r) return order_[i];
  }
  return order_[k - 1];  // rounding left none
}

}  // namespace oat_edge::detail
