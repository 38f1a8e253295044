// ORT session creation: threading/optimization options and execution-provider selection.
#pragma once

#include <onnxruntime_cxx_api.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "oat_edge/policy.h"

namespace oat_edge::detail {

// ORT provider names for a RuntimeOptions.device ("cpu" | "cuda" | "tensorrt").
// Throws InputError for an unknown device string.
std::string provider_for_device(const std::string& device);

class SessionFactory {
 public:
  // Decides the provider: the requested one if this ORT build has it, else CPU when
  // allow_cpu_fallback, else RuntimeLoadError listing the available providers.
  SessionFactory(const RuntimeOptions& opt, const std::string& bundle_dir);
  // Creates a session for bundle_dir/file. A provider that fails at session creation (e.g.
  // CUDA libraries missing) is handled like an unavailable one (fallback or RuntimeLoadError).
  std::unique_ptr<Ort::Session> create(const std::string& file);
  const std::string& provider() const { return provider_; }  // e.g. "CPUExecutionProvider"
  const std::string& fallback_reason() const { return fallback_reason_; }

 private:
  struct LoadPlan {
    std::string load_path;              // the bundle's graph, or its cached optimized copy
    std::string cache_path, cache_tmp;  // set when this load writes the optimized copy
  };
  Ort::SessionOptions options_for(const std::string& file, const std::string& provider, bool use_cache, LoadPlan* plan);
  std::unique_ptr<Ort::Session> open(const std::string& file, const std::string& provider);
  const std::string& key_of(const std::string& file);  // content hash of a bundle file, computed once
  void fall_back_or_throw(const std::string& why);
  RuntimeOptions opt_;
  std::string dir_, provider_, fallback_reason_;
  std::vector<std::string> available_;
  std::map<std::string, std::string> keys_;
};

// Names of a session's inputs/outputs (for checking against the manifest).
std::vector<std::string> input_names(Ort::Session& s);
std::vector<std::string> output_names(Ort::Session& s);

}  // namespace oat_edge::detail
