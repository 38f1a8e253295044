#include "bundle.h"

#include <algorithm>
#include <filesystem>
#include <set>

namespace oat_edge::detail {
namespace fs = std::filesystem;

namespace {

std::string read_manifest(Ort::Session& s, const std::string& entry) {
  Ort::AllocatorWithDefaultOptions alloc;
  Ort::ModelMetadata md = s.GetModelMetadata();
  Ort::AllocatedStringPtr v = md.LookupCustomMetadataMapAllocated(kManifestKey, alloc);
  if (!v)
    throw BundleError(entry + " has no '" + std::string(kManifestKey) +
                      "' metadata: it is not an oat_edge bundle entry file. Export one with oat_edge's exporter.");
  return v.get();
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

// The graph must expose exactly the names the manifest lists (order-free).
void check_io(Ort::Session& s, const GraphIo& io, const std::string& graph) {
  auto in = input_names(s), out = output_names(s);
  if (std::set<std::string>(in.begin(), in.end()) != std::set<std::string>(io.inputs.begin(), io.inputs.end()) ||
      std::set<std::string>(out.begin(), out.end()) != std::set<std::string>(io.outputs.begin(), io.outputs.end()))
    throw BundleError(graph + " graph I/O is [" + join(in) + "] -> [" + join(out) + "], the manifest says [" +
                      join(io.inputs) + "] -> [" + join(io.outputs) + "]: the bundle is inconsistent, re-export it");
}

// Input/output `name` must be a tensor of `type` whose static dims match `want` (0 = any, e.g. the
// dynamic batch). Returns the graph's shape (-1 for dynamic dims).
std::vector<int64_t> check_tensor(Ort::Session& s, const std::string& name, bool input, ONNXTensorElementDataType type,
                                  const std::vector<int64_t>& want, const std::string& graph) {
  auto names = input ? input_names(s) : output_names(s);
  size_t i = std::find(names.begin(), names.end(), name) - names.begin();
  Ort::TypeInfo ti = input ? s.GetInputTypeInfo(i) : s.GetOutputTypeInfo(i);
  const std::string what = graph + (input ? " input '" : " output '") + name + "'";
  if (ti.GetONNXType() != ONNX_TYPE_TENSOR) throw BundleError(what + " is not a tensor; re-export the bundle");
  auto info = ti.GetTensorTypeAndShapeInfo();
  if (info.GetElementType() != type)
    throw BundleError(what + " has element type " + std::to_string(int(info.GetElementType())) + ", expected " +
                      (type == ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT ? "float32" : "int64") +
                      " (DESIGN.md §5: graph I/O stays float32/int64 even for fp16/int8 weights); re-export");
  auto shape = info.GetShape();
  auto str = [](const std::vector<int64_t>& d) {
    std::string r = "[";
    for (size_t j = 0; j < d.size(); ++j) r += (j ? "," : "") + (d[j] > 0 ? std::to_string(d[j]) : std::string("?"));
    return r + "]";
  };
  bool ok = shape.size() == want.size();
  for (size_t j = 0; ok && j < want.size(); ++j) ok = !(want[j] > 0 && shape[j] > 0 && want[j] != shape[j]);
  if (!ok)
    throw BundleError(what + " has shape " + str(shape) + ", the manifest implies " + str(want) +
                      ": the bundle is inconsistent, re-export it");
  return shape;
}

// Every graph's I/O against the manifest; returns the step graph's batch dim (> 0 if fixed).
int check_graphs(const Manifest& m, Ort::Session& step, Ort::Session& prefill, Ort::Session& decoder,
                 Ort::Session* encoder) {
  check_io(step, m.io_step, "step");
  check_io(prefill, m.io_prefill, "prefill");
  check_io(decoder, m.io_decoder, "decoder");
  if (encoder) check_io(*encoder, m.io_encoder, "encoder");
  const int64_t L = m.n_layers, H = m.n_heads, K = m.num_tokens, Dh = m.head_dim, S = m.n_obs_steps;
  const int64_t cd = static_cast<int64_t>(m.fsq_levels.size());
  constexpr auto F = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  constexpr auto I = ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64;
  const auto& si = m.io_step.inputs;
  const auto& so = m.io_step.outputs;
  check_tensor(step, si[0], true, I, {0}, "step");
  check_tensor(step, si[1], true, I, {1}, "step");
  auto past_shape = check_tensor(step, si[2], true, F, {L, 0, H, K, Dh}, "step");
  check_tensor(step, si[3], true, F, {L, 0, H, K, Dh}, "step");
  check_tensor(step, si[4], true, F, {L, 0, H, S, Dh}, "step");
  check_tensor(step, si[5], true, F, {L, 0, H, S, Dh}, "step");
  check_tensor(step, so[0], false, F, {0, m.vocab_size}, "step");
  check_tensor(step, so[1], false, F, {L, 0, H, 1, Dh}, "step");
  check_tensor(step, so[2], false, F, {L, 0, H, 1, Dh}, "step");
  check_tensor(prefill, m.io_prefill.inputs[0], true, F, {0, S, m.obs_dim}, "prefill");
  check_tensor(prefill, m.io_prefill.outputs[0], false, F, {L, 0, H, S, Dh}, "prefill");
  check_tensor(prefill, m.io_prefill.outputs[1], false, F, {L, 0, H, S, Dh}, "prefill");
  check_tensor(decoder, m.io_decoder.inputs[0], true, F, {0, K, cd}, "decoder");
  check_tensor(decoder, m.io_decoder.inputs[1], true, I, {0}, "decoder");
  check_tensor(decoder, m.io_decoder.outputs[0], false, F, {0, m.horizon, m.action_dim}, "decoder");
  if (encoder) {
    check_tensor(*encoder, m.io_encoder.inputs[0], true, F, {0, m.horizon, m.action_dim}, "encoder");
    check_tensor(*encoder, m.io_encoder.outputs[0], false, I, {0, K}, "encoder");
  }
  // A graph exported with a fixed batch (e.g. for TensorRT/CUDA graphs) only accepts that batch.
  return past_shape[1] > 0 ? int(past_shape[1]) : 0;
}

}  // namespace

BundleLocation locate_bundle(const std::string& path) {
  std::error_code ec;
  if (fs::is_directory(path, ec)) {
    if (!fs::is_regular_file(fs::path(path) / "model.onnx", ec))
      throw BundleError("bundle directory " + path + " has no model.onnx: pass a directory written by oat_edge export");
    return {fs::absolute(path, ec).string(), "model.onnx"};
  }
  if (fs::is_regular_file(path, ec)) {
    fs::path p = fs::absolute(path, ec);
    return {p.parent_path().string(), p.filename().string()};
  }
  throw BundleError("bundle path '" + path + "' does not exist: pass the bundle directory or its model.onnx");
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
  static_batch = check_graphs(m, *step.session, *prefill.session, *decoder.session, encoder.session.get());
  step.names = GraphNames(m.io_step);
  prefill.names = GraphNames(m.io_prefill);
  decoder.names = GraphNames(m.io_decoder);
  if (encoder) encoder.names = GraphNames(m.io_encoder);
}

}  // namespace oat_edge::detail
