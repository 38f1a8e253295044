# cmake -P script (CTest test_cmake_package): install the "cpp" component of BUILD_DIR into a fresh
# prefix, build cpp/examples/control_loop against it with find_package(oat_edge), and, when
# OAT_EDGE_TEST_BUNDLE is set, run 100 cycles at 200 Hz on that bundle.
#   -DBUILD_DIR= -DSOURCE_DIR= -DWORK_DIR= -DGENERATOR= -DCXX=
function(run)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "failed (${rc}): ${ARGN}\n${out}\n${err}")
  endif()
  set(LAST_OUTPUT "${out}" PARENT_SCOPE)
endfunction()

file(REMOVE_RECURSE ${WORK_DIR})
set(prefix ${WORK_DIR}/prefix)
run(${CMAKE_COMMAND} --install ${BUILD_DIR} --component cpp --prefix ${prefix})
foreach(f include/oat_edge/policy.h include/oat_edge/realtime.h)
  if(NOT EXISTS ${prefix}/${f})
    message(FATAL_ERROR "the installed package lacks ${f}")
  endif()
endforeach()
run(${CMAKE_COMMAND} -S ${SOURCE_DIR}/cpp/examples/control_loop -B ${WORK_DIR}/build -G ${GENERATOR}
    -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_PREFIX_PATH=${prefix} -DCMAKE_BUILD_TYPE=Release)
run(${CMAKE_COMMAND} --build ${WORK_DIR}/build)

if("$ENV{OAT_EDGE_TEST_BUNDLE}" STREQUAL "")
  message(STATUS "OAT_EDGE_TEST_BUNDLE not set: built against the installed package, not run")
  return()
endif()
run(${WORK_DIR}/build/oat_edge_control_loop $ENV{OAT_EDGE_TEST_BUNDLE} --hz 200 --cycles 100)
message(STATUS "${LAST_OUTPUT}")
if(NOT LAST_OUTPUT MATCHES "cycles 100 achieved_hz ([0-9.]+) .* replans ([0-9]+) .* overruns ([0-9]+)")
  message(FATAL_ERROR "unexpected output: ${LAST_OUTPUT}")
endif()
if(CMAKE_MATCH_2 LESS 2)
  message(FATAL_ERROR "expected at least 2 replans in 100 cycles, got ${CMAKE_MATCH_2}")
endif()

# Bad arguments: a usage error (exit 2) naming the option; a missing bundle: exit 1 with the reason.
function(expect_failure code pattern)
  execute_process(COMMAND ${WORK_DIR}/build/oat_edge_control_loop ${ARGN}
                  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL code OR NOT err MATCHES "${pattern}")
    message(FATAL_ERROR "${ARGN}: expected exit ${code} and '${pattern}', got ${rc}: ${out}${err}")
  endif()
endfunction()
set(b $ENV{OAT_EDGE_TEST_BUNDLE})
expect_failure(2 "--hz must be in" ${b} --hz 0)
expect_failure(2 "--cycles expects an integer, got '2.5'" ${b} --cycles 2.5)
expect_failure(2 "--rt-priority must be in 1..99" ${b} --rt-priority 0)
expect_failure(2 "unknown option --bogus" ${b} --bogus)
expect_failure(1 "max_tokens" ${b} --max-tokens 99 --cycles 5)
expect_failure(1 "does not exist|not found|no model.onnx" ${WORK_DIR}/no_such_bundle)
