// Token generation (docs/DESIGN.md §5, §7): prefill the cross-attention memory from the normalized
// observation, then run the step graph once per token with a KV cache, sampling each row's next
// token. With a latency budget it stops early ("anytime" mode) when one more token plus decoding
// would overrun. Buffers, OrtValues and the step IoBinding are made once per batch size; per token
// only the token ids and the step index change.
#pragma once

#include <onnxruntime_cxx_api.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "bundle.h"
#include "cpu_tensor.h"
#include "input_checks.h"
#include "kv_cache.h"
#include "normalizer.h"
#include "run_meter.h"
#include "sampler.h"

namespace oat_edge::detail {

// What the prefill graph reads in one call: a state bundle's raw observation (normalized here), or a
// named-input bundle's checked views in the order of its prefill inputs (bound in place, no copy).
struct PrefillInput {
  const float* obs = nullptr;                             // [batch, n_obs_steps, obs_dim]
  const std::vector<const TensorView*>* named = nullptr;  // one per Manifest::observation entry
};

class Generator {
 public:
  // bundle and meter must outlive the generator. rebind_each_run: non-CPU providers copy CPU
  // inputs when they are bound, so the step inputs are rebound before every token.
  Generator(Bundle& bundle, RunMeter& meter, bool rebind_each_run);

  // Grows the workspace to `batch` rows (never shrinks; every binding is rebuilt after growing).
  void reserve(int batch);
  // Makes the OrtValues and the step binding for `batch` rows ready (no-op when they exist).
  void bind(int batch);

  // in: the raw observation, already checked for size (named views: for everything). Fills ids() [batch, K]
  // (-1 past the returned count) and st.prefill_ms / step_ms / tokens_used. decode_ms_estimate:
  // the expected decoder time, for the anytime budget. A failure clears the KV cache before it
  // propagates, so one bad call (e.g. a non-finite logit) does not poison the next ones.
  int run(const PrefillInput& in, int batch, const ResolvedAct& r, double decode_ms_estimate, ActStats& st);

  const int64_t* ids() const { return ids_.data(); }  // [capacity, K] row-major
  void clear_cache() { kv_.clear(); }
  uint64_t step_runs() const { return step_runs_.load(std::memory_order_relaxed); }  // any thread
  void reset_step_runs() { step_runs_ = 0; }

 private:
  struct Bound {  // OrtValues over the workspace for one batch size
    Ort::Value obs{nullptr}, mem_k{nullptr}, mem_v{nullptr}, token{nullptr}, step{nullptr}, past_k{nullptr},
        past_v{nullptr}, logits{nullptr}, new_k{nullptr}, new_v{nullptr};
    std::unique_ptr<Ort::IoBinding> binding;
  };
  int run_unguarded(const PrefillInput& in, int batch, const ResolvedAct& r, double decode_ms_estimate, ActStats& st);
  void prefill(Bound& b, ActStats& st);
  void prefill_named(Bound& b, const std::vector<const TensorView*>& views, ActStats& st);
  void bind_step_inputs(Bound& b);

  Bundle& bundle_;
  const Manifest& m_;
  RunMeter& meter_;
  bool rebind_each_run_;
  Ort::MemoryInfo cpu_mem_;
  Ort::RunOptions run_opts_{nullptr};
  Normalizer obs_norm_;
  Sampler sampler_;
  KvCache kv_;
  int capacity_ = 0;
  std::vector<float> obs_n_, logits_;
  std::vector<int64_t> token_, step_idx_, ids_;
  std::map<int, std::unique_ptr<Bound>> bound_;
  // Named inputs: an OrtValue over the caller's buffer per input, remade only when the caller
  // passes another buffer or shape (a control loop reusing its buffers allocates nothing here). It
  // holds the buffer's address between calls but reads it only inside a call that passes it again.
  struct NamedSlot {
    const void* data = nullptr;
    std::array<int64_t, TensorView::kMaxRank> shape{};
    size_t rank = 0;
    Ort::Value value{nullptr};
  };
  std::vector<NamedSlot> named_;
  std::vector<OrtValue*> named_ptrs_;
  std::atomic<uint64_t> step_runs_{0};
};

}  // namespace oat_edge::detail
