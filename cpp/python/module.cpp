// pybind11 module oat_edge._core. It only translates: Python objects into the core's types
// (convert.h) and C++ errors into the Python classes of oat_edge.errors (errors.cpp).
#include "module.h"

#include <oat_edge/version.h>
#include <pybind11/pybind11.h>

PYBIND11_MODULE(_core, m) {
  m.doc() = "oat_edge C++ runtime: the private backend of oat_edge.Policy (use that)";
  m.attr("__version__") = OAT_EDGE_VERSION_STRING;
  oat_edge_py::register_errors();  // fail at import, not at the first error, if oat_edge.errors is missing
  oat_edge_py::def_policy(m);
  oat_edge_py::def_functions(m);
}
