// Manifest validation (docs/DESIGN.md §6): accepts the reference manifest, rejects each broken variant.
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "manifest.h"
#include "mini_test.h"
#include "oat_edge/policy.h"

using nlohmann::json;
using oat_edge::BundleError;
using oat_edge::detail::Manifest;

static json good() {
  auto v = [](size_t n, double x) { return std::vector<double>(n, x); };
  return json{
      {"format", "oat_edge.bundle"}, {"format_version", 1}, {"producer", "oat_edge 0.1.0"},
      {"tokenizer", {{"kind", "oat"}, {"num_tokens", 8}, {"fsq_levels", {8, 5, 5, 5}}, {"codebook_size", 1000},
                     {"horizon", 32}, {"action_dim", 4}}},
      {"policy", {{"vocab_size", 1001}, {"bos_id", 1000}, {"n_layers", 4}, {"n_heads", 4}, {"head_dim", 64},
                  {"n_obs_steps", 2}, {"obs_dim", 42}, {"n_action_steps", 16}}},
      {"normalization", {{"obs_scale", v(42, 0.5)}, {"obs_offset", v(42, 0.0)}, {"action_scale", v(4, 1.0)},
                         {"action_offset", v(4, 0.0)}, {"action_low", v(4, -1.0)}, {"action_high", v(4, 1.0)}}},
      {"files", {{"step", "model.onnx"}, {"prefill", "policy_prefill.onnx"}, {"decoder", "decoder.onnx"},
                 {"encoder", "encoder.onnx"}}},
      {"io", {{"step", {{"inputs", {"token", "step", "past_k", "past_v", "mem_k", "mem_v"}},
                        {"outputs", {"logits", "new_k", "new_v"}}}},
              {"prefill", {{"inputs", {"obs"}}, {"outputs", {"mem_k", "mem_v"}}}},
              {"decoder", {{"inputs", {"codes", "num_tokens"}}, {"outputs", {"actions"}}}},
              {"encoder", {{"inputs", {"actions"}}, {"outputs", {"ids"}}}}}},
      {"sampling", {{"temperature", 1.0}, {"top_k", 10}}},
      {"precision", "fp32"},
      {"tasks", {"reach-v3", "push-v3", "pick-place-v3"}},
      {"obs_layout", "39-d Meta-World state followed by a one-hot over `tasks`"}};
}

static void rejects(const json& j, const std::string& needle) {
  CHECK_THROWS(BundleError, Manifest::parse(j.dump(), ""), needle);
}

TEST(accepts_reference_manifest) {
  Manifest m = Manifest::parse(good().dump(), "");
  CHECK_EQ(m.num_tokens, 8);
  CHECK_EQ(m.codebook_size, 1000);
  CHECK_EQ(m.obs_dim, 42);
  CHECK_EQ(m.top_k, 10);
  CHECK(m.file_encoder == "encoder.onnx");
  CHECK(m.io_step.inputs[2] == "past_k");
  json j = good();
  j["files"].erase("encoder");  // encoder is optional
  j["io"].erase("encoder");
  CHECK(Manifest::parse(j.dump(), "").file_encoder.empty());
}

TEST(rejects_wrong_format_version) {
  json j = good();
  j["format_version"] = 2;
  rejects(j, "bundle format_version 2, this runtime reads 1: re-export");
}

TEST(rejects_missing_fields) {
  json j = good();
  j["policy"].erase("obs_dim");
  rejects(j, "missing field 'policy.obs_dim'");
  j = good();
  j.erase("normalization");
  rejects(j, "missing field 'normalization'");
  j = good();
  j["tokenizer"]["horizon"] = "32";
  rejects(j, "'tokenizer.horizon' must be an integer");
}

TEST(rejects_wrong_lengths_and_values) {
  json j = good();
  j["normalization"]["obs_scale"] = std::vector<double>(39, 1.0);
  rejects(j, "'normalization.obs_scale' has length 39, expected 42");
  j = good();
  j["normalization"]["action_scale"][2] = 0.0;
  rejects(j, "action_scale[2]' is zero");
  j = good();
  j["tokenizer"]["codebook_size"] = 999;
  rejects(j, "prod(fsq_levels) is 1000");
  j = good();
  j["policy"]["vocab_size"] = 1000;
  rejects(j, "expected codebook_size + 1 = 1001");
  j = good();
  j["format"] = "something.else";
  rejects(j, "expected 'oat_edge.bundle'");
  j = good();
  j["io"]["step"]["outputs"] = {"logits"};
  rejects(j, "expected 6 / 3");
  CHECK_THROWS(BundleError, Manifest::parse("{not json", ""), "not valid JSON");
}

TEST(checks_files_exist_next_to_model) {
  namespace fs = std::filesystem;
  fs::path dir = fs::temp_directory_path() / "oat_edge_test_manifest_files";
  fs::remove_all(dir);
  fs::create_directories(dir);
  for (const char* f : {"model.onnx", "policy_prefill.onnx", "encoder.onnx"}) std::ofstream(dir / f) << "x";
  CHECK_THROWS(BundleError, Manifest::parse(good().dump(), dir.string()), "files.decoder = 'decoder.onnx' not found");
  std::ofstream(dir / "decoder.onnx") << "x";
  CHECK_EQ(Manifest::parse(good().dump(), dir.string()).horizon, 32);
  fs::remove_all(dir);
}

MINI_TEST_MAIN()
