#include "sessions.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>

#include "ort_loader.h"

namespace oat_edge::detail {
namespace fs = std::filesystem;
namespace {

constexpr const char* kCpu = "CPUExecutionProvider";
constexpr const char* kCuda = "CUDAExecutionProvider";
constexpr const char* kTrt = "TensorrtExecutionProvider";

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

void append_cuda(Ort::SessionOptions& so) {
  const OrtApi& api = Ort::GetApi();
  OrtCUDAProviderOptionsV2* cuda = nullptr;
  Ort::ThrowOnError(api.CreateCUDAProviderOptions(&cuda));
  std::unique_ptr<OrtCUDAProviderOptionsV2, void (*)(OrtCUDAProviderOptionsV2*)> guard(
      cuda, [](OrtCUDAProviderOptionsV2* p) { Ort::GetApi().ReleaseCUDAProviderOptions(p); });
  const char* keys[] = {"device_id", "do_copy_in_default_stream"};
  const char* vals[] = {"0", "1"};
  Ort::ThrowOnError(api.UpdateCUDAProviderOptions(cuda, keys, vals, 2));
  so.AppendExecutionProvider_CUDA_V2(*cuda);
}

void append_tensorrt(Ort::SessionOptions& so, const std::string& cache_dir, bool fp16) {
  const OrtApi& api = Ort::GetApi();
  OrtTensorRTProviderOptionsV2* trt = nullptr;
  Ort::ThrowOnError(api.CreateTensorRTProviderOptions(&trt));
  std::unique_ptr<OrtTensorRTProviderOptionsV2, void (*)(OrtTensorRTProviderOptionsV2*)> guard(
      trt, [](OrtTensorRTProviderOptionsV2* p) { Ort::GetApi().ReleaseTensorRTProviderOptions(p); });
  std::error_code ec;
  fs::create_directories(cache_dir, ec);  // engines are built once (install time) and reused
  const char* keys[] = {"device_id", "trt_engine_cache_enable", "trt_engine_cache_path", "trt_fp16_enable",
                        "trt_timing_cache_enable"};
  const char* vals[] = {"0", "1", cache_dir.c_str(), fp16 ? "1" : "0", "1"};
  Ort::ThrowOnError(api.UpdateTensorRTProviderOptions(trt, keys, vals, 5));
  so.AppendExecutionProvider_TensorRT_V2(*trt);
  append_cuda(so);  // nodes TensorRT cannot take run on CUDA, not on CPU
}

// Cache file name keyed by the source graph's identity (canonical path, size, mtime) and the
// provider, so bundles sharing one cache dir never collide and a re-exported graph is re-optimized.
std::string cache_name(const std::string& src, const std::string& provider) {
  std::error_code ec;
  std::string key = fs::weakly_canonical(src, ec).string();
  key += "|" + std::to_string(fs::file_size(src, ec));
  key += "|" + std::to_string(fs::last_write_time(src, ec).time_since_epoch().count());
  uint64_t h = 1469598103934665603ULL;  // FNV-1a 64
  for (unsigned char c : key) h = (h ^ c) * 1099511628211ULL;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return fs::path(src).stem().string() + "." + provider + "." + hex + ".opt.onnx";
}

}  // namespace

std::string provider_for_device(const std::string& device) {
  if (device == "cpu") return kCpu;
  if (device == "cuda") return kCuda;
  if (device == "tensorrt" || device == "trt") return kTrt;
  throw InputError("device: expected 'cpu', 'cuda' or 'tensorrt', got '" + device + "'");
}

SessionFactory::SessionFactory(const RuntimeOptions& opt, const std::string& bundle_dir)
    : opt_(opt), dir_(bundle_dir), provider_(provider_for_device(opt.device)), available_(Ort::GetAvailableProviders()) {
  if (opt_.intra_op_threads < 0)
    throw InputError("intra_op_threads: expected >= 0 (0 = ORT default), got " + std::to_string(opt_.intra_op_threads));
  if (std::find(available_.begin(), available_.end(), provider_) == available_.end())
    fall_back_or_throw(provider_ + " is not in this ONNX Runtime build");
}

void SessionFactory::fall_back_or_throw(const std::string& why) {
  if (provider_ == kCpu) throw RuntimeLoadError("CPU execution provider failed: " + why);
  if (!opt_.allow_cpu_fallback)
    throw RuntimeLoadError("device '" + opt_.device + "' unavailable: " + why + ". Available providers: " +
                           join(available_) + ". Install onnxruntime-gpu (CUDA 12, cuDNN 9) and pass its library, " +
                           "or set allow_cpu_fallback / device='cpu'.");
  fallback_reason_ = why;
  provider_ = kCpu;
}

Ort::SessionOptions SessionFactory::options_for(const std::string& file, const std::string& provider,
                                                std::string* load_path) {
  Ort::SessionOptions so;
  so.SetIntraOpNumThreads(opt_.intra_op_threads);
  so.SetInterOpNumThreads(1);
  so.SetExecutionMode(ORT_SEQUENTIAL);
  // Spinning burns a core between control cycles; the loop sleeps, so spinning only costs power/jitter.
  so.AddConfigEntry("session.intra_op.allow_spinning", opt_.spin_wait ? "1" : "0");
  so.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
  *load_path = (fs::path(dir_) / file).string();
  if (!opt_.optimized_model_dir.empty()) {
    // Optimized graphs are provider-specific: one cache file per (graph, provider).
    std::error_code ec;
    fs::create_directories(opt_.optimized_model_dir, ec);
    auto cached = fs::path(opt_.optimized_model_dir) / cache_name(*load_path, provider);
    bool fresh = fs::is_regular_file(cached, ec);
    if (fresh) {
      *load_path = cached.string();  // already optimized: skip the optimizer at load
      so.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_DISABLE_ALL);
    } else {
      so.SetOptimizedModelFilePath(cached.c_str());
    }
  }
  if (provider == kCuda) append_cuda(so);
  if (provider == kTrt) {
    std::string cache = opt_.trt_cache_dir.empty() ? (fs::path(dir_) / "trt_cache").string() : opt_.trt_cache_dir;
    append_tensorrt(so, cache, opt_.trt_fp16);
  }
  return so;
}

std::unique_ptr<Ort::Session> SessionFactory::create(const std::string& file) {
  Ort::Env& env = ort_env();
  if (provider_ != kCpu) {
    try {
      std::string path;
      Ort::SessionOptions so = options_for(file, provider_, &path);
      return std::make_unique<Ort::Session>(env, path.c_str(), so);
    } catch (const Ort::Exception& e) {
      fall_back_or_throw(std::string("creating a session failed: ") + e.what());
    }
  }
  try {
    std::string path;
    Ort::SessionOptions so = options_for(file, provider_, &path);
    return std::make_unique<Ort::Session>(env, path.c_str(), so);
  } catch (const Ort::Exception& e) {
    throw BundleError("ONNX Runtime could not load graph '" + file + "' from " + dir_ + ": " + e.what() +
                      ". The file is corrupt or needs a newer ONNX Runtime; re-export or upgrade onnxruntime.");
  }
}

namespace {
std::vector<std::string> names(Ort::Session& s, bool inputs) {
  Ort::AllocatorWithDefaultOptions alloc;
  std::vector<std::string> out;
  size_t n = inputs ? s.GetInputCount() : s.GetOutputCount();
  for (size_t i = 0; i < n; ++i)
    out.emplace_back((inputs ? s.GetInputNameAllocated(i, alloc) : s.GetOutputNameAllocated(i, alloc)).get());
  return out;
}
}  // namespace

std::vector<std::string> input_names(Ort::Session& s) { return names(s, true); }
std::vector<std::string> output_names(Ort::Session& s) { return names(s, false); }

}  // namespace oat_edge::detail
