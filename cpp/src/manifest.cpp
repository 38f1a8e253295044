// Manifest validation: the same rules as python/oat_edge/manifest.py (docs/DESIGN.md §6).
#include "manifest.h"

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "oat_edge/policy.h"

namespace oat_edge::detail {
namespace {

using nlohmann::json;

[[noreturn]] void fail(const std::string& what) {
  throw BundleError("invalid bundle manifest: " + what + ". Re-export the bundle with oat_edge's exporter.");
}

const json& field(const json& obj, const std::string& parent, const char* key) {
  if (!obj.is_object()) fail("'" + parent + "' must be an object");
  auto it = obj.find(key);
  if (it == obj.end()) fail("missing field '" + (parent.empty() ? "" : parent + ".") + key + "'");
  return *it;
}

std::string path_of(const std::string& parent, const char* key) { return parent.empty() ? key : parent + "." + key; }

std::string get_str(const json& obj, const std::string& parent, const char* key) {
  const json& v = field(obj, parent, key);
  if (!v.is_string()) fail("'" + path_of(parent, key) + "' must be a string, got " + v.dump());
  return v.get<std::string>();
}

int get_int(const json& obj, const std::string& parent, const char* key, int min_value = 1) {
  const json& v = field(obj, parent, key);
  if (!v.is_number_integer()) fail("'" + path_of(parent, key) + "' must be an integer, got " + v.dump());
  auto x = v.get<long long>();
  if (x < min_value || x > 1000000000LL)
    fail("'" + path_of(parent, key) + "' must be >= " + std::to_string(min_value) + ", got " + std::to_string(x));
  return static_cast<int>(x);
}

double get_num(const json& obj, const std::string& parent, const char* key) {
  const json& v = field(obj, parent, key);
  if (!v.is_number()) fail("'" + path_of(parent, key) + "' must be a number, got " + v.dump());
  return v.get<double>();
}

std::vector<float> get_floats(const json& obj, const std::string& parent, const char* key, size_t len,
                              bool nonzero) {
  const json& v = field(obj, parent, key);
  const std::string name = path_of(parent, key);
  if (!v.is_array()) fail("'" + name + "' must be an array of numbers");
  if (v.size() != len)
    fail("'" + name + "' has length " + std::to_string(v.size()) + ", expected " + std::to_string(len));
  std::vector<float> out;
  out.reserve(len);
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_number()) fail("'" + name + "[" + std::to_string(i) + "]' must be a number, got " + v[i].dump());
    double x = v[i].get<double>();
    if (!std::isfinite(x)) fail("'" + name + "[" + std::to_string(i) + "]' is not finite");
    if (nonzero && x == 0.0) fail("'" + name + "[" + std::to_string(i) + "]' is zero (a scale must be non-zero)");
    out.push_back(static_cast<float>(x));
  }
  return out;
}

std::vector<std::string> get_strings(const json& obj, const std::string& parent, const char* key) {
  const json& v = field(obj, parent, key);
  if (!v.is_array()) fail("'" + path_of(parent, key) + "' must be an array of strings");
  std::vector<std::string> out;
  for (const auto& s : v) {
    if (!s.is_string()) fail("'" + path_of(parent, key) + "' must contain only strings, got " + s.dump());
    out.push_back(s.get<std::string>());
  }
  return out;
}

GraphIo get_io(const json& io, const char* graph, size_t n_in, size_t n_out) {
  const std::string parent = std::string("io.") + graph;
  const json& g = field(io, "io", graph);
  GraphIo r{get_strings(g, parent, "inputs"), get_strings(g, parent, "outputs")};
  if (r.inputs.size() != n_in || r.outputs.size() != n_out)
    fail("'" + parent + "' lists " + std::to_string(r.inputs.size()) + " inputs / " + std::to_string(r.outputs.size()) +
         " outputs, expected " + std::to_string(n_in) + " / " + std::to_string(n_out));
  return r;
}

void check_file(const std::string& dir, const std::string& name, const char* role) {
  if (name.empty() || name.find('/') != std::string::npos)
    fail(std::string("files.") + role + " must be a plain file name next to model.onnx, got '" + name + "'");
  if (dir.empty()) return;
  std::error_code ec;
  auto p = std::filesystem::path(dir) / name;
  if (!std::filesystem::is_regular_file(p, ec))
    throw BundleError(std::string("bundle file missing: files.") + role + " = '" + name + "' not found in " + dir +
                      ". Copy the whole bundle directory (model.onnx and its sibling graphs) together.");
}

}  // namespace

Manifest Manifest::parse(const std::string& text, const std::string& bundle_dir) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail(std::string("not valid JSON (") + e.what() + ")");
  }
  if (!j.is_object()) fail("top level must be a JSON object");
  Manifest m;
  m.json_text = text;
  const std::string format = get_str(j, "", "format");
  if (format != kFormatName) fail("'format' is '" + format + "', expected '" + kFormatName + "'");
  {
    const json& v = field(j, "", "format_version");
    if (!v.is_number_integer()) fail("'format_version' must be an integer, got " + v.dump());
    long long ver = v.get<long long>();
    if (ver != kFormatVersion)
      throw BundleError("bundle format_version " + std::to_string(ver) + ", this runtime reads " +
                        std::to_string(kFormatVersion) + ": re-export the bundle with oat_edge " +
                        "(a matching exporter/runtime pair) or install the oat_edge runtime that reads version " +
                        std::to_string(ver) + ".");
  }
  m.producer = get_str(j, "", "producer");

  const json& tok = field(j, "", "tokenizer");
  m.tokenizer_kind = get_str(tok, "tokenizer", "kind");
  m.num_tokens = get_int(tok, "tokenizer", "num_tokens");
  m.codebook_size = get_int(tok, "tokenizer", "codebook_size");
  m.horizon = get_int(tok, "tokenizer", "horizon");
  m.action_dim = get_int(tok, "tokenizer", "action_dim");
  {
    const json& lv = field(tok, "tokenizer", "fsq_levels");
    if (!lv.is_array() || lv.empty()) fail("'tokenizer.fsq_levels' must be a non-empty array of integers >= 2");
    long long prod = 1;
    for (const auto& x : lv) {
      if (!x.is_number_integer() || x.get<long long>() < 2 || x.get<long long>() > 65536)
        fail("'tokenizer.fsq_levels' entries must be integers >= 2, got " + x.dump());
      m.fsq_levels.push_back(x.get<int>());
      prod *= x.get<long long>();
      if (prod > (1LL << 31)) fail("'tokenizer.fsq_levels' product is too large");
    }
    if (prod != m.codebook_size)
      fail("tokenizer.codebook_size is " + std::to_string(m.codebook_size) + " but prod(fsq_levels) is " +
           std::to_string(prod));
  }

  const json& pol = field(j, "", "policy");
  m.vocab_size = get_int(pol, "policy", "vocab_size");
  m.bos_id = get_int(pol, "policy", "bos_id", 0);
  m.n_layers = get_int(pol, "policy", "n_layers");
  m.n_heads = get_int(pol, "policy", "n_heads");
  m.head_dim = get_int(pol, "policy", "head_dim");
  m.n_obs_steps = get_int(pol, "policy", "n_obs_steps");
  m.obs_dim = get_int(pol, "policy", "obs_dim");
  m.n_action_steps = get_int(pol, "policy", "n_action_steps");
  if (m.vocab_size != m.codebook_size + 1)
    fail("policy.vocab_size is " + std::to_string(m.vocab_size) + ", expected codebook_size + 1 = " +
         std::to_string(m.codebook_size + 1));
  if (m.bos_id != m.codebook_size)
    fail("policy.bos_id is " + std::to_string(m.bos_id) + ", expected codebook_size = " + std::to_string(m.codebook_size));
  if (m.n_action_steps > m.horizon)
    fail("policy.n_action_steps " + std::to_string(m.n_action_steps) + " exceeds tokenizer.horizon " +
         std::to_string(m.horizon));

  const json& nrm = field(j, "", "normalization");
  const auto od = static_cast<size_t>(m.obs_dim), ad = static_cast<size_t>(m.action_dim);
  m.obs_scale = get_floats(nrm, "normalization", "obs_scale", od, true);
  m.obs_offset = get_floats(nrm, "normalization", "obs_offset", od, false);
  m.action_scale = get_floats(nrm, "normalization", "action_scale", ad, true);
  m.action_offset = get_floats(nrm, "normalization", "action_offset", ad, false);
  m.action_low = get_floats(nrm, "normalization", "action_low", ad, false);
  m.action_high = get_floats(nrm, "normalization", "action_high", ad, false);
  for (size_t i = 0; i < ad; ++i)
    if (m.action_low[i] > m.action_high[i])
      fail("normalization.action_low[" + std::to_string(i) + "] > action_high[" + std::to_string(i) + "]");

  const json& files = field(j, "", "files");
  m.file_step = get_str(files, "files", "step");
  m.file_prefill = get_str(files, "files", "prefill");
  m.file_decoder = get_str(files, "files", "decoder");
  if (files.is_object() && files.contains("encoder")) m.file_encoder = get_str(files, "files", "encoder");
  check_file(bundle_dir, m.file_step, "step");
  check_file(bundle_dir, m.file_prefill, "prefill");
  check_file(bundle_dir, m.file_decoder, "decoder");
  if (!m.file_encoder.empty()) check_file(bundle_dir, m.file_encoder, "encoder");

  const json& io = field(j, "", "io");
  m.io_step = get_io(io, "step", 6, 3);
  m.io_prefill = get_io(io, "prefill", 1, 2);
  m.io_decoder = get_io(io, "decoder", 2, 1);
  if (!m.file_encoder.empty()) m.io_encoder = get_io(io, "encoder", 1, 1);

  const json& smp = field(j, "", "sampling");
  m.temperature = get_num(smp, "sampling", "temperature");
  if (!std::isfinite(m.temperature) || m.temperature < 0)
    fail("'sampling.temperature' must be a finite number >= 0, got " + std::to_string(m.temperature));
  m.top_k = get_int(smp, "sampling", "top_k", 0);
  if (m.top_k > m.codebook_size)
    fail("'sampling.top_k' " + std::to_string(m.top_k) + " exceeds codebook_size " + std::to_string(m.codebook_size));

  m.precision = get_str(j, "", "precision");
  m.tasks = get_strings(j, "", "tasks");
  m.obs_layout = get_str(j, "", "obs_layout");
  return m;
}

}  // namespace oat_edge::detail
