// oat_edge C++ runtime: public API of the core library (no Python needed).
// Contract: docs/DESIGN.md. Everything here is usable from a ROS 2 node or a C++ control stack.
//
// Conventions of this header:
//  - Buffers are never owned by the library: a call reads its inputs and writes its outputs during
//    the call and keeps no pointer afterwards. Every buffer comes with its size (TensorView: shape
//    and element type; Span: element count), and a size that does not match is an InputError
//    before anything is read or written.
//  - An option left unset (std::nullopt) takes the documented default; a set value is checked
//    against its range and never reinterpreted (no magic -1 or 0).
//  - Every failure is one of the Error subclasses below, with what was expected, what was given
//    and what to do.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "oat_edge/version.h"

namespace oat_edge {

// ---- errors
struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
struct InputError : Error {
  using Error::Error;
};  // bad call arguments (shape, dtype, NaN, range...)
struct BundleError : Error {
  using Error::Error;
};  // missing/corrupt/incompatible bundle
struct RuntimeLoadError : Error {
  using Error::Error;
};  // ORT library missing/too old, EP unavailable

// ---- buffers

// Element type of a TensorView. float32, int64 and uint8 (camera frames) are read; the others exist
// so that a caller's wrong dtype is named in the error.
enum class DType { Float32, Float64, Float16, Int64, Int32, Int16, Int8, UInt8, UInt16, UInt32, UInt64, Bool, Other };
const char* dtype_name(DType t);  // "float32", "int64", ...; Other: "an unsupported element type"

// A read-only, caller-owned, C-contiguous (row-major) array: data, element type and shape.
struct TensorView {
  static constexpr size_t kMaxRank = 6;
  const void* data = nullptr;
  DType dtype = DType::Other;
  std::array<int64_t, kMaxRank> shape{};  // the first `rank` entries are the dims
  size_t rank = 0;

  TensorView() = default;
  // dims: at most kMaxRank entries (more is an InputError when the view is used).
  TensorView(const float* p, std::initializer_list<int64_t> dims) : TensorView(p, DType::Float32, dims) {}
  TensorView(const int64_t* p, std::initializer_list<int64_t> dims) : TensorView(p, DType::Int64, dims) {}
  TensorView(const void* p, DType t, std::initializer_list<int64_t> dims) : data(p), dtype(t) {
    for (int64_t d : dims) {
      if (rank < kMaxRank) shape[rank] = d;
      ++rank;
    }
  }
};

// A caller-owned buffer of `size` elements of T (writable unless T is const).
template <typename T>
struct Span {
  T* data = nullptr;
  size_t size = 0;
  Span() = default;
  Span(T* d, size_t n) : data(d), size(n) {}
  Span(std::vector<std::remove_const_t<T>>& v) : data(v.data()), size(v.size()) {}  // NOLINT: implicit on purpose
  template <typename U = T, typename = std::enable_if_t<std::is_const_v<U>>>
  Span(const std::vector<std::remove_const_t<U>>& v) : data(v.data()), size(v.size()) {}  // NOLINT: read-only view
  template <size_t N>
  Span(T (&a)[N]) : data(a), size(N) {}  // NOLINT: a C array
};

// One input of act()/generate() by name: `name` is an entry of PolicyInfo::inputs (e.g.
// "observation.images.corner") and `view` its array, [batch, *that entry's shape], of its dtype.
// Both are the caller's and are read only during the call: the name is compared, never stored, and
// a C-contiguous uint8 frame is handed to ONNX Runtime in place (no copy). A caller that passes the
// same buffers every call (a control loop) makes act() allocate nothing for them.
struct NamedTensorView {
  std::string_view name;
  TensorView view;
};

// ---- options

// Limits of RuntimeOptions (documented here so callers can check before constructing).
constexpr int kMaxIntraOpThreads = 256;
constexpr int kMaxBatchLimit = 65536;

struct RuntimeOptions {
  // libonnxruntime.so* to load; empty: search ($OAT_EDGE_ORT_LIBRARY, then the system; see ort_loader).
  std::string ort_library;
  // "cpu" | "cuda" | "tensorrt". Anything else is an InputError.
  std::string device = "cpu";
  // device unavailable: fall back to CPU (true) or throw RuntimeLoadError (false).
  bool allow_cpu_fallback = false;
  // ORT intra-op threads, 0..kMaxIntraOpThreads; 0 lets ORT choose (one per core). 1-2 on a robot
  // computer: leave cores to the controller.
  int intra_op_threads = 1;
  // ORT threads spin between runs (lower latency, burns a core). Off: they sleep.
  bool spin_wait = false;
  // Directory for ORT-optimized graphs (loads faster next time); empty: no cache.
  std::string optimized_model_dir;
  // TensorRT engine cache; empty: <bundle>/trt_cache.
  std::string trt_cache_dir;
  // TensorRT builds fp16 engines.
  bool trt_fp16 = true;
  // Rows the buffers are allocated for at load, 1..batch_limit. A larger batch (up to batch_limit)
  // grows them once, in that call.
  int max_batch = 1;
  // The largest batch any call accepts, max_batch..kMaxBatchLimit: a larger one is an InputError
  // before anything is allocated. Bounds the memory a caller can make the policy take.
  int batch_limit = 1024;
  // The constructor runs greedy and sampled acts per bound batch size, so the first act() in a
  // control loop does not pay ORT's first-run allocations and page faults.
  bool warmup = true;
};

// Per-call generation options. Policy::check(options) applies exactly the checks act() applies.
struct ActOptions {
  // Tokens to generate (the prefix length k), 1..K. Unset: K.
  std::optional<int64_t> max_tokens;
  // Anytime mode never stops before this many tokens, 1..max_tokens (its resolved value). Unset: 1.
  std::optional<int64_t> min_tokens;
  // Sampling temperature, finite and >= 0; 0 is greedy. Unset: the bundle's default.
  std::optional<double> temperature;
  // Sample among the top_k most likely ids, 0..codebook_size; 0 keeps every id, 1 is greedy.
  // Unset: the bundle's default.
  std::optional<int64_t> top_k;
  // Sampling seed, any value (calls with the same seed and inputs give the same tokens). Unset:
  // drawn from the policy's own random stream.
  std::optional<uint64_t> seed;
  // Anytime mode: stop generating when one more token plus decoding would exceed this many
  // milliseconds since the call began. Finite and > 0. Unset: no budget (generate max_tokens).
  std::optional<double> latency_budget_ms;
};

// What one act()/generate() did. Times are wall-clock milliseconds.
struct ActStats {
  int tokens_used = 0;     // tokens generated (the prefix length decoded)
  double total_ms = 0;     // whole call: checks .. output written
  double prefill_ms = 0;   // ORT time of the prefill graph
  double step_ms = 0;      // ORT time of all step graph runs
  double decode_ms = 0;    // ORT time of the decoder graph (0 for generate())
  double overhead_ms = 0;  // total - (prefill + step + decode): our own code
  // Heap allocations during this call; only counted when the malloc counter
  // (cpp/tools/malloc_counter.c, LD_PRELOAD) is loaded, else -1. Benchmark aid.
  int64_t allocs_total = -1;   // whole call
  int64_t allocs_in_ort = -1;  // inside ORT Run() calls (prefill + steps + decoder)
};

// ---- bundle information

// One named input of act()/generate(): its element type and its shape per batch row.
struct InputInfo {
  // The prefill graph's input name: "obs" for a state bundle; for a named-input bundle an entry of
  // its observation spec, "observation.state" or "observation.images.<camera>".
  std::string name;
  DType dtype = DType::Float32;  // float32; uint8 for a camera frame
  // Without the leading batch dim: {n_obs_steps, obs_dim}, {n_obs_steps, state_dim} or
  // {n_obs_steps, height, width, 3} (camera frames channels last).
  std::vector<int64_t> shape;
};

// Per-dimension affine normalization (docs/DESIGN.md §4): x_norm = x * scale + offset.
struct Normalization {
  // obs_dim each for a state bundle; empty for a named-input bundle (its prefill graph normalizes).
  std::vector<float> obs_scale, obs_offset;
  std::vector<float> action_scale, action_offset;  // action_dim each
  std::vector<float> action_low, action_high;      // action_dim each: every output lies in [low, high]
};

struct PolicyInfo {
  // Tokenizer.
  int num_tokens = 0;           // K: tokens per action chunk (the longest prefix)
  int codebook_size = 0;        // ids are 0..codebook_size-1 (= product of fsq_levels)
  int horizon = 0;              // H_a: time steps per action chunk
  int action_dim = 0;           // D_a: values per action
  std::vector<int> fsq_levels;  // FSQ levels per code dimension (docs/DESIGN.md §3)
  std::string tokenizer_kind;   // "oat", ...
  // Policy.
  int n_obs_steps = 0;                          // observations per call (history, oldest first)
  int obs_dim = 0;                              // values per observation
  int n_action_steps = 0;                       // chunk steps to execute before replanning (recorded at training)
  int vocab_size = 0;                           // codebook_size + 1 (the BOS token)
  int bos_id = 0;                               // = codebook_size
  int n_layers = 0, n_heads = 0, head_dim = 0;  // transformer shape (KV cache size)
  std::vector<InputInfo> inputs;                // what act() reads, in order (the spec's order when named)
  // A named-input bundle's observation spec, the manifest's `observation` block as JSON (names,
  // dtypes, shapes, crops, normalization); empty for a state bundle.
  std::string observation;
  Normalization normalization;       // raw <-> normalized units, action bounds
  std::vector<std::string> tasks;    // task names the observation's one-hot refers to (may be empty)
  std::string obs_layout;            // free text: what the observation vector holds
  double default_temperature = 1.0;  // used when ActOptions::temperature is unset
  int default_top_k = 0;             // used when ActOptions::top_k is unset
  bool has_encoder = false;          // tokenize() available
  std::string precision;             // "fp32", "fp16", "int8": the weights' precision
  std::optional<double> control_hz;  // rate of the training data (Hz), when the bundle records it
  // Runtime.
  std::string provider;       // execution provider actually used, e.g. "CPUExecutionProvider"
  std::string ort_version;    // of the ONNX Runtime library loaded, e.g. "1.32.0"
  std::string ort_library;    // its file
  std::string bundle_dir;     // absolute bundle directory
  int max_batch = 1;          // RuntimeOptions::max_batch as resolved (a fixed-batch bundle pins it)
  int batch_limit = 1;        // RuntimeOptions::batch_limit as resolved
  std::string manifest_json;  // the bundle's manifest, verbatim (for display and archiving)
};

// Thread safety: every public method takes an internal mutex, so one Policy may be shared across
// threads; calls are serialized (no parallel speed-up). Use one Policy per thread for parallelism.
// fork(): a child process may keep using a Policy its parent made, even if another parent thread
// was inside a call at the fork (the child gets a fresh lock).
class Policy {
 public:
  // path: the bundle directory or its entry file model.onnx.
  explicit Policy(const std::string& path, const RuntimeOptions& options = {});
  ~Policy();
  Policy(const Policy&) = delete;
  Policy& operator=(const Policy&) = delete;

  const PolicyInfo& info() const;

  // Throws the InputError act() would throw for these options (nothing else is checked or run).
  void check(const ActOptions& options) const;

  // obs: float32 [batch, n_obs_steps, obs_dim], raw units, finite. For a bundle whose one input is
  // named (info().inputs, e.g. "observation.state") this is that input; a bundle with cameras needs
  // the named form below (InputError otherwise).
  // out: batch * horizon * action_dim floats: [batch, horizon, action_dim] in raw units, clamped to
  // the bundle's action bounds.
  void act(const TensorView& obs, Span<float> out, const ActOptions& options = {}, ActStats* stats = nullptr);

  // Named inputs: exactly one view per entry of info().inputs, in any order, each [batch, *shape] of
  // that entry's dtype (camera frames uint8 [batch, n_obs_steps, height, width, 3], channels last;
  // the state float32 and finite), one batch for all. A missing, unknown or repeated name, a wrong
  // dtype or shape (e.g. a float image, a channels-first frame, another history length) or
  // mismatched batches is an InputError naming the input. Preprocessing is inside the bundle: the
  // buffers are read as they are.
  void act(Span<const NamedTensorView> inputs, Span<float> out, const ActOptions& options = {},
           ActStats* stats = nullptr);

  // Token ids only. out_ids: batch * K int64 ([batch, K]); entries past the returned count are -1.
  // Returns the number of tokens generated.
  int generate(const TensorView& obs, Span<int64_t> out_ids, const ActOptions& options = {}, ActStats* stats = nullptr);
  int generate(Span<const NamedTensorView> inputs, Span<int64_t> out_ids, const ActOptions& options = {},
               ActStats* stats = nullptr);

  // Prefix detokenization: ids int64 [batch, k], k in 1..K, each in [0, codebook_size).
  // out: batch * horizon * action_dim floats, as act().
  void detokenize(const TensorView& ids, Span<float> out);

  // Raw action chunks float32 [batch, horizon, action_dim] -> out_ids: batch * K int64. Needs the
  // encoder graph (info().has_encoder), else InputError.
  void tokenize(const TensorView& actions, Span<int64_t> out_ids);

  // Step-graph runs since load (one per generated token): benchmarks read it from any thread.
  uint64_t step_runs() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// FSQ id <-> code (docs/DESIGN.md §3); exposed for tests and tools. levels: each >= 2;
// ids: n values in [0, product of levels); codes: n * levels.size() floats. Throws InputError.
void fsq_ids_to_codes(const std::vector<int>& levels, const int64_t* ids, size_t n, float* codes);

}  // namespace oat_edge
