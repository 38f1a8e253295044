// The bundle manifest (docs/DESIGN.md §6): parsed and validated exactly as the Python loader does.
#pragma once

#include <string>
#include <vector>

namespace oat_edge::detail {

constexpr int kFormatVersion = 1;
constexpr const char* kFormatName = "oat_edge.bundle";
constexpr const char* kManifestKey = "oat_edge.manifest";

struct GraphIo {
  std::vector<std::string> inputs, outputs;
};

struct Manifest {
  std::string producer, tokenizer_kind, precision, obs_layout;
  int num_tokens = 0, codebook_size = 0, horizon = 0, action_dim = 0;
  std::vector<int> fsq_levels;
  int vocab_size = 0, bos_id = 0, n_layers = 0, n_heads = 0, head_dim = 0;
  int n_obs_steps = 0, obs_dim = 0, n_action_steps = 0;
  std::vector<float> obs_scale, obs_offset, action_scale, action_offset, action_low, action_high;
  std::string file_step, file_prefill, file_decoder, file_encoder;  // encoder may be empty (optional)
  GraphIo io_step, io_prefill, io_decoder, io_encoder;
  double temperature = 1.0;
  int top_k = 0;
  std::vector<std::string> tasks;
  std::string json_text;  // verbatim

  // Parses + validates; bundle_dir non-empty → also checks the listed files exist there.
  // Throws BundleError naming the field, what was expected and what was found.
  static Manifest parse(const std::string& json_text, const std::string& bundle_dir);
};

}  // namespace oat_edge::detail
