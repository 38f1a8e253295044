// Python values -> the core's types, for the _core module. Only the kind of a value is checked here
// (an InputError naming the argument instead of pybind's signature dump); every range, shape and
// dtype rule is the core's (input_checks.cpp).
#pragma once

#include <oat_edge/policy.h>
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>
#include <vector>

namespace oat_edge_py {

namespace py = pybind11;

// True or False (a Python or numpy bool), never a truthy value of another kind.
bool to_bool(const char* name, const py::handle& v);

// A C-contiguous numpy array as a TensorView (no copy); a strided view is an InputError.
oat_edge::TensorView view_of(const py::handle& obj, const char* name);

// A dict {name: C-contiguous numpy array} as named views (no copy): `names` holds the key strings
// the views' names point into (alive as long as the views); a key that is not a str is an InputError.
std::vector<oat_edge::NamedTensorView> named_views_of(const py::dict& obs, std::vector<std::string>& names);

// act()'s keyword arguments (None = the bundle's default) as ActOptions.
oat_edge::ActOptions act_options(const py::handle& max_tokens, const py::handle& min_tokens,
                                 const py::handle& temperature, const py::handle& top_k, const py::handle& seed,
                                 const py::handle& latency_budget_ms);

// Policy(path, **kw)'s keyword arguments as RuntimeOptions; an unknown keyword is an InputError.
oat_edge::RuntimeOptions runtime_options(const py::kwargs& kw);

}  // namespace oat_edge_py
