// Validation of call arguments at the API boundary: every bad input becomes an InputError that
// says what was expected, what was given and what to do.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <vector>

#include "oat_edge/policy.h"

namespace oat_edge::detail {

struct Manifest;
class SplitMix64;

struct ResolvedAct {
  int max_tokens;        // 1..K
  double temperature;    // >= 0, finite
  int top_k;             // 0..codebook_size
  uint64_t seed;
  double budget_ms;      // 0 = off
  int min_tokens;        // 1..max_tokens
};

// Fills bundle defaults (-1 sentinels), draws a seed from seed_stream when opt.seed is unset.
ResolvedAct resolve_act(const ActOptions& opt, const Manifest& m, SplitMix64& seed_stream);

void check_batch(int batch);
void check_ptr(const void* p, const char* what);
// First NaN/Inf in x (shape dims, row-major) → InputError naming its index.
void check_finite(const float* x, std::initializer_list<size_t> dims, const char* what);  // no heap on success
// ids [batch, k] in [0, codebook_size)
void check_ids(const int64_t* ids, int batch, int k, int64_t codebook_size);

}  // namespace oat_edge::detail
