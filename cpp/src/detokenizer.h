// Prefix detokenization (docs/DESIGN.md §3-5): token ids -> FSQ codes -> the decoder graph ->
// normalized actions, clamped to [-1, 1] and unnormalized into the bundle's action bounds. Any
// prefix length k in 1..K decodes; slots >= k are ignored by the graph.
#pragma once

#include <onnxruntime_cxx_api.h>

#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "bundle.h"
#include "cpu_tensor.h"
#include "fsq.h"
#include "normalizer.h"
#include "run_meter.h"

namespace oat_edge::detail {

class Detokenizer {
 public:
  Detokenizer(Bundle& bundle, RunMeter& meter);  // both must outlive the detokenizer

  void reserve(int batch);  // grows the workspace (never shrinks)
  void bind(int batch);     // OrtValues for `batch` rows (no-op when they exist)

  // ids: [batch, row_stride] row-major, the first k of each row in [0, codebook_size) (checked by
  // the caller). out: [batch, horizon, action_dim] raw units. Returns the decoder's time in ms and
  // updates decode_ms_estimate(). A non-finite decoder output is a BundleError.
  double decode(const int64_t* ids, size_t row_stride, int batch, int k, float* out);

  // Moving average of decode() times, which the anytime budget reserves for decoding.
  double decode_ms_estimate() const { return estimate_ms_; }
  void set_decode_ms_estimate(double ms) { estimate_ms_ = ms; }

 private:
  struct Bound {
    Ort::Value codes{nullptr}, num_tokens{nullptr}, actions{nullptr};
  };

  Bundle& bundle_;
  const Manifest& m_;
  RunMeter& meter_;
  Ort::MemoryInfo cpu_mem_;
  Ort::RunOptions run_opts_{nullptr};
  Fsq fsq_;
  Normalizer act_norm_;
  int capacity_ = 0;
  std::vector<float> codes_, actions_;
  std::vector<int64_t> num_tokens_;
  std::map<int, std::unique_ptr<Bound>> bound_;
  double estimate_ms_ = 0;
};

}  // namespace oat_edge::detail
