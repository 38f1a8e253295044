// The parts of the pybind11 module oat_edge._core, one concept per file; module.cpp assembles them.
#pragma once

#include <pybind11/pybind11.h>

namespace oat_edge_py {

namespace py = pybind11;

// C++ errors become the Python classes of oat_edge.errors (imported now, so a missing module fails
// at import rather than at the first error).
void register_errors();

// oat_edge._core.Policy (policy_bindings.cpp).
void def_policy(py::module_& m);

// The free functions: real-time memory set-up, thread fault counters, FSQ ids -> codes
// (function_bindings.cpp).
void def_functions(py::module_& m);

}  // namespace oat_edge_py
