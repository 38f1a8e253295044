#include "policy_info.h"

namespace oat_edge::detail {

PolicyInfo make_policy_info(const Manifest& m, bool has_encoder) {
  PolicyInfo i;
  i.num_tokens = m.num_tokens;
  i.codebook_size = m.codebook_size;
  i.horizon = m.horizon;
  i.action_dim = m.action_dim;
  i.fsq_levels = m.fsq_levels;
  i.tokenizer_kind = m.tokenizer_kind;
  i.n_obs_steps = m.n_obs_steps;
  i.obs_dim = m.obs_dim;
  i.n_action_steps = m.n_action_steps;
  i.vocab_size = m.vocab_size;
  i.bos_id = m.bos_id;
  i.n_layers = m.n_layers;
  i.n_heads = m.n_heads;
  i.head_dim = m.head_dim;
  // What act() reads: a state bundle's one observation array, or the named inputs of its spec.
  if (m.observation.empty()) {
    i.inputs = {InputInfo{m.io_prefill.inputs.at(0), DType::Float32, {m.n_obs_steps, m.obs_dim}}};
  } else {
    for (const auto& o : m.observation) {
      InputInfo in{o.name, o.dtype == "uint8" ? DType::UInt8 : DType::Float32, {m.n_obs_steps}};
      in.shape.insert(in.shape.end(), o.shape.begin(), o.shape.end());
      i.inputs.push_back(std::move(in));
    }
  }
  i.observation = m.observation_json;
  i.control_hz = m.control_hz;
  i.normalization =
      Normalization{m.obs_scale, m.obs_offset, m.action_scale, m.action_offset, m.action_low, m.action_high};
  i.tasks = m.tasks;
  i.obs_layout = m.obs_layout;
  i.default_temperature = m.temperature;
  i.default_top_k = m.top_k;
  i.has_encoder = has_encoder;
  i.precision = m.precision;
  i.manifest_json = m.json_text;
  return i;
}

}  // namespace oat_edge::detail
