#include "sessions.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

#include "manifest.h"
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

// 64-bit hash of a file's bytes (FNV-1a over 8-byte words, then a splitmix64 finalizer): what
// keys the optimized-graph and TensorRT caches, so a graph whose weights changed is never served
// from a cache, whatever its size and modification time say. Not a defence against an attacker
// who can write the cache directory; that directory must be as trusted as the bundle.
std::string content_hash(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw BundleError(open_error_message("bundle graph " + path, errno));
  uint64_t h = 1469598103934665603ULL, n = 0;
  std::vector<char> buf(1 << 20);
  while (f) {
    f.read(buf.data(), std::streamsize(buf.size()));
    const size_t got = size_t(f.gcount());
    size_t i = 0;
    for (; i + 8 <= got; i += 8) {
      uint64_t w;
      std::memcpy(&w, buf.data() + i, 8);
      h = (h ^ w) * 1099511628211ULL;
    }
    for (; i < got; ++i) h = (h ^ uint8_t(buf[i])) * 1099511628211ULL;
    n += got;
  }
  h ^= n;
  h = (h ^ (h >> 30)) * 0xBF58476D1CE4E5B9ULL;
  h = (h ^ (h >> 27)) * 0x94D049BB133111EBULL;
  h ^= h >> 31;
  char hex[17];
  std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(h));
  return hex;
}

// One optimized file per (graph content, provider, ONNX Runtime version): bundles sharing a cache
// dir never collide, a changed graph is re-optimized, and a newer ORT never reads an older one's.
std::string cache_name(const std::string& src, const std::string& key, const std::string& provider, std::string ort) {
  for (char& c : ort)
    if (c == '.') c = '_';
  return fs::path(src).stem().string() + "." + provider + "." + key + ".ort" + ort + ".opt.onnx";
}

}  // namespace

std::string provider_for_device(const std::string& device) {
  if (device == "cpu") return kCpu;
  if (device == "cuda") return kCuda;
  if (device == "tensorrt" || device == "trt") return kTrt;
  throw InputError("device: expected 'cpu', 'cuda' or 'tensorrt', got '" + device + "'");
}

SessionFactory::SessionFactory(const RuntimeOptions& opt, const std::string& bundle_dir)
    : opt_(opt),
      dir_(bundle_dir),
      provider_(provider_for_device(opt.device)),
      available_(Ort::GetAvailableProviders()) {
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

const std::string& SessionFactory::key_of(const std::string& file) {
  auto it = keys_.find(file);
  if (it == keys_.end()) it = keys_.emplace(file, content_hash((fs::path(dir_) / file).string())).first;
  return it->second;
}

Ort::SessionOptions SessionFactory::options_for(const std::string& file, const std::string& provider, bool use_cache,
                                                LoadPlan* plan) {
  Ort::SessionOptions so;
  so.SetIntraOpNumThreads(opt_.intra_op_threads);
  so.SetInterOpNumThreads(1);
  so.SetExecutionMode(ORT_SEQUENTIAL);
  // Spinning burns a core between control cycles; the loop sleeps, so spinning only costs power/jitter.
  so.AddConfigEntry("session.intra_op.allow_spinning", opt_.spin_wait ? "1" : "0");
  so.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
  *plan = LoadPlan{(fs::path(dir_) / file).string(), "", ""};
  if (!opt_.optimized_model_dir.empty()) {
    std::error_code ec;
    fs::create_directories(opt_.optimized_model_dir, ec);
    auto cached = fs::path(opt_.optimized_model_dir) /
                  cache_name(file, key_of(file), provider, load_ort(opt_.ort_library).version);
    if (use_cache && fs::is_regular_file(cached, ec)) {
      plan->load_path = cached.string();  // already optimized: skip the optimizer at load
      so.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_DISABLE_ALL);
    } else {
      // ORT writes the optimized graph as it goes: a temporary name, renamed once the session
      // exists, so an interrupted load never leaves a truncated cache entry behind.
      plan->cache_path = cached.string();
      plan->cache_tmp = cached.string() + ".tmp" + std::to_string(::getpid());
      so.SetOptimizedModelFilePath(plan->cache_tmp.c_str());
    }
  }
  if (provider == kCuda) append_cuda(so);
  if (provider == kTrt) {
    // Engines are keyed by the graph's content too: ORT names them by the graph's structure, which
    // new weights do not change.
    std::string base = opt_.trt_cache_dir.empty() ? (fs::path(dir_) / "trt_cache").string() : opt_.trt_cache_dir;
    append_tensorrt(so, (fs::path(base) / (fs::path(file).stem().string() + "-" + key_of(file))).string(),
                    opt_.trt_fp16);
  }
  return so;
}

std::unique_ptr<Ort::Session> SessionFactory::open(const std::string& file, const std::string& provider) {
  Ort::Env& env = ort_env();
  LoadPlan plan;
  std::unique_ptr<Ort::Session> s;
  try {
    Ort::SessionOptions so = options_for(file, provider, true, &plan);
    s = std::make_unique<Ort::Session>(env, plan.load_path.c_str(), so);
  } catch (const Ort::Exception&) {
    std::error_code ec;
    if (!plan.cache_tmp.empty()) fs::remove(plan.cache_tmp, ec);
    if (plan.load_path == (fs::path(dir_) / file).string()) throw;
    // A damaged cache entry: drop it and optimize the bundle's own graph again.
    fs::remove(plan.load_path, ec);
    Ort::SessionOptions so = options_for(file, provider, false, &plan);
    s = std::make_unique<Ort::Session>(env, plan.load_path.c_str(), so);
  }
  if (!plan.cache_tmp.empty()) {
    std::error_code ec;
    fs::rename(plan.cache_tmp, plan.cache_path, ec);
    if (ec) fs::remove(plan.cache_tmp, ec);
  }
  return s;
}

std::unique_ptr<Ort::Session> SessionFactory::create(const std::string& file) {
  if (provider_ != kCpu) {
    try {
      return open(file, provider_);
    } catch (const Ort::Exception& e) { fall_back_or_throw(std::string("creating a session failed: ") + e.what()); }
  }
  try {
    return open(file, provider_);
  } catch (const Ort::Exception& e) {
    throw BundleError("ONNX Runtime could not load graph '" + file + "' from " + dir_ + ": " + e.what() +
                      ". The file is not a valid ONNX graph for this runtime (damaged, not ONNX, or made for a "
                      "newer ONNX Runtime); re-export the bundle or upgrade onnxruntime.");
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
