// Finds and dlopens libonnxruntime at run time (we only compile against its headers).
#pragma once

#include <string>

struct OrtApi;
namespace Ort {
struct Env;
}

namespace oat_edge::detail {

struct OrtRuntime {
  const OrtApi* api = nullptr;
  std::string version;  // "1.32.0"
  std::string library;  // resolved file the symbols came from
};

// Loads ORT once per process and calls Ort::InitApi. Search: explicit_path, then env
// OAT_EDGE_ORT_LIBRARY, then the system sonames libonnxruntime.so.1 / libonnxruntime.so.
// Throws RuntimeLoadError (not found / not ORT / too old / a different library already loaded).
const OrtRuntime& load_ort(const std::string& explicit_path);

// The process-wide Ort::Env (created on first use, after load_ort).
Ort::Env& ort_env();

}  // namespace oat_edge::detail
