# Cross-build for aarch64 Linux with Debian's g++-aarch64-linux-gnu, tests run under qemu-user:
#   apt-get install g++-aarch64-linux-gnu qemu-user
#   cmake -S . -B build/aarch64 -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-aarch64.cmake
#   cmake --build build/aarch64 && ctest --test-dir build/aarch64
# ctest runs every test through CMAKE_CROSSCOMPILING_EMULATOR (qemu-aarch64 with the cross sysroot for
# the dynamic loader and libstdc++). The ISA selected there is NEON (armv8-a baseline, no extra flags).
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)

set(NORMEXP_AARCH64_PREFIX aarch64-linux-gnu- CACHE STRING "Cross tool prefix")
set(CMAKE_C_COMPILER ${NORMEXP_AARCH64_PREFIX}gcc)
set(CMAKE_CXX_COMPILER ${NORMEXP_AARCH64_PREFIX}g++)

set(NORMEXP_AARCH64_SYSROOT /usr/aarch64-linux-gnu CACHE PATH "Target libraries (the loader and libstdc++) for qemu")
find_program(NORMEXP_QEMU_AARCH64 qemu-aarch64)
if(NORMEXP_QEMU_AARCH64)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${NORMEXP_QEMU_AARCH64};-L;${NORMEXP_AARCH64_SYSROOT})
endif()

set(CMAKE_FIND_ROOT_PATH ${NORMEXP_AARCH64_SYSROOT})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
