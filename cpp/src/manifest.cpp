// Manifest parsing: the schema's rules (manifest_schema.cpp), then typed fields.
#include "manifest.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "manifest_schema.h"
#include "oat_edge/policy.h"

namespace oat_edge::detail {
namespace {

using nlohmann::json;

const json& at(const json& d, const std::string& path) { return *manifest_field(d, path); }

template <typename T>
std::vector<T> list(const json& d, const std::string& path) {
  return at(d, path).get<std::vector<T>>();
}

std::vector<float> floats(const json& d, const std::string& path) {
  std::vector<float> out;
  for (const auto& x : at(d, path)) out.push_back(static_cast<float>(x.get<double>()));  // range-checked
  return out;
}

GraphIo io_of(const json& d, const std::string& graph) {
  return {graph_io_names(d, graph, "inputs"), graph_io_names(d, graph, "outputs")};
}

// The schema's graph table with its named dimensions (L, H, K, ...) resolved against `d`.
GraphSpec spec_of(const json& d, const std::string& graph) {
  const json& dims = bundle_schema()["dims"];
  auto tensors = [&](const json& list) {
    std::vector<TensorSpec> out;
    for (const auto& t : list) {
      TensorSpec s{t[0], t[1], {}};
      for (const auto& dim : t[2]) {
        if (dim.is_number()) {
          s.dims.push_back(dim.get<int64_t>());
        } else if (dim == "B") {
          s.dims.push_back(0);
        } else {
          const json& v = at(d, dims[dim.get<std::string>()].get<std::string>());
          s.dims.push_back(v.is_array() ? int64_t(v.size()) : v.get<int64_t>());
        }
      }
      out.push_back(std::move(s));
    }
    return out;
  };
  const json& g = bundle_schema()["graphs"][graph];
  GraphSpec spec{tensors(g["inputs"]), tensors(g["outputs"])};
  if (const json* named = named_inputs(d, graph)) {  // one input per spec entry: [B, S, *shape]
    spec.inputs.clear();
    for (const auto& e : *named) {
      TensorSpec s{e["name"], e["dtype"], {0, at(d, "policy.n_obs_steps").get<int64_t>()}};
      for (const auto& x : e["shape"]) s.dims.push_back(x.get<int64_t>());
      spec.inputs.push_back(std::move(s));
    }
  }
  return spec;
}

}  // namespace

const std::string& manifest_key() {
  static const std::string key = bundle_schema()["manifest_key"];
  return key;
}

const std::string& entry_file() {
  static const std::string name = bundle_schema()["entry_file"];
  return name;
}

std::string open_error_message(const std::string& where, int err) {
  if (err == EACCES || err == EPERM)
    return where + ": permission denied; make it readable by this user (chmod a+r, or run as its owner)";
  return where + " cannot be opened: " + std::strerror(err);
}

void check_graph_file(const std::string& dir, const std::string& name, const std::string& role) {
  const std::string path = (std::filesystem::path(dir) / name).string();
  const std::string where = "bundle file files." + role + " = '" + name + "' in " + dir;
  struct stat st{};
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    struct stat lst{};
    if (err == ENOENT && ::lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode)) {
      std::error_code ec;
      throw BundleError(where + " is a dangling symbolic link (to '" +
                        std::filesystem::read_symlink(path, ec).string() +
                        "'): copy the whole bundle directory, not links into it");
    }
    if (err == ENOENT)
      throw BundleError(where +
                        " not found: copy the whole bundle directory (model.onnx and its sibling graphs) together");
    throw BundleError(open_error_message(where, err));
  }
  if (S_ISDIR(st.st_mode)) throw BundleError(where + " is a directory, expected an ONNX file");
  if (!S_ISREG(st.st_mode))
    throw BundleError(where + " is not a regular file (a FIFO, socket or device), expected an ONNX file");
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw BundleError(open_error_message(where, errno));
  ::close(fd);
}

Manifest Manifest::parse(const std::string& text, const std::string& bundle_dir) {
  const json d = parse_manifest_json(text);
  check_manifest_fields(d);
  Manifest m;
  m.json_text = text;
  m.producer = at(d, "producer");
  m.tokenizer_kind = at(d, "tokenizer.kind");
  m.num_tokens = at(d, "tokenizer.num_tokens");
  m.fsq_levels = list<int>(d, "tokenizer.fsq_levels");
  m.codebook_size = at(d, "tokenizer.codebook_size");
  m.horizon = at(d, "tokenizer.horizon");
  m.action_dim = at(d, "tokenizer.action_dim");
  m.vocab_size = at(d, "policy.vocab_size");
  m.bos_id = at(d, "policy.bos_id");
  m.n_layers = at(d, "policy.n_layers");
  m.n_heads = at(d, "policy.n_heads");
  m.head_dim = at(d, "policy.head_dim");
  m.n_obs_steps = at(d, "policy.n_obs_steps");
  m.obs_dim = at(d, "policy.obs_dim");
  m.n_action_steps = at(d, "policy.n_action_steps");
  if (const json* obs = manifest_field(d, "observation")) {
    m.observation_json = obs->dump();
    for (const auto& e : (*obs)["inputs"]) {
      ObservationInput in{e["name"], e["dtype"], e["shape"].get<std::vector<int64_t>>(), {}, {}};
      if (e["normalize"].contains("scale")) {  // the state (range-checked as float32 by the schema)
        for (const auto& x : e["normalize"]["scale"]) in.scale.push_back(static_cast<float>(x.get<double>()));
        for (const auto& x : e["normalize"]["offset"]) in.offset.push_back(static_cast<float>(x.get<double>()));
      }
      m.observation.push_back(std::move(in));
    }
  } else {
    m.obs_scale = floats(d, "normalization.obs_scale");
    m.obs_offset = floats(d, "normalization.obs_offset");
  }
  if (const json* hz = manifest_field(d, "control_hz")) m.control_hz = hz->get<double>();
  m.action_scale = floats(d, "normalization.action_scale");
  m.action_offset = floats(d, "normalization.action_offset");
  m.action_low = floats(d, "normalization.action_low");
  m.action_high = floats(d, "normalization.action_high");
  m.file_step = at(d, "files.step");
  m.file_prefill = at(d, "files.prefill");
  m.file_decoder = at(d, "files.decoder");
  if (manifest_field(d, "files.encoder")) m.file_encoder = at(d, "files.encoder");
  m.io_step = io_of(d, "step");
  m.io_prefill = io_of(d, "prefill");
  m.io_decoder = io_of(d, "decoder");
  for (const char* g : {"step", "prefill", "decoder"}) m.graphs[g] = spec_of(d, g);
  if (!m.file_encoder.empty()) {
    m.io_encoder = io_of(d, "encoder");
    m.graphs["encoder"] = spec_of(d, "encoder");
  }
  m.temperature = at(d, "sampling.temperature").get<double>();
  m.top_k = at(d, "sampling.top_k");
  m.precision = at(d, "precision");
  m.tasks = list<std::string>(d, "tasks");
  m.obs_layout = at(d, "obs_layout");
  if (!bundle_dir.empty()) {
    check_graph_file(bundle_dir, m.file_step, "step");
    check_graph_file(bundle_dir, m.file_prefill, "prefill");
    check_graph_file(bundle_dir, m.file_decoder, "decoder");
    if (!m.file_encoder.empty()) check_graph_file(bundle_dir, m.file_encoder, "encoder");
  }
  return m;
}

}  // namespace oat_edge::detail
