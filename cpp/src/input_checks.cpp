#include "input_checks.h"

#include <cmath>
#include <string>

#include "manifest.h"
#include "sampler.h"

namespace oat_edge::detail {
namespace {
// ActOptions uses exactly -1 as "bundle default"; other negative values are caller mistakes.
constexpr double kDefaultTemperature = -1.0;
constexpr int kDefaultTopK = -1;

std::string index_str(size_t flat, const std::vector<size_t>& dims) {
  std::string s;
  size_t rem = flat;
  std::vector<size_t> idx(dims.size());
  for (size_t i = dims.size(); i-- > 0;) {
    idx[i] = rem % dims[i];
    rem /= dims[i];
  }
  for (size_t i : idx) s += "[" + std::to_string(i) + "]";
  return s;
}
}  // namespace

void check_batch(int batch) {
  if (batch < 1) throw InputError("batch: expected >= 1, got " + std::to_string(batch));
}

void check_ptr(const void* p, const char* what) {
  if (!p) throw InputError(std::string(what) + ": expected a valid buffer, got a null pointer");
}

void check_finite(const float* x, std::initializer_list<size_t> dims, const char* what) {
  size_t n = 1;
  for (size_t d : dims) n *= d;
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i]))
      throw InputError(std::string(what) + index_str(i, std::vector<size_t>(dims)) + " (flat index " + std::to_string(i) + ") is " +
                       (std::isnan(x[i]) ? "NaN" : "Inf") + ": expected finite values; fix or drop the bad sensor reading");
}

void check_ids(const int64_t* ids, int batch, int k, int64_t codebook_size) {
  for (size_t i = 0; i < size_t(batch) * size_t(k); ++i)
    if (ids[i] < 0 || ids[i] >= codebook_size)
      throw InputError("ids" + index_str(i, {size_t(batch), size_t(k)}) + " = " + std::to_string(ids[i]) +
                       ": expected a token id in [0, " + std::to_string(codebook_size) + ")");
}

ResolvedAct resolve_act(const ActOptions& opt, const Manifest& m, SplitMix64& seed_stream) {
  ResolvedAct r{};
  const int K = m.num_tokens;
  if (opt.max_tokens < 0 || opt.max_tokens > K)
    throw InputError("max_tokens: expected 1.." + std::to_string(K) + " (0 = all " + std::to_string(K) + "), got " +
                     std::to_string(opt.max_tokens));
  r.max_tokens = opt.max_tokens == 0 ? K : opt.max_tokens;

  if (std::isnan(opt.temperature) || std::isinf(opt.temperature) ||
      (opt.temperature < 0 && opt.temperature != kDefaultTemperature))
    throw InputError("temperature: expected a finite value >= 0 (0 = greedy) or -1 for the bundle default, got " +
                     std::to_string(opt.temperature));
  r.temperature = opt.temperature == kDefaultTemperature ? m.temperature : opt.temperature;

  if ((opt.top_k < 0 && opt.top_k != kDefaultTopK) || opt.top_k > m.codebook_size)
    throw InputError("top_k: expected 0.." + std::to_string(m.codebook_size) +
                     " (0 = no cut) or -1 for the bundle default, got " + std::to_string(opt.top_k));
  r.top_k = opt.top_k == kDefaultTopK ? m.top_k : opt.top_k;

  if (std::isnan(opt.latency_budget_ms) || opt.latency_budget_ms < 0)
    throw InputError("latency_budget_ms: expected >= 0 (0 = off), got " + std::to_string(opt.latency_budget_ms));
  r.budget_ms = opt.latency_budget_ms;
  if (opt.min_tokens < 1 || opt.min_tokens > K)
    throw InputError("min_tokens: expected 1.." + std::to_string(K) + ", got " + std::to_string(opt.min_tokens));
  r.min_tokens = opt.min_tokens < r.max_tokens ? opt.min_tokens : r.max_tokens;

  r.seed = opt.seed ? *opt.seed : seed_stream.next();
  return r;
}

}  // namespace oat_edge::detail
