// oat_edge C++ runtime: public API of the core library (no Python needed).
// Contract: docs/DESIGN.md. Everything here is usable from a ROS 2 node or a C++ control stack.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace oat_edge {

// ---- errors: every failure is one of these, with what was expected, what was given, what to do.
struct Error : std::runtime_error { using std::runtime_error::runtime_error; };
struct InputError : Error { using Error::Error; };        // bad call arguments (shape, NaN, k range...)
struct BundleError : Error { using Error::Error; };       // missing/corrupt/incompatible bundle
struct RuntimeLoadError : Error { using Error::Error; };  // ORT library missing/too old, EP unavailable

struct RuntimeOptions {
  std::string ort_library;          // explicit path to libonnxruntime.so*; empty = search (see ort_loader)
  std::string device = "cpu";       // "cpu" | "cuda" | "tensorrt"
  bool allow_cpu_fallback = false;  // device unavailable: fall back to CPU (true) or throw RuntimeLoadError
  int intra_op_threads = 1;         // 1-2 on a robot computer: leave cores to the controller
  bool spin_wait = false;           // off: the control loop sleeps between cycles
  std::string optimized_model_dir;  // non-empty: cache ORT-optimized graphs here
  std::string trt_cache_dir;        // TensorRT engine cache (default: <bundle>/trt_cache)
  bool trt_fp16 = true;
  int max_batch = 1;                // KV cache preallocated for this batch; larger batches grow it once
  bool warmup = true;               // constructor runs greedy + sampled acts per bound batch size
};

struct ActOptions {
  int max_tokens = 0;            // 1..K; 0 = K (all tokens)
  double temperature = -1.0;     // exactly -1 = bundle default; 0 = greedy; other negatives/NaN = InputError
  int top_k = -1;                // exactly -1 = bundle default; 0 = no top-k cut; 1..codebook_size
  std::optional<uint64_t> seed;  // unset: drawn from the policy's own RNG stream
  double latency_budget_ms = 0;  // >0: anytime mode, stop generating when the next token would overrun
  int min_tokens = 1;            // anytime mode never stops before this many tokens
};

struct ActStats {
  int tokens_used = 0;
  double total_ms = 0;      // whole act(): normalization .. denormalized chunk
  double prefill_ms = 0;    // ORT time of the prefill graph
  double step_ms = 0;       // ORT time of all step graph runs
  double decode_ms = 0;     // ORT time of the decoder graph
  double overhead_ms = 0;   // total - (prefill + step + decode): our own code
  // Heap allocations during this call; only counted when the malloc counter
  // (cpp/tools/malloc_counter.c, LD_PRELOAD) is loaded, else -1. Benchmark aid.
  int64_t allocs_total = -1;   // whole call
  int64_t allocs_in_ort = -1;  // inside ORT Run() calls (prefill + steps + decoder)
};

struct PolicyInfo {
  int num_tokens, codebook_size, vocab_size, bos_id, horizon, action_dim;
  int n_obs_steps, obs_dim, n_action_steps, n_layers, n_heads, head_dim;
  std::vector<int> fsq_levels;
  double default_temperature; int default_top_k;
  std::string provider;       // execution provider actually used
  std::string ort_version, ort_library, bundle_dir, precision, tokenizer_kind;
  std::vector<std::string> tasks;
  std::string manifest_json;  // the bundle's manifest, verbatim
};

// Thread safety: every public method takes an internal mutex, so one Policy may be shared across
// threads; calls are serialized (no parallel speed-up). Use one Policy per thread for parallelism.
// Errors: InputError / BundleError / RuntimeLoadError (never a crash on bad input).
class Policy {
 public:
  // path: the bundle directory or its entry file model.onnx.
  explicit Policy(const std::string& path, const RuntimeOptions& options = {});
  ~Policy();
  Policy(const Policy&) = delete;
  Policy& operator=(const Policy&) = delete;

  const PolicyInfo& info() const;

  // obs: [batch, n_obs_steps, obs_dim] float32 row-major, raw units.
  // out: [batch, horizon, action_dim] float32, raw units, clamped to the bundle's action bounds.
  void act(const float* obs, int batch, float* out, const ActOptions& opt = {}, ActStats* stats = nullptr);

  // Token ids only: out_ids [batch, K] (entries >= tokens_used are -1). Returns tokens_used.
  int generate(const float* obs, int batch, int64_t* out_ids, const ActOptions& opt = {},
               ActStats* stats = nullptr);

  // Prefix detokenization: ids [batch, k] in [0, codebook_size), k in 1..K -> out [batch, horizon, action_dim].
  void detokenize(const int64_t* ids, int batch, int k, float* out);

  // Tokenize raw action chunks [batch, horizon, action_dim] -> ids [batch, K]. Needs the encoder graph.
  void tokenize(const float* actions, int batch, int64_t* out_ids);

  // Per-token allocation accounting for benchmarks: number of step() graph runs since load.
  uint64_t step_runs() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// FSQ id <-> code (docs/DESIGN.md §3); exposed for tests and tools.
void fsq_ids_to_codes(const std::vector<int>& levels, const int64_t* ids, size_t n, float* codes);

}  // namespace oat_edge
