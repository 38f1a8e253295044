#include "input_checks.h"

#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "manifest.h"

namespace oat_edge {

const char* dtype_name(DType t) {
  switch (t) {
    case DType::Float32:
      return "float32";
    case DType::Float64:
      return "float64";
    case DType::Float16:
      return "float16";
    case DType::Int64:
      return "int64";
    case DType::Int32:
      return "int32";
    case DType::Int16:
      return "int16";
    case DType::Int8:
      return "int8";
    case DType::UInt8:
      return "uint8";
    case DType::UInt16:
      return "uint16";
    case DType::UInt32:
      return "uint32";
    case DType::UInt64:
      return "uint64";
    case DType::Bool:
      return "bool";
    case DType::Other:
      break;
  }
  return "an unsupported element type";
}

}  // namespace oat_edge

namespace oat_edge::detail {
namespace {

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

std::string num(double v) {
  if (std::isnan(v)) return "nan";
  if (std::isinf(v)) return v > 0 ? "inf" : "-inf";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

// `name`: expected lo..hi (what), got v. `what` is built only on failure: no heap on the hot path.
template <typename What>
int in_range(const char* name, int64_t v, int64_t lo, int64_t hi, What&& what) {
  if (v < lo || v > hi)
    throw InputError(std::string(name) + ": expected " + std::to_string(lo) + ".." + std::to_string(hi) + " (" +
                     std::string(what()) + "), got " + std::to_string(v));
  return static_cast<int>(v);
}

std::string shape_str(const int64_t* d, size_t rank, bool batch_symbol) {
  std::string s = "[";
  for (size_t i = 0; i < rank; ++i)
    s += (i ? ", " : "") + (d[i] < 0 ? std::string(i == 0 && batch_symbol ? "B" : "?") : std::to_string(d[i]));
  return s + "]";
}

}  // namespace

ResolvedAct resolve_act(const ActOptions& opt, const Manifest& m) {
  ResolvedAct r{};
  const int K = m.num_tokens;
  r.max_tokens = !opt.max_tokens ? K : in_range("max_tokens", *opt.max_tokens, 1, K, [&] {
    return "tokens to generate; K of this bundle is " + std::to_string(K);
  });
  r.min_tokens = !opt.min_tokens ? 1 : in_range("min_tokens", *opt.min_tokens, 1, r.max_tokens, [&] {
    return "at most max_tokens = " + std::to_string(r.max_tokens);
  });
  if (opt.temperature && !(std::isfinite(*opt.temperature) && *opt.temperature >= 0))
    throw InputError("temperature: expected a finite value >= 0 (0 = greedy; leave unset for the bundle's " +
                     num(m.temperature) + "), got " + num(*opt.temperature));
  r.temperature = opt.temperature ? *opt.temperature : m.temperature;
  r.top_k = opt.top_k ? in_range("top_k", *opt.top_k, 0, m.codebook_size, [] { return "0 = every id, 1 = greedy"; })
                      : m.top_k;
  r.seed = opt.seed;
  if (opt.latency_budget_ms && !(std::isfinite(*opt.latency_budget_ms) && *opt.latency_budget_ms > 0))
    throw InputError("latency_budget_ms: expected a finite value > 0 (leave unset for no budget), got " +
                     num(*opt.latency_budget_ms));
  r.budget_ms = opt.latency_budget_ms ? *opt.latency_budget_ms : 0.0;
  return r;
}

int check_range(const char* name, int64_t v, int64_t lo, int64_t hi, const char* what) {
  return in_range(name, v, lo, hi, [&] { return what; });
}

void check_runtime_options(const RuntimeOptions& o) {
  in_range("intra_op_threads", o.intra_op_threads, 0, kMaxIntraOpThreads, [] { return "0 = ORT's choice"; });
  in_range("batch_limit", o.batch_limit, 1, kMaxBatchLimit, [] { return "the largest batch a call accepts"; });
  in_range("max_batch", o.max_batch, 1, o.batch_limit, [] { return "rows allocated at load, at most batch_limit"; });
}

namespace {

// dtype, rank and dims of `v` against `want` (n dims, -1 = any). `hint(got)` adds to the message.
template <typename Hint>
int check_view_dims(const TensorView& v, std::string_view name, DType dtype, const int64_t* want, size_t n,
                    int batch_limit, int fixed_batch, Hint&& hint) {
  bool ok = v.dtype == dtype && v.rank == n;
  for (size_t i = 0; ok && i < n; ++i) ok = want[i] < 0 ? v.shape[i] >= 0 : v.shape[i] == want[i];
  if (!ok) {
    const size_t rank = v.rank <= TensorView::kMaxRank ? v.rank : TensorView::kMaxRank;
    throw InputError(std::string(name) + ": expected " + dtype_name(dtype) + " " + shape_str(want, n, true) + ", got " +
                     dtype_name(v.dtype) + " " + shape_str(v.shape.data(), rank, false) +
                     (v.rank > rank ? " (rank " + std::to_string(v.rank) + ")" : std::string()) + hint());
  }
  const int64_t batch = v.shape[0];
  if (batch < 1)
    throw InputError(std::string(name) + ": empty batch (B = " + std::to_string(batch) + "): pass at least one row");
  if (batch > batch_limit)
    throw InputError(std::string(name) + ": batch " + std::to_string(batch) + " is over this policy's batch_limit of " +
                     std::to_string(batch_limit) + "; split the batch, or raise RuntimeOptions::batch_limit");
  if (fixed_batch > 0 && batch != fixed_batch)
    throw InputError(std::string(name) + ": this bundle was exported with a fixed batch of " +
                     std::to_string(fixed_batch) + ", got " + std::to_string(batch) +
                     "; pass exactly that many rows or re-export with a dynamic batch");
  if (!v.data) throw InputError(std::string(name) + ": expected a valid buffer, got a null pointer");
  return static_cast<int>(batch);
}

std::string names_of(const std::vector<InputInfo>& inputs) {
  std::string s = "[";
  for (const auto& i : inputs) s += (s.size() > 1 ? ", " : "") + i.name;
  return s + "]";
}

}  // namespace

int check_view(const TensorView& v, const char* name, DType dtype, std::initializer_list<int64_t> dims, int batch_limit,
               int fixed_batch) {
  return check_view_dims(v, name, dtype, dims.begin(), dims.size(), batch_limit, fixed_batch,
                         [] { return std::string(); });
}

int check_input_view(const TensorView& v, const InputInfo& in, int batch_limit, int fixed_batch) {
  int64_t want[TensorView::kMaxRank];
  const size_t n = in.shape.size() + 1;
  if (n > TensorView::kMaxRank)  // the schema allows at most [S, H, W, 3]
    throw InputError(in.name + ": this runtime reads inputs of rank <= " + std::to_string(TensorView::kMaxRank));
  want[0] = -1;
  for (size_t i = 1; i < n; ++i) want[i] = in.shape[i - 1];
  const bool frame = in.dtype == DType::UInt8 && n == 5;
  return check_view_dims(v, in.name, in.dtype, want, n, batch_limit, fixed_batch, [&] {
    if (!frame) return std::string();
    if (v.dtype != DType::UInt8 &&
        (v.dtype == DType::Float32 || v.dtype == DType::Float64 || v.dtype == DType::Float16))
      return std::string(" (pass the camera's raw uint8 frames; the bundle crops and scales them itself)");
    if (v.rank == 5 && v.shape[2] == want[4] && v.shape[4] != want[4])
      return std::string(" (channels first: frames are channels last, [B, n_obs_steps, height, width, 3])");
    if (v.rank == 5 && v.shape[1] != want[1] && v.shape[2] == want[2] && v.shape[3] == want[3])
      return " (history of " + std::to_string(v.shape[1]) +
             " frames, this bundle reads n_obs_steps = " + std::to_string(want[1]) + ")";
    return std::string();
  });
}

[[noreturn]] void throw_needs_named_inputs(const std::vector<InputInfo>& expected) {
  throw InputError("obs: this bundle reads the named inputs " + names_of(expected) +
                   ": pass one array per name (Python: a dict {name: array}; C++: NamedTensorView), not a single "
                   "observation array");
}

int check_named_inputs(Span<const NamedTensorView> given, const std::vector<InputInfo>& expected, int batch_limit,
                       int fixed_batch, std::vector<const TensorView*>& views) {
  views.assign(expected.size(), nullptr);
  if (given.size && !given.data) throw InputError("inputs: expected a valid buffer of named views, got a null pointer");
  bool bad = false;
  for (size_t g = 0; g < given.size; ++g) {
    size_t e = 0;
    while (e < expected.size() && expected[e].name != given.data[g].name) ++e;
    if (e == expected.size() || views[e]) bad = true;
    else views[e] = &given.data[g].view;
  }
  for (const TensorView* v : views) bad = bad || !v;
  if (bad) {  // say everything that is wrong with the names at once
    std::string missing, unexpected, twice;
    for (size_t e = 0; e < expected.size(); ++e)
      if (!views[e]) missing += (missing.empty() ? "'" : ", '") + expected[e].name + "'";
    for (size_t g = 0; g < given.size; ++g) {
      const std::string_view n = given.data[g].name;
      size_t seen = 0, known = 0;
      for (size_t h = 0; h < given.size; ++h) seen += given.data[h].name == n && h < g;
      for (const auto& e : expected) known += e.name == n;
      if (seen) {
        if (twice.find("'" + std::string(n) + "'") == std::string::npos)
          twice += (twice.empty() ? "'" : ", '") + std::string(n) + "'";
      } else if (!known) {
        unexpected += (unexpected.empty() ? "'" : ", '") + std::string(n) + "'";
      }
    }
    throw InputError(
        "inputs: expected exactly the names " + names_of(expected) + (missing.empty() ? "" : "; missing " + missing) +
        (unexpected.empty() ? "" : "; unknown " + unexpected) + (twice.empty() ? "" : "; given twice " + twice));
  }
  int batch = 0;
  const std::string* first = nullptr;
  for (size_t e = 0; e < expected.size(); ++e) {
    const int b = check_input_view(*views[e], expected[e], batch_limit, fixed_batch);
    if (first && b != batch)
      throw InputError(expected[e].name + ": batch " + std::to_string(b) + ", but " + *first + " has batch " +
                       std::to_string(batch) + ": every input needs the same batch (rows are observations)");
    if (!first) batch = b, first = &expected[e].name;
  }
  for (size_t e = 0; e < expected.size(); ++e) {
    if (expected[e].dtype != DType::Float32) continue;
    size_t n = size_t(batch);
    for (int64_t d : expected[e].shape) n *= size_t(d);
    const auto* x = static_cast<const float*>(views[e]->data);
    for (size_t i = 0; i < n; ++i)
      if (!std::isfinite(x[i])) {
        std::vector<size_t> dims{size_t(batch)};
        for (int64_t d : expected[e].shape) dims.push_back(size_t(d));
        throw InputError(expected[e].name + index_str(i, dims) + " (flat index " + std::to_string(i) + ") is " +
                         (std::isnan(x[i]) ? "NaN" : "Inf") +
                         ": expected finite values; fix or drop the bad sensor reading");
      }
  }
  return batch;
}

void check_span(const void* data, size_t size, size_t want, const char* name, const char* shape) {
  if (size != want)
    throw InputError(std::string(name) + ": expected a buffer of " + std::to_string(want) + " elements (" + shape +
                     "), got " + std::to_string(size));
  if (!data) throw InputError(std::string(name) + ": expected a valid buffer, got a null pointer");
}

void check_finite(const float* x, std::initializer_list<size_t> dims, const char* what) {
  size_t n = 1;
  for (size_t d : dims) n *= d;
  for (size_t i = 0; i < n; ++i)
    if (!std::isfinite(x[i]))
      throw InputError(std::string(what) + index_str(i, std::vector<size_t>(dims)) + " (flat index " +
                       std::to_string(i) + ") is " + (std::isnan(x[i]) ? "NaN" : "Inf") +
                       ": expected finite values; fix or drop the bad sensor reading");
}

void check_ids(const int64_t* ids, int batch, int k, int64_t codebook_size) {
  for (size_t i = 0; i < size_t(batch) * size_t(k); ++i)
    if (ids[i] < 0 || ids[i] >= codebook_size)
      throw InputError("ids" + index_str(i, {size_t(batch), size_t(k)}) + " = " + std::to_string(ids[i]) +
                       ": expected a token id in [0, " + std::to_string(codebook_size) +
                       ") (a -1 marks a token generate() did not produce: pass only the first tokens_used)");
}

}  // namespace oat_edge::detail
