#include "convert.h"

#include <climits>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>

namespace oat_edge_py {

namespace {

[[noreturn]] void wrong_kind(const char* name, const char* expected, const py::handle& v) {
  throw oat_edge::InputError(std::string(name) + ": expected " + expected + ", got " +
                             std::string(py::str(py::type::of(v).attr("__name__"))) + " " + std::string(py::repr(v)));
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
  if (kind == 'f')
    return size == 4 ? DType::Float32 : size == 8 ? DType::Float64 : size == 2 ? DType::Float16 : DType::Other;
  if (kind == 'i') return size == 8 ? DType::Int64 : size == 4 ? DType::Int32 : size == 2 ? DType::Int16 : DType::Int8;
  if (kind == 'u')
    return size == 8 ? DType::UInt64 : size == 4 ? DType::UInt32 : size == 2 ? DType::UInt16 : DType::UInt8;
  if (kind == 'b') return DType::Bool;
  return DType::Other;
}

}  // namespace

bool to_bool(const char* name, const py::handle& v) {
  // bool("no") is True: a flag given as a string or a number is a mistake, not a truthy value
  if (!is_bool(v)) wrong_kind(name, "True or False", v);
  return PyObject_IsTrue(v.ptr()) == 1;
}

// A C-contiguous numpy array as a TensorView (no copy). Making arrays contiguous is the caller's
// part (oat_edge.Policy does it); a strided view here is refused rather than read wrongly.
oat_edge::TensorView view_of(const py::handle& obj, const char* name) {
  if (!py::isinstance<py::array>(obj)) wrong_kind(name, "a numpy array", obj);
  const auto a = py::reinterpret_borrow<py::array>(obj);
  if (!(a.flags() & py::array::c_style))
    throw oat_edge::InputError(std::string(name) +
                               ": expected a C-contiguous array, got a strided view "
                               "(np.ascontiguousarray makes one; oat_edge.Policy does it for you)");
  oat_edge::TensorView v;
  v.data = a.data();
  v.dtype = dtype_of(a);
  v.rank = static_cast<size_t>(a.ndim());
  for (size_t i = 0; i < v.rank && i < oat_edge::TensorView::kMaxRank; ++i) v.shape[i] = a.shape(i);
  return v;
}

std::vector<oat_edge::NamedTensorView> named_views_of(const py::dict& obs, std::vector<std::string>& names) {
  names.clear();
  names.reserve(obs.size());  // no reallocation below: the views point into these strings
  for (auto [key, value] : obs) {
    if (!py::isinstance<py::str>(key))
      wrong_kind("observation keys", "input names (str), e.g. 'observation.state'", key);
    names.push_back(key.cast<std::string>());
  }
  std::vector<oat_edge::NamedTensorView> views;
  size_t i = 0;
  for (auto [key, value] : obs) {
    const std::string& name = names[i++];
    views.push_back({name, view_of(value, name.c_str())});
  }
  return views;
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

}  // namespace oat_edge_py
