// Manifest validation against the shared table tests/export/manifest_cases.json (the Python validator
// runs the same table in tests/export/test_manifest.py), plus the checks on the bundle's files.
#include <fcntl.h>
#include <sys/stat.h>

#include <cerrno>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "manifest.h"
#include "manifest_schema.h"
#include "mini_test.h"
#include "oat_edge/policy.h"

using nlohmann::json;
using oat_edge::BundleError;
using oat_edge::detail::Manifest;
namespace fs = std::filesystem;

static const json& table() {
  static const json t = [] {
    const fs::path p =
        fs::path(__FILE__).parent_path().parent_path().parent_path() / "tests/export/manifest_cases.json";
    std::ifstream f(p);
    if (!f) throw std::runtime_error("cannot read the shared manifest table " + p.string());
    return json::parse(f);
  }();
  return t;
}

// The JSON node at a dotted path (numeric parts index lists); the parent for `parent_only`.
static json& walk(json& d, const std::string& path, std::string* last) {
  json* cur = &d;
  std::stringstream ss(path);
  std::string part, next;
  std::getline(ss, part, '.');
  while (std::getline(ss, next, '.')) {
    cur = cur->is_array() ? &(*cur)[std::stoul(part)] : &(*cur)[part];
    part = next;
  }
  *last = part;
  return *cur;
}

// The manifest text a case describes: the same ops as case_text() in tests/export/test_manifest.py.
static std::string case_text(const json& c) {
  json d = table()[c.value("base", std::string("good"))];
  std::string text;
  bool raw = false;
  for (const auto& op : c["ops"]) {
    std::string last;
    if (op.contains("set")) {
      json v = op["value"];
      if (v.is_object() && v.contains("repeat"))
        v = std::string(v["times"].get<size_t>(), v["repeat"].get<std::string>()[0]);
      json& parent = walk(d, op["set"], &last);
      if (parent.is_array()) parent[std::stoul(last)] = v;
      else parent[last] = v;
    } else if (op.contains("delete")) {
      json& parent = walk(d, op["delete"], &last);
      if (parent.is_array()) parent.erase(std::stoul(last));
      else parent.erase(last);
    } else if (op.contains("text")) {
      text = op["text"], raw = true;
    } else if (op.contains("text_replace")) {
      text = d.dump(), raw = true;
      const std::string from = op["text_replace"][0], to = op["text_replace"][1];
      const size_t at = text.find(from);
      if (at == std::string::npos)
        throw std::runtime_error(c["name"].get<std::string>() + ": '" + from + "' not found");
      text.replace(at, from.size(), to);
    } else if (op.contains("nest")) {
      const size_t n = op["nest"];
      text = std::string(n, '[') + std::string(n, ']'), raw = true;
    } else {
      throw std::runtime_error("unknown op " + op.dump());
    }
  }
  return raw ? text : d.dump();
}

TEST(shared_table_cpp_validator) {
  size_t n = 0;
  for (const auto& c : table()["cases"]) {
    const std::string name = c["name"], text = case_text(c);
    ++n;
    try {
      Manifest::parse(text, "");
      if (!c["error"].is_null())
        mini_test::fail(__FILE__, __LINE__, name + ": accepted, expected '" + c["error"].get<std::string>() + "'");
    } catch (const BundleError& e) {
      if (c["error"].is_null()) mini_test::fail(__FILE__, __LINE__, name + ": rejected a good manifest: " + e.what());
      else if (std::string(e.what()).find(c["error"].get<std::string>()) == std::string::npos)
        mini_test::fail(__FILE__, __LINE__,
                        name + ": message lacks '" + c["error"].get<std::string>() + "': " + e.what());
    } catch (const std::exception& e) {
      mini_test::fail(__FILE__, __LINE__, name + ": not a BundleError: " + e.what());
    }
  }
  CHECK(n > 100);
}

TEST(io_names_in_any_order_come_back_in_contract_order) {
  json d = table()["good"];
  d["io"]["step"]["inputs"] = {"mem_v", "mem_k", "past_v", "past_k", "step", "token"};
  d["io"]["step"]["outputs"] = {"new_v", "logits", "new_k"};
  const Manifest m = Manifest::parse(d.dump(), "");
  CHECK(m.io_step.inputs == std::vector<std::string>({"token", "step", "past_k", "past_v", "mem_k", "mem_v"}));
  CHECK(m.io_step.outputs == std::vector<std::string>({"logits", "new_k", "new_v"}));
}

TEST(typed_fields_and_graph_shapes_resolved_from_the_manifest) {
  const Manifest m = Manifest::parse(table()["good"].dump(), "");
  CHECK_EQ(m.num_tokens, 8);
  CHECK_EQ(m.obs_dim, 3);
  CHECK_EQ(m.top_k, 10);
  CHECK(m.file_encoder == "encoder.onnx");
  CHECK(m.obs_offset[1] == 0.1f);
  const auto& past_k = m.graphs.at("step").inputs[2];
  CHECK(past_k.name == "past_k" && past_k.dtype == "float32");
  CHECK(past_k.dims == std::vector<int64_t>({4, 0, 4, 8, 64}));                     // L, B (any), H, K, Dh
  CHECK(m.graphs.at("decoder").inputs[0].dims == std::vector<int64_t>({0, 8, 4}));  // B, K, code_dim
  CHECK(m.graphs.at("decoder").inputs[1].dtype == "int64");
  json d = table()["good"];
  d["files"].erase("encoder");
  d["io"].erase("encoder");
  const Manifest no_enc = Manifest::parse(d.dump(), "");
  CHECK(no_enc.file_encoder.empty() && !no_enc.graphs.count("encoder"));
  CHECK(m.observation.empty() && m.observation_json.empty() && !m.control_hz);
}

TEST(named_inputs_replace_the_prefill_obs_input_in_spec_order) {
  json d = table()["good_named"];
  d["io"]["prefill"]["inputs"] = {"observation.images.top_view-2", "observation.state", "observation.images.corner"};
  d["control_hz"] = 80;
  const Manifest m = Manifest::parse(d.dump(), "");
  const std::vector<std::string> names{"observation.state", "observation.images.corner",
                                       "observation.images.top_view-2"};
  CHECK(m.io_prefill.inputs == names);
  const auto& in = m.graphs.at("prefill").inputs;
  CHECK_EQ(in.size(), size_t(3));
  CHECK(in[0].name == names[0] && in[0].dtype == "float32" && in[0].dims == std::vector<int64_t>({0, 2, 3}));
  CHECK(in[2].name == names[2] && in[2].dtype == "uint8" && in[2].dims == std::vector<int64_t>({0, 2, 24, 32, 3}));
  CHECK(m.obs_scale.empty() && m.obs_offset.empty());
  CHECK_EQ(m.observation.size(), size_t(3));
  CHECK(m.observation[1].shape == std::vector<int64_t>({32, 32, 3}));
  CHECK(json::parse(m.observation_json) == d["observation"]);
  CHECK(m.control_hz && *m.control_hz == 80.0);
}

// ---- the bundle's files: the real cause in the message ----------------------------------------

static fs::path bundle_dir(const char* name) {
  fs::path dir = fs::temp_directory_path() / name;
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const char* f : {"model.onnx", "policy_prefill.onnx", "decoder.onnx", "encoder.onnx"})
    std::ofstream(dir / f) << "x";
  return dir;
}

TEST(missing_graph_file_is_named) {
  fs::path dir = bundle_dir("oat_edge_test_manifest_missing");
  fs::remove(dir / "decoder.onnx");
  CHECK_THROWS(BundleError, Manifest::parse(table()["good"].dump(), dir.string()),
               "files.decoder = 'decoder.onnx' in " + dir.string() + " not found");
  std::ofstream(dir / "decoder.onnx") << "x";
  CHECK_EQ(Manifest::parse(table()["good"].dump(), dir.string()).horizon, 32);
  fs::remove_all(dir);
}

TEST(graph_file_that_is_a_directory_fifo_or_dangling_link_says_so) {
  fs::path dir = bundle_dir("oat_edge_test_manifest_kinds");
  const std::string good = table()["good"].dump();
  fs::remove(dir / "decoder.onnx");
  fs::create_directory(dir / "decoder.onnx");
  CHECK_THROWS(BundleError, Manifest::parse(good, dir.string()), "is a directory, expected an ONNX file");
  fs::remove(dir / "decoder.onnx");
  CHECK(::mkfifo((dir / "decoder.onnx").c_str(), 0644) == 0);
  CHECK_THROWS(BundleError, Manifest::parse(good, dir.string()), "is not a regular file (a FIFO");
  fs::remove(dir / "decoder.onnx");
  fs::create_symlink(dir / "gone.onnx", dir / "decoder.onnx");
  CHECK_THROWS(BundleError, Manifest::parse(good, dir.string()), "dangling symbolic link");
  fs::remove_all(dir);
}

TEST(open_errors_name_the_cause) {
  // Tests run as root, who reads anything: the EACCES path is checked on its message builder.
  const std::string where = "bundle file files.decoder = 'decoder.onnx' in /b";
  CHECK(oat_edge::detail::open_error_message(where, EACCES).find("decoder.onnx' in /b: permission denied") !=
        std::string::npos);
  CHECK(oat_edge::detail::open_error_message(where, EMFILE).find("cannot be opened: Too many open files") !=
        std::string::npos);
}

TEST(schema_names_come_from_the_embedded_file) {
  CHECK(oat_edge::detail::manifest_key() == "oat_edge.manifest");
  CHECK(oat_edge::detail::entry_file() == "model.onnx");
  CHECK(oat_edge::detail::bundle_schema()["format_version"] == 1);
}

MINI_TEST_MAIN()
