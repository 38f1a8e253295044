// The bundle manifest (docs/DESIGN.md §6), validated by the rules of the bundle schema
// (manifest_schema.h), the same ones python/oat_edge/manifest.py applies.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace oat_edge::detail {

// Names the bundle schema fixes: the metadata key holding the manifest, and the entry file.
const std::string& manifest_key();  // "oat_edge.manifest"
const std::string& entry_file();    // "model.onnx"

// A graph's input/output names, always in the schema's order (token, step, past_k, ...): the
// manifest may list them in any order, the runtime binds them by these names.
struct GraphIo {
  std::vector<std::string> inputs, outputs;
};

// One graph input/output the contract expects: element type and shape, the dimensions resolved
// against the manifest (0 = the dynamic batch).
struct TensorSpec {
  std::string name;
  std::string dtype = "float32";  // "float32", "int64" or "uint8" (named camera inputs)
  std::vector<int64_t> dims;
};
struct GraphSpec {
  std::vector<TensorSpec> inputs, outputs;
};

// One entry of a named-input bundle's observation spec: what act() reads under that name.
struct ObservationInput {
  std::string name;                  // "observation.state" or "observation.images.<camera>"
  std::string dtype;                 // "float32" (state) or "uint8" (camera)
  std::vector<int64_t> shape;        // per step: [state_dim] or [height, width, 3]
  std::vector<float> scale, offset;  // the state's normalization inside the graph (empty for a camera)
};

struct Manifest {
  std::string producer, tokenizer_kind, precision, obs_layout;
  int num_tokens = 0, codebook_size = 0, horizon = 0, action_dim = 0;
  std::vector<int> fsq_levels;
  int vocab_size = 0, bos_id = 0, n_layers = 0, n_heads = 0, head_dim = 0;
  int n_obs_steps = 0, obs_dim = 0, n_action_steps = 0;
  // obs_scale/obs_offset: empty for a named-input bundle (its prefill graph normalizes).
  std::vector<float> obs_scale, obs_offset, action_scale, action_offset, action_low, action_high;
  std::vector<ObservationInput> observation;  // empty: a state bundle (one input `obs`)
  std::string observation_json;               // the observation block as compact JSON; empty when absent
  std::optional<double> control_hz;           // the rate the training data was recorded at, when recorded
  std::string file_step, file_prefill, file_decoder, file_encoder;  // encoder may be empty (optional)
  GraphIo io_step, io_prefill, io_decoder, io_encoder;              // io_prefill.inputs: the spec's names when named
  std::map<std::string, GraphSpec> graphs;  // "step", "prefill", "decoder" (+ "encoder" when present)
  double temperature = 1.0;
  int top_k = 0;
  std::vector<std::string> tasks;
  std::string json_text;  // verbatim

  // Parses + validates; bundle_dir non-empty → also checks the listed files are readable regular
  // files there. Throws BundleError naming the field, what was expected and what was found.
  static Manifest parse(const std::string& json_text, const std::string& bundle_dir);
};

// The graph file `name` (role: "step", "decoder", ...) in `dir` must be a regular file this process
// can read; otherwise BundleError saying what it is (missing, a directory, a FIFO, permission denied).
void check_graph_file(const std::string& dir, const std::string& name, const std::string& role);

// The message for an open() of a graph file that failed with `err` (errno).
std::string open_error_message(const std::string& where, int err);

}  // namespace oat_edge::detail
