# Cross-build for Windows x86-64 with Debian's MinGW-w64 GCC (posix thread model: std::thread and
# OpenMP need it), tests run under Wine:
#   apt-get install g++-mingw-w64-x86-64-posix wine64
#   cmake -S . -B build/mingw -G Ninja -DCMAKE_TOOLCHAIN_FILE=cmake/toolchain-mingw-w64.cmake
#   cmake --build build/mingw && ctest --test-dir build/mingw
# ctest runs every test through CMAKE_CROSSCOMPILING_EMULATOR (wine64). The executables are linked
# -static (libgcc, libstdc++, winpthread and libgomp inside), so Wine needs no MinGW DLL on its path; a
# shared normexp (-DBUILD_SHARED_LIBS=ON) needs them from the cross toolchain's directories, which
# ci/cross_mingw.sh hands to Wine through WINEPATH. This checks the MinGW-w64 port, not MSVC.
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR AMD64)

set(NORMEXP_MINGW_PREFIX x86_64-w64-mingw32 CACHE STRING "Cross tool prefix")
set(CMAKE_C_COMPILER ${NORMEXP_MINGW_PREFIX}-gcc-posix)
set(CMAKE_CXX_COMPILER ${NORMEXP_MINGW_PREFIX}-g++-posix)
set(CMAKE_RC_COMPILER ${NORMEXP_MINGW_PREFIX}-windres)

set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")
set(CMAKE_SHARED_LINKER_FLAGS_INIT "-static-libgcc -static-libstdc++")

find_program(NORMEXP_WINE wine64 PATHS /usr/lib/wine NO_DEFAULT_PATH)
find_program(NORMEXP_WINE wine64 wine)
if(NORMEXP_WINE)
  set(CMAKE_CROSSCOMPILING_EMULATOR ${NORMEXP_WINE})
endif()

set(CMAKE_FIND_ROOT_PATH /usr/${NORMEXP_MINGW_PREFIX})
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_PACKAGE ONLY)
