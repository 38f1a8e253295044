// pybind11 layer: oat_edge._core. Thin on purpose — argument checking that needs numpy lives in
// python/oat_edge/policy.py; here we only re-check what would otherwise corrupt memory (dtype,
// contiguity, shape) and translate C++ errors into the Python classes of oat_edge.errors.
#include <oat_edge/policy.h>
#include <oat_edge/realtime.h>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace py = pybind11;

namespace {

// The three Python exception classes, imported once from oat_edge.errors (so `except
// oat_edge.InputError` catches errors raised from C++ too).
struct ErrorClasses {
  py::object input, bundle, runtime_load;
};

ErrorClasses& error_classes() {
  PYBIND11_CONSTINIT static py::gil_safe_call_once_and_store<ErrorClasses> storage;
  return storage
      .call_once_and_store_result([] {
        py::module_ errors = py::module_::import("oat_edge.errors");
        return ErrorClasses{errors.attr("InputError"), errors.attr("BundleError"),
                            errors.attr("RuntimeLoadError")};
      })
      .get_stored();
}

// Messages may quote bytes from a corrupt file (ORT echoes node/tensor names): decode them with
// "replace", since PyErr_SetString would turn invalid UTF-8 into a UnicodeDecodeError instead.
void set_error(PyObject* cls, const char* what) {
  PyObject* msg = PyUnicode_DecodeUTF8(what, static_cast<Py_ssize_t>(std::strlen(what)), "replace");
  if (!msg) return;  // MemoryError already set
  PyErr_SetObject(cls, msg);
  Py_DECREF(msg);
}

void translate(std::exception_ptr p) {
  if (!p) return;
  try {
    std::rethrow_exception(p);
  } catch (const oat_edge::InputError& e) {
    set_error(error_classes().input.ptr(), e.what());
  } catch (const oat_edge::BundleError& e) {
    set_error(error_classes().bundle.ptr(), e.what());
  } catch (const oat_edge::RuntimeLoadError& e) {
    set_error(error_classes().runtime_load.ptr(), e.what());
  } catch (const oat_edge::Error& e) {  // a future subclass: still a RuntimeError, never lost
    set_error(PyExc_RuntimeError, e.what());
  }
}

std::string shape_str(const py::array& a) {
  std::ostringstream s;
  s << "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s << (i ? ", " : "") << a.shape(i);
  s << (a.ndim() == 1 ? ",)" : ")");
  return s.str();
}

// Refuse anything but a C-contiguous array of exactly T with the expected rank and trailing dims
// (-1 = any). No silent casts: a wrong dtype here is a bug in the caller, reported as InputError.
template <typename T>
void check_array(const py::array& a, const char* name, std::vector<py::ssize_t> dims) {
  auto fail = [&](const std::string& what) {
    throw oat_edge::InputError(std::string(name) + ": " + what +
                               " (oat_edge._core takes C-contiguous arrays prepared by "
                               "oat_edge.Policy; call that instead)");
  };
  if (!py::isinstance<py::array_t<T>>(a))  // same type and native byte order
    fail("expected dtype " + std::string(py::str(py::dtype::of<T>())) + ", got " +
         std::string(py::str(a.dtype())));
  if (!(a.flags() & py::array::c_style)) fail("expected a C-contiguous array, got a strided view");
  bool ok = a.ndim() == static_cast<py::ssize_t>(dims.size());
  for (size_t i = 0; ok && i < dims.size(); ++i) ok = dims[i] < 0 || a.shape(i) == dims[i];
  if (!ok) {
    std::ostringstream want;
    want << "[";
    for (size_t i = 0; i < dims.size(); ++i)
      want << (i ? ", " : "") << (dims[i] < 0 ? std::string("B") : std::to_string(dims[i]));
    want << "]";
    fail("expected shape " + want.str() + ", got " + shape_str(a));
  }
  if (a.shape(0) == 0) fail("empty batch (B = 0): pass at least one row");
}

py::dict stats_dict(const oat_edge::ActStats& s) {
  py::dict d;
  d["tokens_used"] = s.tokens_used;
  d["total_ms"] = s.total_ms;
  d["prefill_ms"] = s.prefill_ms;
  d["step_ms"] = s.step_ms;
  d["decode_ms"] = s.decode_ms;
  d["overhead_ms"] = s.overhead_ms;
  return d;
}

// Owns the C++ policy plus a mutex: with the GIL released, two Python threads may call one policy
// (one KV cache) at once. The core serialises calls today; this lock keeps the binding safe without
// relying on that. It is taken only after the GIL is dropped (no lock-order deadlock).
class PyPolicy {
 public:
  PyPolicy(const std::string& path, const oat_edge::RuntimeOptions& opt) {
    py::gil_scoped_release nogil;  // loading graphs takes a while: let other threads run
    policy_ = std::make_unique<oat_edge::Policy>(path, opt);
  }

  const oat_edge::PolicyInfo& info() const { return policy_->info(); }

  std::pair<py::array_t<float>, py::dict> act(const py::array& obs, const oat_edge::ActOptions& o) {
    const auto& i = info();
    check_array<float>(obs, "obs", {-1, i.n_obs_steps, i.obs_dim});
    const int batch = static_cast<int>(obs.shape(0));
    py::array_t<float> out({static_cast<py::ssize_t>(batch), static_cast<py::ssize_t>(i.horizon),
                            static_cast<py::ssize_t>(i.action_dim)});
    const float* in = static_cast<const float*>(obs.data());
    float* dst = out.mutable_data();
    oat_edge::ActStats stats;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(mu_);
      policy_->act(in, batch, dst, o, &stats);
    }
    return {std::move(out), stats_dict(stats)};
  }

  std::pair<py::array_t<int64_t>, py::dict> generate(const py::array& obs,
                                                     const oat_edge::ActOptions& o) {
    const auto& i = info();
    check_array<float>(obs, "obs", {-1, i.n_obs_steps, i.obs_dim});
    const int batch = static_cast<int>(obs.shape(0));
    py::array_t<int64_t> ids(
        {static_cast<py::ssize_t>(batch), static_cast<py::ssize_t>(i.num_tokens)});
    const float* in = static_cast<const float*>(obs.data());
    int64_t* dst = ids.mutable_data();
    oat_edge::ActStats stats;
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(mu_);
      policy_->generate(in, batch, dst, o, &stats);
    }
    return {std::move(ids), stats_dict(stats)};
  }

  py::array_t<float> detokenize(const py::array& ids) {
    const auto& i = info();
    check_array<int64_t>(ids, "ids", {-1, -1});
    const int batch = static_cast<int>(ids.shape(0));
    const int k = static_cast<int>(ids.shape(1));
    py::array_t<float> out({static_cast<py::ssize_t>(batch), static_cast<py::ssize_t>(i.horizon),
                            static_cast<py::ssize_t>(i.action_dim)});
    const int64_t* in = static_cast<const int64_t*>(ids.data());
    float* dst = out.mutable_data();
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(mu_);
      policy_->detokenize(in, batch, k, dst);
    }
    return out;
  }

  py::array_t<int64_t> tokenize(const py::array& actions) {
    const auto& i = info();
    check_array<float>(actions, "actions", {-1, i.horizon, i.action_dim});
    const int batch = static_cast<int>(actions.shape(0));
    py::array_t<int64_t> ids(
        {static_cast<py::ssize_t>(batch), static_cast<py::ssize_t>(i.num_tokens)});
    const float* in = static_cast<const float*>(actions.data());
    int64_t* dst = ids.mutable_data();
    {
      py::gil_scoped_release nogil;
      std::lock_guard<std::mutex> lock(mu_);
      policy_->tokenize(in, batch, dst);
    }
    return ids;
  }

  uint64_t step_runs() const { return policy_->step_runs(); }

 private:
  std::unique_ptr<oat_edge::Policy> policy_;
  std::mutex mu_;
};

py::dict info_dict(const oat_edge::PolicyInfo& i) {
  py::dict d;
  d["num_tokens"] = i.num_tokens;
  d["codebook_size"] = i.codebook_size;
  d["vocab_size"] = i.vocab_size;
  d["bos_id"] = i.bos_id;
  d["horizon"] = i.horizon;
  d["action_dim"] = i.action_dim;
  d["n_obs_steps"] = i.n_obs_steps;
  d["obs_dim"] = i.obs_dim;
  d["n_action_steps"] = i.n_action_steps;
  d["n_layers"] = i.n_layers;
  d["n_heads"] = i.n_heads;
  d["head_dim"] = i.head_dim;
  d["fsq_levels"] = i.fsq_levels;
  d["default_temperature"] = i.default_temperature;
  d["default_top_k"] = i.default_top_k;
  d["provider"] = i.provider;
  d["ort_version"] = i.ort_version;
  d["ort_library"] = i.ort_library;
  d["bundle_dir"] = i.bundle_dir;
  d["precision"] = i.precision;
  d["tokenizer_kind"] = i.tokenizer_kind;
  d["tasks"] = i.tasks;
  d["manifest_json"] = i.manifest_json;
  return d;
}

oat_edge::ActOptions make_act_options(int max_tokens, double temperature, int top_k,
                                      std::optional<uint64_t> seed, double latency_budget_ms,
                                      int min_tokens) {
  oat_edge::ActOptions o;
  o.max_tokens = max_tokens;
  o.temperature = temperature;
  o.top_k = top_k;
  o.seed = seed;
  o.latency_budget_ms = latency_budget_ms;
  o.min_tokens = min_tokens;
  return o;
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "oat_edge C++ runtime: the private backend of oat_edge.Policy (use that)";
  error_classes();  // fail at import, not at the first error, if oat_edge.errors is missing
  py::register_local_exception_translator(translate);

  py::class_<PyPolicy>(m, "Policy")
      .def(py::init([](const std::string& path, const std::string& ort_library,
                       const std::string& device, int threads, bool allow_cpu_fallback,
                       int max_batch, bool spin_wait, const std::string& optimized_model_dir,
                       const std::string& trt_cache_dir, bool trt_fp16, bool warmup) {
             oat_edge::RuntimeOptions o;
             o.ort_library = ort_library;
             o.device = device;
             o.intra_op_threads = threads;
             o.allow_cpu_fallback = allow_cpu_fallback;
             o.max_batch = max_batch;
             o.spin_wait = spin_wait;
             o.optimized_model_dir = optimized_model_dir;
             o.trt_cache_dir = trt_cache_dir;
             o.trt_fp16 = trt_fp16;
             o.warmup = warmup;
             return std::make_unique<PyPolicy>(path, o);
           }),
           py::arg("path"), py::arg("ort_library") = "", py::arg("device") = "cpu",
           py::arg("threads") = 1, py::arg("allow_cpu_fallback") = false,
           py::arg("max_batch") = 1, py::arg("spin_wait") = false,
           py::arg("optimized_model_dir") = "", py::arg("trt_cache_dir") = "",
           py::arg("trt_fp16") = true, py::arg("warmup") = true)
      .def(
          "act",
          [](PyPolicy& p, const py::array& obs, int max_tokens, double temperature, int top_k,
             std::optional<uint64_t> seed, double latency_budget_ms, int min_tokens) {
            return p.act(obs, make_act_options(max_tokens, temperature, top_k, seed,
                                               latency_budget_ms, min_tokens));
          },
          py::arg("obs"), py::arg("max_tokens") = 0, py::arg("temperature") = -1.0,
          py::arg("top_k") = -1, py::arg("seed") = py::none(), py::arg("latency_budget_ms") = 0.0,
          py::arg("min_tokens") = 1,
          "obs float32 [B, n_obs_steps, obs_dim] -> (actions float32 [B, H_a, D_a], stats dict)")
      .def(
          "generate",
          [](PyPolicy& p, const py::array& obs, int max_tokens, double temperature, int top_k,
             std::optional<uint64_t> seed, double latency_budget_ms, int min_tokens) {
            return p.generate(obs, make_act_options(max_tokens, temperature, top_k, seed,
                                                    latency_budget_ms, min_tokens));
          },
          py::arg("obs"), py::arg("max_tokens") = 0, py::arg("temperature") = -1.0,
          py::arg("top_k") = -1, py::arg("seed") = py::none(), py::arg("latency_budget_ms") = 0.0,
          py::arg("min_tokens") = 1,
          "obs float32 [B, n_obs_steps, obs_dim] -> (ids int64 [B, K] (-1 past tokens_used), stats)")
      .def("detokenize", &PyPolicy::detokenize, py::arg("ids"),
           "ids int64 [B, k] -> actions float32 [B, H_a, D_a]")
      .def("tokenize", &PyPolicy::tokenize, py::arg("actions"),
           "actions float32 [B, H_a, D_a] -> ids int64 [B, K]")
      .def_property_readonly("info", [](const PyPolicy& p) { return info_dict(p.info()); })
      .def_property_readonly("step_runs", &PyPolicy::step_runs);

  m.def(
      "prepare_realtime_memory",
      [](bool lock_memory) {
        const auto s = oat_edge::prepare_realtime_memory(lock_memory);
        py::dict d;
        d["malloc_pinned"] = s.malloc_pinned;
        d["locked"] = s.locked;
        d["message"] = s.message;
        return d;
      },
      py::arg("lock_memory") = true,
      "no-trim/no-mmap malloc, then mlockall when it is safe -> {malloc_pinned, locked, message}");
  m.def(
      "thread_faults",
      [] {
        const auto f = oat_edge::thread_faults();
        py::dict d;
        d["minor"] = f.minor;
        d["major"] = f.major;
        d["voluntary_switches"] = f.voluntary_switches;
        return d;
      },
      "page faults and voluntary context switches of the calling thread so far");
  m.def(
      "fsq_ids_to_codes",
      [](const std::vector<int>& levels, const py::array& ids) {
        check_array<int64_t>(ids, "ids", {-1});
        int64_t codebook = 1;
        for (int l : levels) {
          if (l < 2) throw oat_edge::InputError("levels: every FSQ level must be >= 2, got " + std::to_string(l));
          codebook *= l;
        }
        if (levels.empty()) throw oat_edge::InputError("levels: expected at least one FSQ level, got none");
        const int64_t* id = static_cast<const int64_t*>(ids.data());
        for (py::ssize_t n = 0; n < ids.shape(0); ++n)
          if (id[n] < 0 || id[n] >= codebook)
            throw oat_edge::InputError("ids[" + std::to_string(n) + "] = " + std::to_string(id[n]) +
                                       ": expected an id in [0, " + std::to_string(codebook) + ")");
        py::array_t<float> codes({ids.shape(0), static_cast<py::ssize_t>(levels.size())});
        oat_edge::fsq_ids_to_codes(levels, static_cast<const int64_t*>(ids.data()),
                                   static_cast<size_t>(ids.shape(0)), codes.mutable_data());
        return codes;
      },
      py::arg("levels"), py::arg("ids"), "FSQ ids int64 [N] -> codes float32 [N, len(levels)]");
}
