# Finds the ONNX Runtime C/C++ headers and nlohmann_json; defines two interface targets:
#   oat_edge::ort_headers  (include dir only: ORT is dlopen'ed at run time, never linked)
#   oat_edge::json         (nlohmann_json)
# ORT search order (docs/DESIGN.md §3):
#   1. ONNXRUNTIME_ROOT (cache var or env): release tarball layout <root>/include/onnxruntime_c_api.h,
#      or an installed/Jetson build <root>/include/onnxruntime/onnxruntime_c_api.h
#   2. the system: find_package(onnxruntime CONFIG), then <prefix>/include/onnxruntime
#   3. project-local bootstrap: cmake/bootstrap_deps.sh <repo>/.deps (Debian/Ubuntu, no root)
set(ONNXRUNTIME_ROOT "$ENV{ONNXRUNTIME_ROOT}" CACHE PATH "ONNX Runtime install/release root (include/ + lib/)")
set(OAT_EDGE_DEPS_DIR "${CMAKE_CURRENT_SOURCE_DIR}/.deps" CACHE PATH "Where cmake/bootstrap_deps.sh unpacks headers")
option(OAT_EDGE_BOOTSTRAP_DEPS "Allow running cmake/bootstrap_deps.sh when headers are missing" ON)

set(_oat_bootstrap_root "${OAT_EDGE_DEPS_DIR}/root/usr/include")

function(_oat_find_ort_dir out)
  set(${out} "" PARENT_SCOPE)
  # 1. explicit root
  if(ONNXRUNTIME_ROOT)
    find_path(_d onnxruntime_c_api.h NO_DEFAULT_PATH
      PATHS "${ONNXRUNTIME_ROOT}/include" "${ONNXRUNTIME_ROOT}/include/onnxruntime"
            "${ONNXRUNTIME_ROOT}/include/onnxruntime/core/session")
    if(NOT _d)
      message(FATAL_ERROR "ONNXRUNTIME_ROOT=${ONNXRUNTIME_ROOT} has no onnxruntime_c_api.h under include/ "
        "or include/onnxruntime/. Point it at an ORT release folder (include/ + lib/) or unset it.")
    endif()
    set(${out} "${_d}" PARENT_SCOPE)
    set(_oat_ort_how "ONNXRUNTIME_ROOT" PARENT_SCOPE)
    unset(_d CACHE)
    return()
  endif()
  # 2a. CMake package of a system install
  find_package(onnxruntime CONFIG QUIET)
  if(onnxruntime_FOUND AND TARGET onnxruntime::onnxruntime)
    get_target_property(_incs onnxruntime::onnxruntime INTERFACE_INCLUDE_DIRECTORIES)
    foreach(_i IN LISTS _incs)
      foreach(_c "${_i}" "${_i}/onnxruntime")
        if(EXISTS "${_c}/onnxruntime_c_api.h")
          set(${out} "${_c}" PARENT_SCOPE)
          set(_oat_ort_how "find_package(onnxruntime)" PARENT_SCOPE)
          return()
        endif()
      endforeach()
    endforeach()
  endif()
  # 2b. plain headers of a system install
  find_path(_d onnxruntime_c_api.h PATH_SUFFIXES onnxruntime onnxruntime/core/session
            NO_CMAKE_FIND_ROOT_PATH)
  if(_d)
    set(${out} "${_d}" PARENT_SCOPE)
    set(_oat_ort_how "system headers" PARENT_SCOPE)
  endif()
  unset(_d CACHE)
endfunction()

function(_oat_bootstrap want_ort want_json)
  if(NOT OAT_EDGE_BOOTSTRAP_DEPS)
    message(FATAL_ERROR "ONNX Runtime headers or nlohmann_json not found and OAT_EDGE_BOOTSTRAP_DEPS=OFF. "
      "Set ONNXRUNTIME_ROOT to an ORT release folder and install nlohmann-json (or turn the bootstrap on).")
  endif()
  message(STATUS "oat_edge: running cmake/bootstrap_deps.sh ${OAT_EDGE_DEPS_DIR} (ort=${want_ort} json=${want_json})")
  execute_process(
    COMMAND ${CMAKE_COMMAND} -E env OAT_EDGE_BOOTSTRAP_ORT=${want_ort} OAT_EDGE_BOOTSTRAP_JSON=${want_json}
            bash "${CMAKE_CURRENT_FUNCTION_LIST_DIR}/bootstrap_deps.sh" "${OAT_EDGE_DEPS_DIR}"
    RESULT_VARIABLE _rc OUTPUT_VARIABLE _out ERROR_VARIABLE _err)
  if(NOT _rc EQUAL 0)
    message(FATAL_ERROR "cmake/bootstrap_deps.sh failed (exit ${_rc}):\n${_out}\n${_err}\n"
      "Fix: set ONNXRUNTIME_ROOT to an ONNX Runtime release (https://github.com/microsoft/onnxruntime/releases, "
      "include/ + lib/) and install nlohmann-json3-dev, then re-run cmake.")
  endif()
endfunction()

# ---- ORT headers
set(_oat_ort_how "")
_oat_find_ort_dir(OAT_EDGE_ORT_INCLUDE_DIR)
# ---- nlohmann_json
find_package(nlohmann_json 3.2 CONFIG QUIET)
if(NOT nlohmann_json_FOUND)
  find_path(OAT_EDGE_JSON_INCLUDE_DIR nlohmann/json.hpp)
endif()
set(_need_ort 0)
set(_need_json 0)
if(NOT OAT_EDGE_ORT_INCLUDE_DIR AND NOT EXISTS "${_oat_bootstrap_root}/onnxruntime/onnxruntime_c_api.h")
  set(_need_ort 1)
endif()
if(NOT nlohmann_json_FOUND AND NOT OAT_EDGE_JSON_INCLUDE_DIR AND NOT EXISTS "${_oat_bootstrap_root}/nlohmann/json.hpp")
  set(_need_json 1)
endif()
if(_need_ort OR _need_json)
  _oat_bootstrap(${_need_ort} ${_need_json})
endif()
if(NOT OAT_EDGE_ORT_INCLUDE_DIR)
  set(OAT_EDGE_ORT_INCLUDE_DIR "${_oat_bootstrap_root}/onnxruntime")
  set(_oat_ort_how "bootstrap (${OAT_EDGE_DEPS_DIR})")
endif()
if(NOT EXISTS "${OAT_EDGE_ORT_INCLUDE_DIR}/onnxruntime_cxx_api.h")
  message(FATAL_ERROR "onnxruntime_cxx_api.h missing in ${OAT_EDGE_ORT_INCLUDE_DIR}: expected the C and C++ headers together.")
endif()
file(STRINGS "${OAT_EDGE_ORT_INCLUDE_DIR}/onnxruntime_c_api.h" _v REGEX "^#define ORT_API_VERSION [0-9]+")
string(REGEX REPLACE ".* ([0-9]+)$" "\\1" OAT_EDGE_ORT_HEADER_API "${_v}")
if(OAT_EDGE_ORT_HEADER_API LESS 21)
  message(FATAL_ERROR "ONNX Runtime headers in ${OAT_EDGE_ORT_INCLUDE_DIR} have C API ${OAT_EDGE_ORT_HEADER_API}; "
    "oat_edge needs >= 21 (ORT 1.21). Point ONNXRUNTIME_ROOT at a newer release.")
endif()
message(STATUS "oat_edge: ORT headers (C API ${OAT_EDGE_ORT_HEADER_API}) from ${_oat_ort_how}: ${OAT_EDGE_ORT_INCLUDE_DIR}")

# A release/Jetson root also has the library: remember it as a run-time search candidate
# (after RuntimeOptions.ort_library and OAT_EDGE_ORT_LIBRARY, before the system sonames).
set(OAT_EDGE_BUILD_ORT_LIBRARY "")
if(ONNXRUNTIME_ROOT)
  file(GLOB _libs "${ONNXRUNTIME_ROOT}/lib/libonnxruntime.so*")
  if(_libs)
    list(SORT _libs)
    list(GET _libs 0 OAT_EDGE_BUILD_ORT_LIBRARY)
    message(STATUS "oat_edge: default ORT library candidate: ${OAT_EDGE_BUILD_ORT_LIBRARY}")
  endif()
endif()

add_library(oat_edge_ort_headers INTERFACE)
target_include_directories(oat_edge_ort_headers SYSTEM INTERFACE "${OAT_EDGE_ORT_INCLUDE_DIR}")
add_library(oat_edge::ort_headers ALIAS oat_edge_ort_headers)

add_library(oat_edge_json INTERFACE)
if(nlohmann_json_FOUND)
  target_link_libraries(oat_edge_json INTERFACE nlohmann_json::nlohmann_json)
  message(STATUS "oat_edge: nlohmann_json ${nlohmann_json_VERSION} (system package)")
elseif(OAT_EDGE_JSON_INCLUDE_DIR)
  target_include_directories(oat_edge_json SYSTEM INTERFACE "${OAT_EDGE_JSON_INCLUDE_DIR}")
  message(STATUS "oat_edge: nlohmann_json headers: ${OAT_EDGE_JSON_INCLUDE_DIR}")
else()
  target_include_directories(oat_edge_json SYSTEM INTERFACE "${_oat_bootstrap_root}")
  message(STATUS "oat_edge: nlohmann_json headers (bootstrap): ${_oat_bootstrap_root}")
endif()
add_library(oat_edge::json ALIAS oat_edge_json)
