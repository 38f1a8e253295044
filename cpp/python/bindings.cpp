// pybind11 layer: oat_edge._core. It only translates: Python objects into the core's types (arrays
// into TensorViews with their dtype and shape, numbers into options, with an InputError for a value
// of the wrong kind instead of pybind's signature dump), and C++ errors into the Python classes of
// oat_edge.errors. Every range, shape and dtype rule is the core's (input_checks.cpp).
#include <oat_edge/policy.h>
#include <oat_edge/realtime.h>

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <climits>
#include <cstdint>
#include <cstring>
#include <optional>
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

// ---- Python values -> core types. Only the kind of value is checked here; ranges are the core's.

[[noreturn]] void wrong_kind(const char* name, const char* expected, const py::handle& v) {
  throw oat_edge::InputError(std::string(name) + ": expected " + expected + ", got " +
                             std::string(py::str(py::type::of(v).attr("__name__"))) + " " +
                             std::string(py::repr(v)));
}

bool is_bool(const py::handle& v) {
  if (PyBool_Check(v.ptr())) return true;
  const char* t = Py_TYPE(v.ptr())->tp_name;  // numpy.bool_ (numpy 1) or numpy.bool (numpy 2)
  return std::strcmp(t, "numpy.bool_") == 0 || std::strcmp(t, "numpy.bool") == 0;
}

// An int (anything with __index__, but not a bool) that fits in int64.
int64_t to_int64(const char* name, const py::handle& v) {
  if (is_bool(v) || !PyIndex_Check(v.ptr())) wrong_kind(name, "an int", v);
  py::object i = py::reinterpret_steal<py::object>(PyNumber_Index(v.ptr()));
  if (!i) throw py::error_already_set();
  int overflow = 0;
  const long long x = PyLong_AsLongLongAndOverflow(i.ptr(), &overflow);
  if (overflow)
    throw oat_edge::InputError(std::string(name) + ": got " + std::string(py::str(i)) +
                               ", far outside any valid range (see the documented range of " + name + ")");
  return x;
}

int to_int(const char* name, const py::handle& v) {
  const int64_t x = to_int64(name, v);
  if (x < INT_MIN || x > INT_MAX)
    throw oat_edge::InputError(std::string(name) + ": got " + std::to_string(x) +
                               ", far outside any valid range (see the documented range of " + name + ")");
  return static_cast<int>(x);
}

std::optional<int64_t> opt_int64(const char* name, const py::handle& v) {
  if (v.is_none()) return std::nullopt;
  return to_int64(name, v);
}

std::optional<double> opt_float(const char* name, const py::handle& v) {
  if (v.is_none()) return std::nullopt;
  if (is_bool(v) || py::isinstance<py::str>(v) || py::isinstance<py::bytes>(v) || !PyNumber_Check(v.ptr()) ||
      PyComplex_Check(v.ptr()) || py::isinstance<py::array>(v))
    wrong_kind(name, "a number", v);
  const double x = PyFloat_AsDouble(v.ptr());
  if (x == -1.0 && PyErr_Occurred()) throw py::error_already_set();
  return x;
}

std::optional<uint64_t> opt_seed(const py::handle& v) {
  if (v.is_none()) return std::nullopt;
  if (is_bool(v) || !PyIndex_Check(v.ptr())) wrong_kind("seed", "an int in [0, 2**64)", v);
  py::object i = py::reinterpret_steal<py::object>(PyNumber_Index(v.ptr()));
  if (!i) throw py::error_already_set();
  const unsigned long long x = PyLong_AsUnsignedLongLong(i.ptr());
  if (x == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
    PyErr_Clear();
    throw oat_edge::InputError("seed: expected an int in [0, 2**64), got " + std::string(py::str(i)));
  }
  return static_cast<uint64_t>(x);
}

bool to_bool(const char* name, const py::handle& v) {
  // bool("no") is True: a flag given as a string or a number is a mistake, not a truthy value
  if (!is_bool(v)) wrong_kind(name, "True or False", v);
  return PyObject_IsTrue(v.ptr()) == 1;
}

std::string to_str(const char* name, const py::handle& v) {
  if (!py::isinstance<py::str>(v)) wrong_kind(name, "a str", v);
  return v.cast<std::string>();
}

oat_edge::DType dtype_of(const py::array& a) {
  using oat_edge::DType;
  const py::dtype d = a.dtype();
  const char kind = d.kind();
  const auto size = d.itemsize();
  if (!d.attr("isnative").cast<bool>()) return DType::Other;  // byte-swapped: not readable as is
  if (kind == 'f') return size == 4 ? DType::Float32 : size == 8 ? DType::Float64 : size == 2 ? DType::Float16 : DType::Other;
  if (kind == 'i') return size == 8 ? DType::Int64 : size == 4 ? DType::Int32 : size == 2 ? DType::Int16 : DType::Int8;
  if (kind == 'u') return size == 8 ? DType::UInt64 : size == 4 ? DType::UInt32 : size == 2 ? DType::UInt16 : DType::UInt8;
  if (kind == 'b') return DType::Bool;
  return DType::Other;
}

// A C-contiguous numpy array as a TensorView (no copy). Making arrays contiguous is the caller's
// part (oat_edge.Policy does it); a strided view here is refused rather than read wrongly.
oat_edge::TensorView view_of(const py::handle& obj, const char* name) {
  if (!py::isinstance<py::array>(obj)) wrong_kind(name, "a numpy array", obj);
  const auto a = py::reinterpret_borrow<py::array>(obj);
  if (!(a.flags() & py::array::c_style))
    throw oat_edge::InputError(std::string(name) + ": expected a C-contiguous array, got a strided view "
                               "(np.ascontiguousarray makes one; oat_edge.Policy does it for you)");
  oat_edge::TensorView v;
  v.data = a.data();
  v.dtype = dtype_of(a);
  v.rank = static_cast<size_t>(a.ndim());
  for (size_t i = 0; i < v.rank && i < oat_edge::TensorView::kMaxRank; ++i) v.shape[i] = a.shape(i);
  return v;
}

oat_edge::ActOptions act_options(const py::handle& max_tokens, const py::handle& min_tokens,
                                 const py::handle& temperature, const py::handle& top_k, const py::handle& seed,
                                 const py::handle& latency_budget_ms) {
  oat_edge::ActOptions o;
  o.max_tokens = opt_int64("max_tokens", max_tokens);
  o.min_tokens = opt_int64("min_tokens", min_tokens);
  o.temperature = opt_float("temperature", temperature);
  o.top_k = opt_int64("top_k", top_k);
  o.seed = opt_seed(seed);
  o.latency_budget_ms = opt_float("latency_budget_ms", latency_budget_ms);
  return o;
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

py::dict info_dict(const oat_edge::PolicyInfo& i) {
  py::dict d;
  for (auto [k, v] : {std::pair<const char*, int>{"num_tokens", i.num_tokens}, {"codebook_size", i.codebook_size},
                      {"horizon", i.horizon}, {"action_dim", i.action_dim}, {"n_obs_steps", i.n_obs_steps},
                      {"obs_dim", i.obs_dim}, {"n_action_steps", i.n_action_steps}, {"vocab_size", i.vocab_size},
                      {"bos_id", i.bos_id}, {"n_layers", i.n_layers}, {"n_heads", i.n_heads},
                      {"head_dim", i.head_dim}, {"default_top_k", i.default_top_k}, {"max_batch", i.max_batch},
                      {"batch_limit", i.batch_limit}})
    d[k] = v;
  for (auto [k, v] : {std::pair<const char*, const std::string*>{"tokenizer_kind", &i.tokenizer_kind},
                      {"obs_layout", &i.obs_layout}, {"provider", &i.provider}, {"ort_version", &i.ort_version},
                      {"ort_library", &i.ort_library}, {"bundle_dir", &i.bundle_dir}, {"precision", &i.precision},
                      {"manifest_json", &i.manifest_json}})
    d[k] = *v;
  d["fsq_levels"] = i.fsq_levels;
  d["tasks"] = i.tasks;
  d["default_temperature"] = i.default_temperature;
  d["has_encoder"] = i.has_encoder;
  const auto& n = i.normalization;
  py::dict norm;
  norm["obs_scale"] = n.obs_scale;
  norm["obs_offset"] = n.obs_offset;
  norm["action_scale"] = n.action_scale;
  norm["action_offset"] = n.action_offset;
  norm["action_low"] = n.action_low;
  norm["action_high"] = n.action_high;
  d["normalization"] = norm;
  py::list inputs;
  for (const auto& in : i.inputs) {
    py::dict e;
    e["name"] = in.name;
    e["dtype"] = oat_edge::dtype_name(in.dtype);
    e["shape"] = in.shape;
    inputs.append(e);
  }
  d["inputs"] = inputs;
  return d;
}

// Owns the C++ policy. The core serializes calls with its own lock (fork-safe), so the GIL is
// simply released around every call.
class PyPolicy {
 public:
  PyPolicy(const std::string& path, const oat_edge::RuntimeOptions& opt) {
    py::gil_scoped_release nogil;  // loading graphs takes a while: let other threads run
    policy_ = std::make_unique<oat_edge::Policy>(path, opt);
  }
  const oat_edge::PolicyInfo& info() const { return policy_->info(); }
  void check(const oat_edge::ActOptions& o) const { policy_->check(o); }

  std::pair<py::array_t<float>, py::dict> act(const py::handle& obs, const oat_edge::ActOptions& o) {
    const auto v = view_of(obs, "obs");
    const auto& i = info();
    py::array_t<float> out({rows(v), py::ssize_t(i.horizon), py::ssize_t(i.action_dim)});
    oat_edge::ActStats stats;
    {
      py::gil_scoped_release nogil;
      policy_->act(v, {out.mutable_data(), size_t(out.size())}, o, &stats);
    }
    return {std::move(out), stats_dict(stats)};
  }

  std::pair<py::array_t<int64_t>, py::dict> generate(const py::handle& obs, const oat_edge::ActOptions& o) {
    const auto v = view_of(obs, "obs");
    py::array_t<int64_t> ids({rows(v), py::ssize_t(info().num_tokens)});
    oat_edge::ActStats stats;
    {
      py::gil_scoped_release nogil;
      policy_->generate(v, {ids.mutable_data(), size_t(ids.size())}, o, &stats);
    }
    return {std::move(ids), stats_dict(stats)};
  }

  py::array_t<float> detokenize(const py::handle& ids) {
    const auto v = view_of(ids, "ids");
    const auto& i = info();
    py::array_t<float> out({rows(v), py::ssize_t(i.horizon), py::ssize_t(i.action_dim)});
    {
      py::gil_scoped_release nogil;
      policy_->detokenize(v, {out.mutable_data(), size_t(out.size())});
    }
    return out;
  }

  py::array_t<int64_t> tokenize(const py::handle& actions) {
    const auto v = view_of(actions, "actions");
    py::array_t<int64_t> ids({rows(v), py::ssize_t(info().num_tokens)});
    {
      py::gil_scoped_release nogil;
      policy_->tokenize(v, {ids.mutable_data(), size_t(ids.size())});
    }
    return ids;
  }

  uint64_t step_runs() const { return policy_->step_runs(); }

 private:
  // Output rows for an input view: its leading dim when it is a plausible batch, else 0 (an empty
  // output the core never writes, since it refuses the input first).
  py::ssize_t rows(const oat_edge::TensorView& v) const {
    return v.rank >= 1 && v.shape[0] >= 1 && v.shape[0] <= info().batch_limit ? py::ssize_t(v.shape[0]) : 0;
  }
  std::unique_ptr<oat_edge::Policy> policy_;
};

oat_edge::RuntimeOptions runtime_options(const py::kwargs& kw) {
  oat_edge::RuntimeOptions o;
  for (auto [key, value] : kw) {
    const std::string k = py::str(key);
    if (k == "ort_library") o.ort_library = to_str("ort_library", value);
    else if (k == "device") o.device = to_str("device", value);
    else if (k == "threads") o.intra_op_threads = to_int("intra_op_threads", value);
    else if (k == "allow_cpu_fallback") o.allow_cpu_fallback = to_bool("allow_cpu_fallback", value);
    else if (k == "max_batch") o.max_batch = to_int("max_batch", value);
    else if (k == "batch_limit") o.batch_limit = to_int("batch_limit", value);
    else if (k == "spin_wait") o.spin_wait = to_bool("spin_wait", value);
    else if (k == "optimized_model_dir") o.optimized_model_dir = to_str("optimized_model_dir", value);
    else if (k == "trt_cache_dir") o.trt_cache_dir = to_str("trt_cache_dir", value);
    else if (k == "trt_fp16") o.trt_fp16 = to_bool("trt_fp16", value);
    else if (k == "warmup") o.warmup = to_bool("warmup", value);
    else throw oat_edge::InputError("Policy: unknown option '" + k + "'");
  }
  return o;
}

void def_policy(py::module_& m) {
  using H = const py::object&;
  py::class_<PyPolicy>(m, "Policy")
      .def(py::init([](const std::string& path, const py::kwargs& kw) {
             return std::make_unique<PyPolicy>(path, runtime_options(kw));
           }),
           py::arg("path"),
           "Policy(path, *, ort_library, device, threads, allow_cpu_fallback, max_batch, batch_limit, "
           "spin_wait, optimized_model_dir, trt_cache_dir, trt_fp16, warmup): RuntimeOptions in policy.h")
      .def(
          "act",
          [](PyPolicy& p, H obs, H max_tokens, H min_tokens, H temperature, H top_k, H seed, H budget) {
            return p.act(obs, act_options(max_tokens, min_tokens, temperature, top_k, seed, budget));
          },
          py::arg("obs"), py::kw_only(), py::arg("max_tokens") = py::none(), py::arg("min_tokens") = py::none(),
          py::arg("temperature") = py::none(), py::arg("top_k") = py::none(), py::arg("seed") = py::none(),
          py::arg("latency_budget_ms") = py::none(),
          "obs float32 [B, n_obs_steps, obs_dim] -> (actions float32 [B, H_a, D_a], stats dict)")
      .def(
          "generate",
          [](PyPolicy& p, H obs, H max_tokens, H min_tokens, H temperature, H top_k, H seed, H budget) {
            return p.generate(obs, act_options(max_tokens, min_tokens, temperature, top_k, seed, budget));
          },
          py::arg("obs"), py::kw_only(), py::arg("max_tokens") = py::none(), py::arg("min_tokens") = py::none(),
          py::arg("temperature") = py::none(), py::arg("top_k") = py::none(), py::arg("seed") = py::none(),
          py::arg("latency_budget_ms") = py::none(),
          "obs float32 [B, n_obs_steps, obs_dim] -> (ids int64 [B, K] (-1 past tokens_used), stats)")
      .def(
          "check_options",
          [](const PyPolicy& p, H max_tokens, H min_tokens, H temperature, H top_k, H seed, H budget) {
            p.check(act_options(max_tokens, min_tokens, temperature, top_k, seed, budget));
          },
          py::kw_only(), py::arg("max_tokens") = py::none(), py::arg("min_tokens") = py::none(),
          py::arg("temperature") = py::none(), py::arg("top_k") = py::none(), py::arg("seed") = py::none(),
          py::arg("latency_budget_ms") = py::none(), "raises the InputError act() would raise for these options")
      .def("detokenize", &PyPolicy::detokenize, py::arg("ids"), "ids int64 [B, k] -> actions float32 [B, H_a, D_a]")
      .def("tokenize", &PyPolicy::tokenize, py::arg("actions"), "actions float32 [B, H_a, D_a] -> ids int64 [B, K]")
      .def_property_readonly("info", [](const PyPolicy& p) { return info_dict(p.info()); })
      .def_property_readonly("step_runs", &PyPolicy::step_runs);
}

void def_functions(py::module_& m) {
  m.def(
      "prepare_realtime_memory",
      [](const py::object& lock_memory) {
        const auto s = oat_edge::prepare_realtime_memory(to_bool("lock_memory", lock_memory));
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
      [](const std::vector<int>& levels, const py::handle& ids) {
        const auto v = view_of(ids, "ids");
        if (v.dtype != oat_edge::DType::Int64 || v.rank != 1)
          throw oat_edge::InputError("ids: expected int64 [N], got " + std::string(oat_edge::dtype_name(v.dtype)) +
                                     " of rank " + std::to_string(v.rank));
        py::array_t<float> codes({py::ssize_t(v.shape[0]), py::ssize_t(levels.size())});
        oat_edge::fsq_ids_to_codes(levels, static_cast<const int64_t*>(v.data), size_t(v.shape[0]),
                                   codes.mutable_data());
        return codes;
      },
      py::arg("levels"), py::arg("ids"), "FSQ ids int64 [N] -> codes float32 [N, len(levels)]");
}

}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "oat_edge C++ runtime: the private backend of oat_edge.Policy (use that)";
  m.attr("__version__") = OAT_EDGE_VERSION_STRING;
  error_classes();  // fail at import, not at the first error, if oat_edge.errors is missing
  py::register_local_exception_translator(translate);
  def_policy(m);
  def_functions(m);
}
