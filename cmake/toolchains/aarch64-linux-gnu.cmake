# Cross build for 64-bit ARM Linux (Jetson, Raspberry Pi 4/5, Graviton) with Debian's
# g++-aarch64-linux-gnu. The aarch64 ONNX Runtime is never linked (the core dlopens it), so only
# the compiler and its sysroot matter here. CTest runs the test binaries through qemu-aarch64:
#   OAT_EDGE_QEMU  qemu-aarch64 to use (default: the one scripts/aarch64/fetch_deps.sh unpacks)
#   OAT_EDGE_AARCH64_SYSROOT  where the aarch64 ld.so and libstdc++ live (default: the cross toolchain's)
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)

# Headers and libraries of the target only; programs (python, bash) come from the host.
list(APPEND CMAKE_FIND_ROOT_PATH /usr/aarch64-linux-gnu)  # appended: a consumer may add its prefix
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)

get_filename_component(_oat_repo "${CMAKE_CURRENT_LIST_DIR}/../.." ABSOLUTE)
set(OAT_EDGE_QEMU "$ENV{OAT_EDGE_QEMU}")
if(NOT OAT_EDGE_QEMU)
  set(OAT_EDGE_QEMU "${_oat_repo}/.deps/aarch64/qemu/usr/bin/qemu-aarch64")
endif()
set(OAT_EDGE_AARCH64_SYSROOT "$ENV{OAT_EDGE_AARCH64_SYSROOT}")
if(NOT OAT_EDGE_AARCH64_SYSROOT)
  set(OAT_EDGE_AARCH64_SYSROOT /usr/aarch64-linux-gnu)
endif()
# Only when it exists: a machine without qemu still cross-builds, and ctest then says why it cannot run.
if(EXISTS "${OAT_EDGE_QEMU}")
  set(CMAKE_CROSSCOMPILING_EMULATOR "${OAT_EDGE_QEMU};-L;${OAT_EDGE_AARCH64_SYSROOT}")
endif()
