#include "bundle.h"

#include <algorithm>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "manifest_schema.h"

namespace oat_edge::detail {
namespace fs = std::filesystem;

namespace {

std::string read_manifest(Ort::Session& s, const std::string& entry) {
  Ort::AllocatorWithDefaultOptions alloc;
  Ort::ModelMetadata md = s.GetModelMetadata();
  Ort::AllocatedStringPtr v = md.LookupCustomMetadataMapAllocated(manifest_key().c_str(), alloc);
  if (!v)
    throw BundleError(entry + " has no '" + manifest_key() +
                      "' metadata: it is not an oat_edge bundle entry file. Export one with oat_edge's exporter.");
  return v.get();
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

std::string element_type_name(ONNXTensorElementDataType t) {
  switch (t) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT:
      return "float32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64:
      return "int64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16:
      return "float16";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE:
      return "float64";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32:
      return "int32";
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8:
      return "uint8";
    default:
      return "ONNX type " + std::to_string(int(t));
  }
}

std::string shape_str(const std::vector<int64_t>& d) {
  std::string r = "[";
  for (size_t j = 0; j < d.size(); ++j) r += (j ? "," : "") + (d[j] > 0 ? std::to_string(d[j]) : std::string("?"));
  return r + "]";
}

// One graph against the contract's table for it (names, element types, static dims; the same
// checks python/oat_edge/bundle_graphs.py makes for `oat-edge inspect`). Returns the graph's shape
// of each tensor by name (-1 for dynamic dims).
std::map<std::string, std::vector<int64_t>> check_graph(Ort::Session& s, const GraphSpec& spec,
                                                        const std::string& graph) {
  const auto in = input_names(s), out = output_names(s);
  auto names = [](const std::vector<TensorSpec>& t) {
    std::vector<std::string> n;
    for (const auto& x : t) n.push_back(x.name);
    return n;
  };
  const auto want_in = names(spec.inputs), want_out = names(spec.outputs);
  auto same = [](std::vector<std::string> a, std::vector<std::string> b) {
    std::sort(a.begin(), a.end());
    std::sort(b.begin(), b.end());
    return a == b;
  };
  if (!same(in, want_in) || !same(out, want_out))
    throw BundleError(graph + " graph I/O is [" + join(in) + "] -> [" + join(out) + "], the bundle contract says [" +
                      join(want_in) + "] -> [" + join(want_out) + "]: the bundle is inconsistent, re-export it");
  std::map<std::string, std::vector<int64_t>> shapes;
  for (bool input : {true, false}) {
    const auto& have = input ? in : out;
    for (const TensorSpec& t : input ? spec.inputs : spec.outputs) {
      const size_t i = std::find(have.begin(), have.end(), t.name) - have.begin();
      Ort::TypeInfo ti = input ? s.GetInputTypeInfo(i) : s.GetOutputTypeInfo(i);
      const std::string what = graph + (input ? " input '" : " output '") + t.name + "'";
      if (ti.GetONNXType() != ONNX_TYPE_TENSOR) throw BundleError(what + " is not a tensor; re-export the bundle");
      auto info = ti.GetTensorTypeAndShapeInfo();
      const std::string type = element_type_name(info.GetElementType());
      if (type != t.dtype)
        throw BundleError(what + " has element type " + type + ", expected " + t.dtype +
                          " (graph I/O keeps the contract's types even for fp16/int8 weights); re-export the bundle");
      auto shape = info.GetShape();
      bool ok = shape.size() == t.dims.size();
      for (size_t j = 0; ok && j < t.dims.size(); ++j) ok = !(t.dims[j] > 0 && shape[j] > 0 && t.dims[j] != shape[j]);
      if (!ok)
        throw BundleError(what + " has shape " + shape_str(shape) + ", the manifest implies " + shape_str(t.dims) +
                          ": the bundle is inconsistent, re-export it");
      shapes[t.name] = shape;
    }
  }
  return shapes;
}

// The schema's `graph_metadata` (the FSQ levels a graph was exported with) against the manifest: a
// decoder or encoder of another tokenizer than the manifest describes is refused (the same check as
// bundle_graphs.check_graph_metadata in Python).
void check_graph_metadata(Ort::Session& s, const std::string& graph, const std::string& file, const Manifest& m) {
  const nlohmann::json& rule = bundle_schema()["graph_metadata"];
  const auto& graphs = rule["graphs"];
  if (std::find(graphs.begin(), graphs.end(), graph) == graphs.end()) return;
  const std::string key = rule["key"], field = rule["equals"];
  const std::string what = graph + " graph '" + file + "'";
  Ort::AllocatorWithDefaultOptions alloc;
  Ort::ModelMetadata md = s.GetModelMetadata();
  Ort::AllocatedStringPtr v = md.LookupCustomMetadataMapAllocated(key.c_str(), alloc);
  if (!v) {
    if (rule["required"].get<bool>())
      throw BundleError(
          what + " has no '" + key +
          "' metadata: re-export with this oat_edge, or stamp it with `python -m oat_export.stamp BUNDLE`");
    return;
  }
  const std::string text = v.get();
  const nlohmann::json got = nlohmann::json::parse(text, nullptr, false);
  bool ok = got.is_array();
  for (const auto& x : got) ok = ok && x.is_number_integer();
  if (!ok)
    throw BundleError(what + " metadata '" + key + "' is '" + text.substr(0, 80) +
                      "', expected a JSON list of integers; re-export the bundle");
  const nlohmann::json want = *manifest_field(nlohmann::json::parse(m.json_text), field);
  if (got != want) {
    auto list = [](const nlohmann::json& l) {
      std::string r = "[";
      for (const auto& x : l) r += (r.size() > 1 ? ", " : "") + x.dump();
      return r + "]";
    };
    throw BundleError(what + " was exported with FSQ levels " + list(got) + " ('" + key + "'), the manifest's " +
                      field + " is " + list(want) +
                      ": the graphs and the manifest come from different tokenizers; re-export the bundle");
  }
}

}  // namespace

BundleLocation locate_bundle(const std::string& path) {
  std::error_code ec;
  const std::string& entry = entry_file();
  BundleLocation where;
  if (fs::is_directory(path, ec)) {
    if (!fs::exists(fs::symlink_status(fs::path(path) / entry, ec)))
      throw BundleError("bundle directory " + path + " has no " + entry +
                        ": pass a directory written by oat_edge export");
    where = {fs::absolute(path, ec).string(), entry};
  } else if (fs::exists(fs::symlink_status(path, ec))) {
    fs::path p = fs::absolute(path, ec);
    where = {p.parent_path().string(), p.filename().string()};
  } else {
    throw BundleError("bundle path '" + path + "' does not exist: pass the bundle directory or its " + entry);
  }
  check_graph_file(where.dir, where.entry, "step");  // a directory, FIFO or unreadable file says so
  return where;
}

GraphNames::GraphNames(const GraphIo& io) : in(io.inputs), out(io.outputs) {
  for (auto& s : in) in_c.push_back(s.c_str());
  for (auto& s : out) out_c.push_back(s.c_str());
}

Bundle::Bundle(const BundleLocation& w, const RuntimeOptions& opt) : where(w) {
  factory = std::make_unique<SessionFactory>(opt, where.dir);
  step.session = factory->create(where.entry);
  m = Manifest::parse(read_manifest(*step.session, where.entry), where.dir);
  if (m.file_step != where.entry)
    throw BundleError("manifest files.step is '" + m.file_step + "' but the entry file is '" + where.entry +
                      "': the entry file must be the step graph; re-export the bundle");
  prefill.session = factory->create(m.file_prefill);
  decoder.session = factory->create(m.file_decoder);
  if (!m.file_encoder.empty()) encoder.session = factory->create(m.file_encoder);
  const auto step_shapes = check_graph(*step.session, m.graphs.at("step"), "step");
  check_graph(*prefill.session, m.graphs.at("prefill"), "prefill");
  check_graph(*decoder.session, m.graphs.at("decoder"), "decoder");
  if (encoder) check_graph(*encoder.session, m.graphs.at("encoder"), "encoder");
  check_graph_metadata(*step.session, "step", m.file_step, m);
  check_graph_metadata(*prefill.session, "prefill", m.file_prefill, m);
  check_graph_metadata(*decoder.session, "decoder", m.file_decoder, m);
  if (encoder) check_graph_metadata(*encoder.session, "encoder", m.file_encoder, m);
  // A graph exported with a fixed batch (e.g. for TensorRT/CUDA graphs) only accepts that batch.
  const int64_t batch = step_shapes.at("past_k")[1];
  static_batch = batch > 0 ? int(batch) : 0;
  step.names = GraphNames(m.io_step);
  prefill.names = GraphNames(m.io_prefill);
  decoder.names = GraphNames(m.io_decoder);
  if (encoder) encoder.names = GraphNames(m.io_encoder);
}

}  // namespace oat_edge::detail
