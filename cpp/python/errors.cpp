// C++ errors -> the Python exception classes of oat_edge.errors.
#include <oat_edge/policy.h>

#include <cstring>
#include <exception>

#include "module.h"

namespace oat_edge_py {

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
        return ErrorClasses{errors.attr("InputError"), errors.attr("BundleError"), errors.attr("RuntimeLoadError")};
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

}  // namespace

void register_errors() {
  error_classes();
  py::register_local_exception_translator(translate);
}

}  // namespace oat_edge_py
