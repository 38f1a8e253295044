// dlopen-based ONNX Runtime loading (docs/DESIGN.md): one build serves CPU/GPU wheels and
// Jetson builds; a missing or too-old library becomes a RuntimeLoadError instead of a loader crash.
#include "ort_loader.h"

#include <dlfcn.h>
#include <elf.h>
#include <link.h>  // ElfW
#include <onnxruntime_cxx_api.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "oat_edge/policy.h"

namespace oat_edge::detail {
namespace {

constexpr const char* kEnvVar = "OAT_EDGE_ORT_LIBRARY";

std::mutex g_mu;
std::unique_ptr<OrtRuntime> g_runtime;  // never unloaded: ORT does not support dlclose safely
std::unique_ptr<Ort::Env> g_env;

std::string canonical_or_same(const std::string& p) {
  std::error_code ec;
  auto c = std::filesystem::canonical(p, ec);
  return ec ? p : c.string();
}

// A file that starts like an ELF object but is shorter than its headers say (an interrupted copy or
// download) is mapped by dlopen past its end, and the first touch of the missing pages is a SIGBUS.
// Returns why such a file is truncated, or "" (also for non-ELF files and names dlopen must search:
// dlopen reports those itself).
std::string truncated_elf(const std::string& path) {
  if (path.find('/') == std::string::npos) return {};  // a bare name: dlopen searches the library path
  std::ifstream f(path, std::ios::binary);
  if (!f) return {};
  f.seekg(0, std::ios::end);
  const auto size = static_cast<uint64_t>(f.tellg());
  f.seekg(0);
  auto too_short = [&](uint64_t end, const char* what) {
    return path + ": truncated ELF file (" + std::to_string(size) + " bytes, its " + what + " ends at byte " +
           std::to_string(end) + "); the copy or download was cut short: reinstall onnxruntime";
  };
  ElfW(Ehdr) eh{};
  const bool whole = bool(f.read(reinterpret_cast<char*>(&eh), sizeof eh));
  if (f.gcount() < SELFMAG || std::memcmp(eh.e_ident, ELFMAG, SELFMAG) != 0) return {};  // not ELF: dlopen says so
  if (!whole) return too_short(sizeof eh, "ELF header");
  if (eh.e_ident[EI_CLASS] != (sizeof(void*) == 8 ? ELFCLASS64 : ELFCLASS32)) return {};  // wrong class: dlopen says so
  const uint64_t sh_end = uint64_t(eh.e_shoff) + uint64_t(eh.e_shnum) * eh.e_shentsize;
  if (eh.e_shoff && sh_end > size) return too_short(sh_end, "section header table");
  const uint64_t ph_end = uint64_t(eh.e_phoff) + uint64_t(eh.e_phnum) * eh.e_phentsize;
  if (ph_end > size) return too_short(ph_end, "program header table");
  for (unsigned i = 0; i < eh.e_phnum && eh.e_phentsize == sizeof(ElfW(Phdr)); ++i) {
    ElfW(Phdr) ph{};
    f.seekg(static_cast<std::streamoff>(eh.e_phoff + uint64_t(i) * eh.e_phentsize));
    if (!f.read(reinterpret_cast<char*>(&ph), sizeof ph)) return too_short(ph_end, "program header table");
    if (ph.p_type == PT_LOAD && uint64_t(ph.p_offset) + ph.p_filesz > size)
      return too_short(uint64_t(ph.p_offset) + ph.p_filesz, "loadable segment");
  }
  return {};
}

// Tries one candidate; returns an empty string on success, else why it failed.
std::string try_load(const std::string& path) {
  if (std::string why = truncated_elf(path); !why.empty()) return why;
  void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    const char* e = dlerror();
    return path + ": " + (e ? e : "dlopen failed");
  }
  using GetBase = const OrtApiBase* (*)();
  auto get_base = reinterpret_cast<GetBase>(dlsym(h, "OrtGetApiBase"));
  if (!get_base) return path + ": not an ONNX Runtime library (no OrtGetApiBase symbol)";
  const OrtApiBase* base = get_base();
  std::string version = base->GetVersionString ? base->GetVersionString() : "unknown";
  const OrtApi* api = base->GetApi(ORT_API_VERSION);
  Dl_info dli{};
  std::string resolved = path;
  if (dladdr(reinterpret_cast<void*>(get_base), &dli) && dli.dli_fname) resolved = canonical_or_same(dli.dli_fname);
  if (!api) {
    throw RuntimeLoadError("ONNX Runtime " + version + " found at " + resolved + ", oat_edge needs >= 1.21 (C API " +
                           std::to_string(ORT_API_VERSION) + "). Install onnxruntime>=1.21 (pip) or point " + kEnvVar +
                           " / RuntimeOptions.ort_library at a newer libonnxruntime.so");
  }
  Ort::InitApi(api);
  g_runtime = std::make_unique<OrtRuntime>(OrtRuntime{api, version, resolved});
  return {};
}

}  // namespace

const OrtRuntime& load_ort(const std::string& explicit_path) {
  std::lock_guard<std::mutex> lock(g_mu);
  if (g_runtime) {
    // One ORT per process: a second, different explicit library cannot be honoured.
    if (!explicit_path.empty() && canonical_or_same(explicit_path) != g_runtime->library) {
      throw RuntimeLoadError("ONNX Runtime is already loaded in this process from " + g_runtime->library +
                             "; cannot also load " + explicit_path +
                             ". Use the same ort_library for every Policy in one process.");
    }
    return *g_runtime;
  }
  std::vector<std::pair<std::string, std::string>> candidates;  // (path, where it came from)
  const char* env = std::getenv(kEnvVar);
  if (!explicit_path.empty()) {
    candidates.emplace_back(explicit_path, "RuntimeOptions.ort_library");
  } else if (env && *env) {
    candidates.emplace_back(env, kEnvVar);
  } else {
#ifdef OAT_EDGE_BUILD_ORT_LIBRARY  // the library next to the headers this was built with (ONNXRUNTIME_ROOT/lib)
    candidates.emplace_back(OAT_EDGE_BUILD_ORT_LIBRARY, "ONNXRUNTIME_ROOT at build time");
#endif
    candidates.emplace_back("libonnxruntime.so.1", "system library path");
    candidates.emplace_back("libonnxruntime.so", "system library path");
  }
  std::string tried;
  for (const auto& [path, origin] : candidates) {
    std::string why = try_load(path);
    if (why.empty()) return *g_runtime;
    tried += "\n  - " + why + " (from " + origin + ")";
  }
  throw RuntimeLoadError(
      "could not load the ONNX Runtime library; tried:" + tried +
      "\nFix: pip install onnxruntime (or onnxruntime-gpu) and pass its capi/libonnxruntime.so.* as ort_library, "
      "or set " +
      kEnvVar + "=/path/to/libonnxruntime.so, or install ORT system-wide (ldconfig).");
}

Ort::Env& ort_env() {
  std::lock_guard<std::mutex> lock(g_mu);
  if (!g_runtime) throw RuntimeLoadError("internal: ort_env() before load_ort()");
  if (!g_env) g_env = std::make_unique<Ort::Env>(ORT_LOGGING_LEVEL_WARNING, "oat_edge");
  return *g_env;
}

}  // namespace oat_edge::detail
