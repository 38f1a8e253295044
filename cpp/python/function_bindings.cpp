// oat_edge._core's free functions: real-time memory set-up and thread fault counters
// (oat_edge/realtime.h), FSQ ids -> codes.
#include <oat_edge/policy.h>
#include <oat_edge/realtime.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <string>
#include <vector>

#include "convert.h"
#include "module.h"

namespace oat_edge_py {

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

}  // namespace oat_edge_py
